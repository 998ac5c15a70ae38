"""The messages published for one segmentation result (:class:`~ros2_inst3d.instances.Instances`).

Every builder takes a :class:`~ros2_inst3d.msgs.MessageFactory` (rclpy in the node, rosbags in
the bag tool) and the header of the result (fixed frame + newest scan stamp), and sets every field
of every message: rosbags classes have no defaults.

One instance id means the same thing everywhere: the ``instance_id`` of its points in the
labelled cloud, ``Instance.id``, ``Detection3D.id`` (decimal string) and the marker id, and it
always gets the same colour (:func:`instance_color`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from ros2_inst3d.classes import class_name
from ros2_inst3d.cloud import encode, ns_to_stamp
from ros2_inst3d.instances import BOX_KINDS, Box3D, Instances

if TYPE_CHECKING:
    from ros2_inst3d.tracking import RememberedTrack, TrackInfo

MARKER = "visualization_msgs/msg/Marker"
INSTANCE = "ros2_inst3d/msg/Instance"

# Colour of points without an instance (and of instance id -1).
UNASSIGNED_COLOR = (128, 128, 128)

BOX_ALPHA = 0.35            # translucent boxes keep the points inside visible
REMEMBERED_ALPHA = 0.12     # remembered objects (not observed now) are drawn fainter
TEXT_HEIGHT_M = 0.15        # label text height
MIN_MARKER_SCALE_M = 0.01   # RViz rejects markers with a zero scale (flat or 1-point instances)

_GOLDEN = 0.6180339887498949


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: a well-mixed uint64 per uint64 input (wrap-around arithmetic)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def instance_colors(ids: np.ndarray | Sequence[int]) -> np.ndarray:
    """(K, 3) uint8 display colours of instance ids (K,); the same id always gets the same colour.

    Hue steps by the golden ratio per id, so consecutive ids (the usual case) are far apart on
    the colour wheel; saturation in [0.6, 1] and value in [0.75, 1] come from a hash of the id,
    separating ids whose hues happen to be close. Never grey or black; negative ids (no instance)
    are :data:`UNASSIGNED_COLOR`.
    """
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    with np.errstate(over="ignore"):
        mixed = _splitmix64(np.maximum(ids, 0).astype(np.uint64))
    hue = np.mod(np.maximum(ids, 0) * _GOLDEN, 1.0)
    sat = 0.6 + 0.4 * ((mixed >> np.uint64(32)) & np.uint64(0xFF)).astype(np.float64) / 255.0
    val = 0.75 + 0.25 * ((mixed >> np.uint64(40)) & np.uint64(0xFF)).astype(np.float64) / 255.0
    rgb = _hsv_to_rgb(hue, sat, val)
    out = np.rint(rgb * 255.0).astype(np.uint8)
    out[ids < 0] = UNASSIGNED_COLOR
    return out


def instance_color(instance_id: int) -> tuple[int, int, int]:
    """(r, g, b) 0..255 display colour of one instance id (see :func:`instance_colors`)."""
    r, g, b = instance_colors([instance_id])[0]
    return int(r), int(g), int(b)


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(K, 3) float64 in [0, 1] from hue, saturation, value (K,) each in [0, 1]."""
    sector = np.floor(h * 6.0).astype(np.int64) % 6
    f = h * 6.0 - np.floor(h * 6.0)
    p, q, t = v * (1.0 - s), v * (1.0 - f * s), v * (1.0 - (1.0 - f) * s)
    table = np.stack([
        np.stack([v, t, p], -1), np.stack([q, v, p], -1), np.stack([p, v, t], -1),
        np.stack([p, q, v], -1), np.stack([t, p, v], -1), np.stack([v, p, q], -1),
    ])  # (6, K, 3)
    return table[sector, np.arange(len(h))]


# ---------------------------------------------------------------------------- message pieces


def _point(factory: Any, xyz: Sequence[float]) -> Any:
    return factory("geometry_msgs/msg/Point", x=float(xyz[0]), y=float(xyz[1]), z=float(xyz[2]))


def _vector3(factory: Any, xyz: Sequence[float]) -> Any:
    return factory("geometry_msgs/msg/Vector3", x=float(xyz[0]), y=float(xyz[1]),
                   z=float(xyz[2]))


def _pose(factory: Any, position: Sequence[float], quaternion: Sequence[float]) -> Any:
    qx, qy, qz, qw = (float(c) for c in quaternion)
    return factory(
        "geometry_msgs/msg/Pose", position=_point(factory, position),
        orientation=factory("geometry_msgs/msg/Quaternion", x=qx, y=qy, z=qz, w=qw))


def _identity_pose(factory: Any) -> Any:
    return _pose(factory, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0))


def _bounding_box(factory: Any, box: Box3D) -> Any:
    return factory("vision_msgs/msg/BoundingBox3D",
                   center=_pose(factory, box.center, box.quaternion),
                   size=_vector3(factory, box.size))


def _color(factory: Any, rgb: Sequence[int], alpha: float) -> Any:
    r, g, b = (float(c) / 255.0 for c in rgb)
    return factory("std_msgs/msg/ColorRGBA", r=r, g=g, b=b, a=float(alpha))


def _duration(factory: Any, seconds: float) -> Any:
    if not (math.isfinite(seconds) and seconds >= 0.0):
        raise ValueError(f"marker lifetime must be a finite number of seconds >= 0, got {seconds}")
    sec, nanosec = divmod(int(round(seconds * 1e9)), 1_000_000_000)
    return factory("builtin_interfaces/msg/Duration", sec=sec, nanosec=nanosec)


def _check_box_type(box_type: str) -> None:
    if box_type not in BOX_KINDS:
        raise ValueError(f"unknown box_type '{box_type}'; choose one of {BOX_KINDS}")


def _label(name: str, score: float, instance_id: int) -> str:
    return f"{name} {score:.2f} #{instance_id}"


# ---------------------------------------------------------------------------------- builders


def labelled_cloud(factory: Any, inst: Instances, header: Any) -> Any:
    """``sensor_msgs/msg/PointCloud2`` of all ``inst.xyz`` points, in their order.

    Fields (``cloud.encode``): x, y, z; rgb = the colour of the point's instance
    (:func:`instance_color`), :data:`UNASSIGNED_COLOR` for points without one, so RViz's RGB8
    view shows the instances; instance_id (-1 = none); class_id (the point's semantic class);
    score (its instance's score, 0 without one). Point i here is point i of ``inst`` — the
    indices in ``InstanceArray`` refer to it.
    """
    rgb = np.empty((inst.num_points, 3), np.uint8)
    rgb[:] = UNASSIGNED_COLOR
    score = np.zeros(inst.num_points, np.float32)
    labelled = np.flatnonzero(inst.point_instance >= 0)
    if inst.num_instances and len(labelled):
        order = np.argsort(inst.ids)
        position = order[np.searchsorted(inst.ids, inst.point_instance[labelled], sorter=order)]
        rgb[labelled] = instance_colors(inst.ids)[position]
        score[labelled] = inst.scores[position]
    return encode(factory, header, inst.xyz, rgb, inst.point_instance, inst.point_class, score)


def detections(factory: Any, inst: Instances, header: Any, box_type: str = "obb_z") -> Any:
    """``vision_msgs/msg/Detection3DArray`` with one ``Detection3D`` per instance.

    Each has one hypothesis (class_id = the class index as a decimal string, as in
    :func:`label_info`; score), its pose = the box centre with zero covariance (unknown), the
    ``box_type`` box, and ``id`` = the instance id as a decimal string.
    """
    _check_box_type(box_type)
    items = []
    for k in range(inst.num_instances):
        box = inst.box(k, box_type)
        hypothesis = factory(
            "vision_msgs/msg/ObjectHypothesisWithPose",
            hypothesis=factory("vision_msgs/msg/ObjectHypothesis",
                               class_id=str(int(inst.class_ids[k])),
                               score=float(inst.scores[k])),
            pose=factory("geometry_msgs/msg/PoseWithCovariance",
                         pose=_pose(factory, box.center, box.quaternion),
                         covariance=factory.fixed_array(np.zeros(36), np.float64)))
        items.append(factory("vision_msgs/msg/Detection3D", header=header, results=[hypothesis],
                             bbox=_bounding_box(factory, box), id=str(int(inst.ids[k]))))
    return factory("vision_msgs/msg/Detection3DArray", header=header, detections=items)


def label_info(factory: Any, class_names: Sequence[str], header: Any,
               threshold: float = 0.0) -> Any:
    """``vision_msgs/msg/LabelInfo``: class index -> name for every class, and the score threshold
    the segmenter applied (publish on a transient-local topic)."""
    if len(class_names) >= 65535:
        raise ValueError(f"{len(class_names)} classes do not fit VisionClass.class_id (uint16, "
                         "65535 = unlabelled)")
    classes = [factory("vision_msgs/msg/VisionClass", class_id=i, class_name=str(name))
               for i, name in enumerate(class_names)]
    return factory("vision_msgs/msg/LabelInfo", header=header, class_map=classes,
                   threshold=float(threshold))


def _marker(factory: Any, header: Any, ns: str, marker_id: int, marker_type: int, action: int,
            pose: Any, scale: Sequence[float], color: Any, lifetime: Any, text: str = "") -> Any:
    # fill() zero-fills only the texture/mesh-file fields, which differ between distros.
    return factory.fill(
        MARKER, header=header, ns=ns, id=int(marker_id), type=int(marker_type),
        action=int(action), pose=pose, scale=_vector3(factory, scale), color=color,
        lifetime=lifetime, frame_locked=False, points=[], colors=[], text=text,
        mesh_resource="", mesh_use_embedded_materials=False)


def markers(factory: Any, inst: Instances, header: Any, lifetime_s: float = 0.0,
            box_type: str = "obb_z", remembered: Sequence["RememberedTrack"] = ()) -> Any:
    """``visualization_msgs/msg/MarkerArray`` for RViz.

    First a DELETEALL (empty ns: clears every marker of the topic, so instances that vanished
    leave no stale boxes), then per instance a translucent CUBE (ns ``boxes``) of its
    ``box_type`` box and a TEXT_VIEW_FACING label (ns ``labels``) like ``chair 0.87 #12`` above
    it, both with marker id = instance id and the instance's colour. ``remembered`` tracks
    (not observed now) follow with their last box, fainter (:data:`REMEMBERED_ALPHA`), and a
    label ending in ``(seen 4.2 s ago)``. ``lifetime_s`` 0 = until replaced. Box scales are at
    least :data:`MIN_MARKER_SCALE_M`.
    """
    _check_box_type(box_type)
    marker_cls = factory.cls(MARKER)
    lifetime = _duration(factory, lifetime_s)
    items = [_marker(factory, header, "", 0, marker_cls.CUBE, marker_cls.DELETEALL,
                     _identity_pose(factory), (1.0, 1.0, 1.0),
                     _color(factory, (0, 0, 0), 0.0), lifetime)]
    stamp_ns = _stamp_ns(header)
    entries = [(int(inst.ids[k]), inst.box(k, box_type),
                _label(inst.class_name(k), float(inst.scores[k]), int(inst.ids[k])), BOX_ALPHA)
               for k in range(inst.num_instances)]
    entries += [(t.id, t.box(box_type),
                 _label(class_name(t.class_id, inst.class_names), t.score, t.id)
                 + f" (seen {(stamp_ns - t.info.last_seen_ns) / 1e9:.1f} s ago)", REMEMBERED_ALPHA)
                for t in remembered]
    colors = instance_colors([e[0] for e in entries])
    for (instance_id, box, text, alpha), color in zip(entries, colors):
        items.append(_marker(
            factory, header, "boxes", instance_id, marker_cls.CUBE, marker_cls.ADD,
            _pose(factory, box.center, box.quaternion),
            np.maximum(box.size, MIN_MARKER_SCALE_M), _color(factory, color, alpha),
            lifetime))
        top = box.center[2] + 0.5 * box.size[2]
        items.append(_marker(
            factory, header, "labels", instance_id, marker_cls.TEXT_VIEW_FACING,
            marker_cls.ADD,
            _pose(factory, (box.center[0], box.center[1], top + TEXT_HEIGHT_M),
                  (0.0, 0.0, 0.0, 1.0)),
            (TEXT_HEIGHT_M, TEXT_HEIGHT_M, TEXT_HEIGHT_M), _color(factory, color, 1.0),
            lifetime, text=text))
    return factory("visualization_msgs/msg/MarkerArray", markers=items)


def _stamp_ns(header: Any) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def instance_array(factory: Any, inst: Instances, header: Any, oldest_stamp_ns: int,
                   model_name: str, box_type: str = "obb_z",
                   track_info: Mapping[int, "TrackInfo"] | None = None,
                   remembered: Sequence["RememberedTrack"] = ()) -> Any:
    """``ros2_inst3d/msg/InstanceArray`` (msg/InstanceArray.msg, msg/Instance.msg).

    header: fixed frame + newest scan stamp; oldest_stamp_ns: stamp of the oldest scan used,
    integer ns. Per instance: the ``box_type`` box, centroid, xy convex-hull footprint at
    z = min_z, z range, point count and ascending indices into the labelled cloud of the same
    header, and the track facts: ``track_info`` by instance id (None or a missing id: observed
    now for the first time, hits 1, first/last seen = the header stamp). ``remembered`` tracks
    follow with their last geometry, ``observed`` false, no points.
    """
    _check_box_type(box_type)
    instance_cls = factory.cls(INSTANCE)
    kind = instance_cls.BOX_AXIS_ALIGNED if box_type == "aabb" else instance_cls.BOX_ORIENTED_Z
    stamp_ns = _stamp_ns(header)
    track_info = track_info or {}

    def item(instance_id: int, class_id: int, score: float, box: Box3D, centroid: Any,
             footprint_xy: np.ndarray, min_z: float, max_z: float, indices: np.ndarray,
             observed: bool, first_ns: int, last_ns: int, hits: int) -> Any:
        footprint = [factory("geometry_msgs/msg/Point32", x=float(x), y=float(y), z=min_z)
                     for x, y in footprint_xy]
        return factory(
            INSTANCE, id=int(instance_id), class_id=int(class_id),
            class_name=class_name(int(class_id), inst.class_names), score=float(score),
            bbox=_bounding_box(factory, box), box_type=int(kind),
            centroid=_point(factory, centroid), footprint=footprint,
            min_z=float(min_z), max_z=float(max_z), num_points=len(indices),
            point_indices=factory.sequence(np.sort(indices), np.uint32), observed=bool(observed),
            first_seen=ns_to_stamp(factory, first_ns), last_seen=ns_to_stamp(factory, last_ns),
            hits=int(hits))

    items = []
    for k in range(inst.num_instances):
        points = inst.points(k)
        instance_id = int(inst.ids[k])
        info = track_info.get(instance_id)
        first_ns, last_ns, hits = ((info.first_seen_ns, info.last_seen_ns, info.hits)
                                   if info is not None else (stamp_ns, stamp_ns, 1))
        items.append(item(instance_id, int(inst.class_ids[k]), float(inst.scores[k]),
                          inst.box(k, box_type), inst.centroid(k), inst.footprint(k),
                          float(points[:, 2].min()), float(points[:, 2].max()), inst.indices[k],
                          True, first_ns, last_ns, hits))
    for t in remembered:
        items.append(item(t.id, t.class_id, t.score, t.box(box_type), t.centroid, t.footprint,
                          t.min_z, t.max_z, np.zeros(0, np.int64), False,
                          t.info.first_seen_ns, t.info.last_seen_ns, t.info.hits))
    return factory("ros2_inst3d/msg/InstanceArray", header=header,
                   oldest_stamp=ns_to_stamp(factory, oldest_stamp_ns),
                   model_name=str(model_name), instances=items)
