"""Output messages, built as rosbags messages for Humble and Jazzy and round-tripped through CDR."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ros2_inst3d.classes import SCANNET20_CLASSES
from ros2_inst3d.cloud import ns_to_stamp
from ros2_inst3d.instances import Instances
from ros2_inst3d.msgs import MessageFactory, make_typestore
from ros2_inst3d.outputs import (UNASSIGNED_COLOR, detections, instance_array, instance_color,
                                 instance_colors, label_info, labelled_cloud, markers)

DISTROS = ("humble", "jazzy")
STAMP_NS = 1_700_000_123_456_789_012
OLDEST_NS = 1_700_000_121_000_000_500
POINTFIELD_DTYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}


def box_of_points(center, size, yaw, n, rng):
    local = rng.uniform(-0.5, 0.5, size=(n, 3)) * size
    # Corners in: the boxes below are then exact.
    local[:8] = np.array([[sx, sy, sz] for sx in (-.5, .5) for sy in (-.5, .5)
                          for sz in (-.5, .5)]) * size
    c, s = math.cos(yaw), math.sin(yaw)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    return local @ rot.T + center


@pytest.fixture(scope="module")
def result():
    """A chair (id 12, rotated 30 degrees) and a table (id 5), plus unassigned clutter."""
    rng = np.random.default_rng(3)
    chair = box_of_points((1.0, 2.0, 0.45), (0.6, 0.5, 0.9), math.radians(30), 60, rng)
    table = box_of_points((3.0, -1.0, 0.375), (1.6, 0.9, 0.75), 0.0, 80, rng)
    clutter = rng.uniform(-2, 5, size=(25, 3))
    xyz = np.vstack([table, clutter, chair]).astype(np.float32)
    labels = np.concatenate([np.full(80, 5), np.full(25, -1), np.full(60, 12)])
    rgb = rng.integers(0, 256, size=(len(xyz), 3), dtype=np.uint8)
    return Instances.from_point_labels(xyz, rgb, labels, {5: 6, 12: 4}, {5: 0.5, 12: 0.875})


@pytest.fixture(params=DISTROS)
def bag_types(request):
    typestore = make_typestore(request.param)
    factory = MessageFactory.for_rosbags(typestore)
    header = factory("std_msgs/msg/Header", stamp=ns_to_stamp(factory, STAMP_NS), frame_id="map")
    return typestore, factory, header


def round_trip(typestore, msg):
    """Serialise as a bag would and read back: proves every field is set and well-typed."""
    raw = typestore.serialize_cdr(msg, msg.__msgtype__)
    return typestore.deserialize_cdr(raw, msg.__msgtype__)


def yaw_of(q):
    assert q.x == 0.0 and q.y == 0.0
    return 2.0 * math.atan2(q.z, q.w)


def quaternion_norm(q):
    return math.sqrt(q.x ** 2 + q.y ** 2 + q.z ** 2 + q.w ** 2)


def cloud_columns(cloud):
    """Slow reference reader of a PointCloud2: {field name: (N,) array}."""
    dtype = np.dtype({"names": [f.name for f in cloud.fields],
                      "formats": ["<" + POINTFIELD_DTYPES[f.datatype] for f in cloud.fields],
                      "offsets": [f.offset for f in cloud.fields],
                      "itemsize": cloud.point_step})
    points = np.frombuffer(cloud.data.tobytes(), dtype=dtype, count=cloud.width * cloud.height)
    return {name: points[name] for name in dtype.names}


# ------------------------------------------------------------------------------------- colours


def test_instance_colours_are_stable_distinct_and_never_grey():
    ids = np.arange(256)
    colours = instance_colors(ids)
    np.testing.assert_array_equal(colours, instance_colors(ids))  # stable across calls
    assert instance_color(17) == tuple(int(c) for c in colours[17])
    assert instance_color(17) == instance_color(17)
    assert len(np.unique(colours, axis=0)) == len(ids)
    # Consecutive ids (new instances of one frame) are far apart in RGB.
    step = np.linalg.norm(np.diff(colours.astype(float), axis=0), axis=1)
    assert step.min() > 100
    hi, lo = colours.max(axis=1).astype(float), colours.min(axis=1).astype(float)
    assert ((hi - lo) / hi >= 0.5).all() and (hi >= 150).all()  # saturated and bright
    assert instance_color(-1) == UNASSIGNED_COLOR
    # Order-independent: a colour depends on the id only.
    np.testing.assert_array_equal(instance_colors([200, 3]), colours[[200, 3]])


# -------------------------------------------------------------------------------- labelled cloud


def test_labelled_cloud_colours_points_by_instance(bag_types, result):
    typestore, factory, header = bag_types
    cloud = round_trip(typestore, labelled_cloud(factory, result, header))
    assert cloud.header.frame_id == "map" and cloud.width * cloud.height == result.num_points
    cols = cloud_columns(cloud)
    np.testing.assert_array_equal(np.column_stack([cols["x"], cols["y"], cols["z"]]), result.xyz)
    np.testing.assert_array_equal(cols["instance_id"], result.point_instance)
    packed = cols["rgb"].view(np.uint32)
    rgb = np.column_stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255])
    for k, instance_id in enumerate(result.ids):
        members = result.point_instance == instance_id
        assert (rgb[members] == instance_color(int(instance_id))).all()
        np.testing.assert_allclose(cols["score"][members], result.scores[k])
        assert (cols["class_id"][members] == result.class_ids[k]).all()
    unassigned = result.point_instance == -1
    assert (rgb[unassigned] == UNASSIGNED_COLOR).all()
    assert (cols["score"][unassigned] == 0).all()


# ------------------------------------------------------------------------------------- markers


def test_markers_delete_all_then_boxes_and_labels(bag_types, result):
    typestore, factory, header = bag_types
    array = round_trip(typestore, markers(factory, result, header, lifetime_s=1.5))
    marker_cls = typestore.types["visualization_msgs/msg/Marker"]
    first, rest = array.markers[0], array.markers[1:]
    assert first.action == marker_cls.DELETEALL and first.ns == ""
    assert len(rest) == 2 * result.num_instances
    assert all(m.action == marker_cls.ADD for m in rest)
    for m in array.markers:
        assert math.isclose(quaternion_norm(m.pose.orientation), 1.0, rel_tol=1e-12)
        assert m.header.frame_id == "map" and not m.frame_locked
        assert (m.header.stamp.sec, m.header.stamp.nanosec) == divmod(STAMP_NS, 10**9)
        assert (m.lifetime.sec, m.lifetime.nanosec) == (1, 500_000_000)
    boxes = {m.id: m for m in rest if m.ns == "boxes"}
    labels = {m.id: m for m in rest if m.ns == "labels"}
    assert set(boxes) == set(labels) == {5, 12}
    for k, instance_id in enumerate(result.ids):
        box, label = boxes[int(instance_id)], labels[int(instance_id)]
        obb = result.obb(k)
        assert box.type == marker_cls.CUBE and label.type == marker_cls.TEXT_VIEW_FACING
        np.testing.assert_allclose([box.scale.x, box.scale.y, box.scale.z], obb.size)
        np.testing.assert_allclose(
            [box.pose.position.x, box.pose.position.y, box.pose.position.z], obb.center)
        assert math.isclose(yaw_of(box.pose.orientation), obb.yaw, abs_tol=1e-12)
        expected = np.array(instance_color(int(instance_id))) / 255.0
        np.testing.assert_allclose([box.color.r, box.color.g, box.color.b], expected, atol=1e-6)
        np.testing.assert_allclose([label.color.r, label.color.g, label.color.b], expected,
                                   atol=1e-6)
        assert 0 < box.color.a < 1 and label.color.a == 1.0
        assert label.pose.position.z > obb.center[2] + obb.size[2] / 2
        assert label.scale.z > 0
    assert labels[12].text == "chair 0.88 #12" and labels[5].text == "table 0.50 #5"
    chair_yaw = yaw_of(boxes[12].pose.orientation)
    assert abs(math.remainder(chair_yaw - math.radians(30), math.pi)) < 1e-6


def test_markers_of_an_empty_result_only_clear(bag_types, result):
    typestore, factory, header = bag_types
    array = round_trip(typestore, markers(factory, Instances.empty(result.xyz), header))
    assert len(array.markers) == 1 and array.markers[0].action == 3


def test_axis_aligned_markers_and_bad_arguments(bag_types, result):
    typestore, factory, header = bag_types
    array = round_trip(typestore, markers(factory, result, header, box_type="aabb"))
    for m in array.markers[1:]:
        assert (m.pose.orientation.z, m.pose.orientation.w) == (0.0, 1.0)
    chair = {m.id: m for m in array.markers if m.ns == "boxes"}[12]
    np.testing.assert_allclose([chair.scale.x, chair.scale.y], result.aabb(1).size[:2])
    with pytest.raises(ValueError, match="box_type"):
        markers(factory, result, header, box_type="obb")
    with pytest.raises(ValueError, match="lifetime"):
        markers(factory, result, header, lifetime_s=-1.0)


def test_flat_instances_get_visible_marker_scale(bag_types):
    typestore, factory, header = bag_types
    flat = np.array([[0, 0, 1], [1, 0, 1], [1, 2, 1], [0, 2, 1]], np.float32)  # zero height
    inst = Instances.from_point_labels(flat, None, np.zeros(4, int), [10], [0.9])
    array = round_trip(typestore, markers(factory, inst, header))
    box = array.markers[1]
    assert box.scale.z > 0 and math.isclose(box.scale.x, 2.0, rel_tol=1e-6)


# ---------------------------------------------------------------------------------- detections


def test_detections_one_per_instance(bag_types, result):
    typestore, factory, header = bag_types
    msg = round_trip(typestore, detections(factory, result, header))
    assert msg.header.frame_id == "map" and len(msg.detections) == result.num_instances
    for k, det in enumerate(msg.detections):
        assert det.id == str(int(result.ids[k])) and det.header.frame_id == "map"
        (hyp,) = det.results
        assert hyp.hypothesis.class_id == str(int(result.class_ids[k]))
        assert math.isclose(hyp.hypothesis.score, float(result.scores[k]))
        obb = result.obb(k)
        np.testing.assert_allclose([det.bbox.size.x, det.bbox.size.y, det.bbox.size.z], obb.size)
        center = det.bbox.center.position
        np.testing.assert_allclose([center.x, center.y, center.z], obb.center)
        assert math.isclose(quaternion_norm(det.bbox.center.orientation), 1.0)
        assert hyp.pose.pose.position.x == center.x
        assert hyp.pose.covariance.shape == (36,) and not hyp.pose.covariance.any()
    empty = round_trip(typestore, detections(factory, Instances.empty(result.xyz), header))
    assert len(empty.detections) == 0


def test_label_info_maps_class_ids_to_names(bag_types):
    typestore, factory, header = bag_types
    msg = round_trip(typestore, label_info(factory, SCANNET20_CLASSES, header, threshold=0.25))
    assert [(c.class_id, c.class_name) for c in msg.class_map] == list(enumerate(SCANNET20_CLASSES))
    assert math.isclose(msg.threshold, 0.25)


# ------------------------------------------------------------------------------ instance array


def test_instance_array_for_navigation(bag_types, result):
    typestore, factory, header = bag_types
    msg = round_trip(typestore, instance_array(factory, result, header, OLDEST_NS, "geometric"))
    instance_cls = typestore.types["ros2_inst3d/msg/Instance"]
    assert msg.header.frame_id == "map" and msg.model_name == "geometric"
    assert (msg.oldest_stamp.sec, msg.oldest_stamp.nanosec) == divmod(OLDEST_NS, 10**9)
    cloud = cloud_columns(round_trip(typestore, labelled_cloud(factory, result, header)))
    assert [i.id for i in msg.instances] == result.ids.tolist()
    for k, item in enumerate(msg.instances):
        points = result.points(k)
        assert item.class_id == result.class_ids[k]
        assert item.class_name == SCANNET20_CLASSES[result.class_ids[k]]
        assert math.isclose(item.score, float(result.scores[k]), rel_tol=1e-6)
        assert item.box_type == instance_cls.BOX_ORIENTED_Z
        obb = result.obb(k)
        np.testing.assert_allclose([item.bbox.size.x, item.bbox.size.y, item.bbox.size.z],
                                   obb.size)
        assert math.isclose(yaw_of(item.bbox.center.orientation), obb.yaw, abs_tol=1e-12)
        np.testing.assert_allclose([item.centroid.x, item.centroid.y, item.centroid.z],
                                   points.astype(np.float64).mean(axis=0), atol=1e-9)
        assert item.min_z == points[:, 2].min() and item.max_z == points[:, 2].max()
        footprint = np.array([[p.x, p.y] for p in item.footprint])
        np.testing.assert_allclose(footprint, result.footprint(k), atol=1e-6)
        assert all(p.z == item.min_z for p in item.footprint)
        # The hull of a box of points is its 4 corners.
        np.testing.assert_allclose(sorted(map(tuple, footprint.round(5))),
                                   sorted(map(tuple, obb.footprint().round(5))), atol=2e-5)
        assert item.num_points == len(points) == len(item.point_indices)
        assert item.point_indices.dtype == np.uint32
        assert (np.diff(item.point_indices.astype(np.int64)) > 0).all()
        # The indices point at this instance's points in the labelled cloud of the same header.
        assert (cloud["instance_id"][item.point_indices] == item.id).all()
    chair = msg.instances[1]
    np.testing.assert_allclose([chair.bbox.size.x, chair.bbox.size.y], [0.6, 0.5], atol=1e-6)


def test_instance_array_with_axis_aligned_boxes(bag_types, result):
    typestore, factory, header = bag_types
    msg = round_trip(typestore, instance_array(factory, result, header, OLDEST_NS, "m",
                                               box_type="aabb"))
    instance_cls = typestore.types["ros2_inst3d/msg/Instance"]
    for k, item in enumerate(msg.instances):
        assert item.box_type == instance_cls.BOX_AXIS_ALIGNED
        assert item.bbox.center.orientation.w == 1.0
        np.testing.assert_allclose([item.bbox.size.x, item.bbox.size.y, item.bbox.size.z],
                                   result.aabb(k).size)
