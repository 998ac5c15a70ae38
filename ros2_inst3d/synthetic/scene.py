"""Synthetic indoor scenes, scanned like a robot would: ``ros2-inst3d gen-data``.

A scene is a furnished room (``layout``: rectangular or L-shaped rooms, parametric furniture and
the MIT-0 meshes of ``furniture``, layouts that are hard to group on purpose) scanned by a
simulated RGB-D camera or spinning LiDAR from a trajectory through the free space (``scanner``:
ray casting with open3d, depth noise, dropout, edge artefacts, lighting). The scans are
accumulated in the room frame and voxel-downsampled (``voxelize``): one point per voxel, the mean
position and colour of the voxel's points that carry the voxel's majority label.

Labels are the contiguous ScanNet-20 indices (``classes``): walls and floor are stuff (semantic
0/1, instance -100); every piece of furniture, door, window, picture and curtain is an instance
(ids 0..K-1 per scene, in placement order); small clutter (books, cups, monitors...) is
ScanNet's "otherprop" and gets semantic and instance -100, as do objects seen by fewer than
``min_instance_points`` points.

Everything is deterministic from the seed: ``generate_scene(seed)`` gives identical arrays on
every run. The splits are disjoint seed ranges (``split_seed``).

Files (DESIGN §5): ``<stem>.npz`` with ``xyz`` float32 (N, 3) metres room frame, ``rgb`` uint8
(N, 3), ``semantic`` int16 (N,), ``instance`` int32 (N,), ``meta`` JSON string. With
``sequence=True`` also ``<stem>.sequence.npz``, the raw per-pose scans for node and bag tests:
``xyz_sensor`` float32 (P, 3) metres in the sensor frame, ``rgb`` uint8 (P, 3), ``semantic``
int16 (P,), ``instance`` int32 (P,), ``scan_offsets`` int64 (S + 1,) (scan s is rows
``scan_offsets[s]:scan_offsets[s+1]``), ``stamps_ns`` int64 (S,), ``poses`` float64 (S, 4, 4)
sensor -> room, ``meta`` JSON string (frames, sensor model). With ``preview=True`` also
``<stem>.preview.png`` (top and 3D view coloured by instance).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..classes import IGNORE_LABEL, SCANNET20_CLASSES, STUFF_CLASSES

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
SPLIT_SIZE = 100_000
SEQUENCE_SUFFIX = ".sequence.npz"
BAG_SUFFIX = "_bag"
PREVIEW_SUFFIX = ".preview.png"
FORMAT = "ros2_inst3d.synthetic_scene/1"


def split_seed(split: str, index: int) -> int:
    """Seed of scene ``index`` (0 <= index < 100000) of a split: train 0..99999,
    val 100000..199999, test 200000..299999, so the splits never share a scene."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    index = int(index)
    if not 0 <= index < SPLIT_SIZE:
        raise ValueError(f"scene index {index} is outside 0..{SPLIT_SIZE - 1}; each split holds "
                         f"{SPLIT_SIZE} seeds")
    return SPLITS.index(split) * SPLIT_SIZE + index


def split_of_seed(seed: int) -> str | None:
    """The split whose seed range holds ``seed`` (None above the last range)."""
    k = int(seed) // SPLIT_SIZE
    return SPLITS[k] if 0 <= k < len(SPLITS) else None


@dataclass(frozen=True)
class SceneParams:
    """Everything about a generated scene except its seed. Units: metres, degrees.

    room_size: (min, max) side length of the room's bounding rectangle. l_shape_prob: chance of an
    L-shaped room. wall_height: (min, max). room_kind: force one of ``layout.ROOM_KINDS``.
    mesh_prob: chance of an MIT-0 mesh instead of a parametric model (classes that have one).
    clutter_density, fill: relative amounts of small clutter and extra furniture.
    sensor: "rgbd" or "lidar". image_size: RGB-D (width, height) pixels; hfov_deg its horizontal
    field of view; max_range the depth cut-off; noise_scale multiplies every noise sigma.
    pose_spacing: metres between poses along the path; max_poses: cap on scans per scene.
    lidar_beams, lidar_azimuth_steps, lidar_vfov_deg: the spinning LiDAR pattern.
    voxel_size: output resolution (one point per voxel). min_instance_points: objects with fewer
    points after downsampling are relabelled ignore (-100/-100).
    """

    room_size: tuple[float, float] = (3.0, 10.0)
    l_shape_prob: float = 0.35
    wall_height: tuple[float, float] = (2.4, 3.0)
    room_kind: str | None = None
    mesh_prob: float = 0.25
    clutter_density: float = 1.0
    fill: float = 1.0
    sensor: str = "rgbd"
    image_size: tuple[int, int] = (128, 96)
    hfov_deg: float = 70.0
    max_range: float = 4.0
    noise_scale: float = 1.0
    pose_spacing: float = 0.35
    max_poses: int = 60
    lidar_beams: int = 32
    lidar_azimuth_steps: int = 1024
    lidar_vfov_deg: tuple[float, float] = (-22.5, 22.5)
    voxel_size: float = 0.03
    min_instance_points: int = 25

    def __post_init__(self) -> None:
        def bad(msg: str) -> None:
            raise ValueError(f"SceneParams: {msg}")

        lo, hi = self.room_size
        if not (1.5 <= lo <= hi <= 50.0):
            bad(f"room_size must satisfy 1.5 <= min <= max <= 50 metres, got {self.room_size}")
        if not (1.8 <= self.wall_height[0] <= self.wall_height[1] <= 10.0):
            bad(f"wall_height must satisfy 1.8 <= min <= max <= 10 metres, got {self.wall_height}")
        for name in ("l_shape_prob", "mesh_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                bad(f"{name} is a probability in [0, 1], got {getattr(self, name)}")
        for name in ("clutter_density", "fill", "noise_scale"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0.0):
                bad(f"{name} must be a finite number >= 0, got {getattr(self, name)}")
        if self.sensor not in ("rgbd", "lidar"):
            bad(f"sensor must be 'rgbd' or 'lidar', got {self.sensor!r}")
        if min(self.image_size) < 8:
            bad(f"image_size must be at least 8 x 8 pixels, got {self.image_size}")
        if not 10.0 <= self.hfov_deg <= 150.0:
            bad(f"hfov_deg must be in [10, 150] degrees, got {self.hfov_deg}")
        if not self.max_range > 0.5:
            bad(f"max_range must be > 0.5 metres, got {self.max_range}")
        if not self.pose_spacing > 0.0:
            bad(f"pose_spacing must be > 0 metres, got {self.pose_spacing}")
        if self.max_poses < 1:
            bad(f"max_poses must be >= 1, got {self.max_poses}")
        if self.lidar_beams < 1 or self.lidar_azimuth_steps < 8:
            bad("lidar_beams must be >= 1 and lidar_azimuth_steps >= 8, got "
                f"{self.lidar_beams}, {self.lidar_azimuth_steps}")
        if not (0.0 < self.voxel_size <= 0.5):
            bad(f"voxel_size must be in (0, 0.5] metres, got {self.voxel_size}")
        if self.min_instance_points < 1:
            bad(f"min_instance_points must be >= 1, got {self.min_instance_points}")
        if self.room_kind is not None:
            from .layout import ROOM_KINDS

            if self.room_kind not in ROOM_KINDS:
                bad(f"room_kind must be None or one of {ROOM_KINDS}, got {self.room_kind!r}")

    @classmethod
    def small(cls, **overrides: Any) -> SceneParams:
        """A cheap preset for tests and smoke runs: 3-5 m rooms, a 96 x 72 camera, <= 24 poses,
        4 cm voxels (about 10-25 k points per scene)."""
        base: dict[str, Any] = {"room_size": (3.0, 5.0), "image_size": (96, 72), "max_poses": 24,
                                "voxel_size": 0.04, "pose_spacing": 0.5,
                                "min_instance_points": 10}
        base.update(overrides)
        return cls(**base)

    def camera(self):
        from .scanner import CameraModel

        s = self.noise_scale
        edge_drop = min(0.5 * s, 0.9)
        return CameraModel(width=int(self.image_size[0]), height=int(self.image_size[1]),
                           hfov_deg=float(self.hfov_deg), max_range=float(self.max_range),
                           noise_base=0.0012 * s, noise_quadratic=0.0019 * s,
                           dropout=min(0.02 * s, 0.5), edge_drop=edge_drop,
                           edge_flying=min(0.3 * s, 1.0 - edge_drop))

    def lidar(self):
        from .scanner import LidarModel

        s = self.noise_scale
        return LidarModel(beams=int(self.lidar_beams), azimuth_steps=int(self.lidar_azimuth_steps),
                          vfov_deg=tuple(float(v) for v in self.lidar_vfov_deg),
                          max_range=max(float(self.max_range), 40.0), noise_base=0.008 * s,
                          noise_linear=0.001 * s, dropout=min(0.03 * s, 0.5))


@dataclass
class ScanSequence:
    """The raw scans of a scene, per pose (see the module docstring for the arrays)."""

    xyz_sensor: np.ndarray
    rgb: np.ndarray
    semantic: np.ndarray
    instance: np.ndarray
    scan_offsets: np.ndarray
    stamps_ns: np.ndarray
    poses: np.ndarray
    frame_id: str
    fixed_frame: str = "room"

    @property
    def num_scans(self) -> int:
        return int(len(self.stamps_ns))

    def scan(self, s: int) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
        """Scan ``s``: (xyz (n, 3) float32 sensor frame, rgb (n, 3) uint8, stamp_ns, pose (4, 4)
        sensor -> room)."""
        a, b = int(self.scan_offsets[s]), int(self.scan_offsets[s + 1])
        return self.xyz_sensor[a:b], self.rgb[a:b], int(self.stamps_ns[s]), self.poses[s]


@dataclass
class Scene:
    """One generated scene.

    xyz: (N, 3) float32 metres, room frame (z up, floor at 0). rgb: (N, 3) uint8. semantic: (N,)
    int16 ScanNet-20 class, -100 ignore. instance: (N,) int32 0..K-1, -100 none. meta: what the
    ``.npz`` stores (class names, seed, params, room, per-instance boxes and classes).
    sequence: the raw per-pose scans when asked for. timing_s: seconds per stage (not saved).
    """

    xyz: np.ndarray
    rgb: np.ndarray
    semantic: np.ndarray
    instance: np.ndarray
    meta: dict[str, Any]
    sequence: ScanSequence | None = None
    timing_s: dict[str, float] = field(default_factory=dict)

    @property
    def num_points(self) -> int:
        return int(self.xyz.shape[0])

    @property
    def num_instances(self) -> int:
        return len(self.meta["instances"])

    def boxes(self):
        """``instances.Box3D`` (yaw-oriented) of every instance, in instance-id order."""
        from ..instances import Box3D

        return [Box3D(center=np.asarray(i["center"], float), size=np.asarray(i["size"], float),
                      yaw=float(i["yaw"]), kind="obb_z") for i in self.meta["instances"]]

    def save(self, path: str | Path) -> Path:
        """Write the scene ``.npz`` (DESIGN §5) at ``path``; returns the path."""
        path = Path(path)
        np.savez_compressed(path, xyz=self.xyz, rgb=self.rgb, semantic=self.semantic,
                            instance=self.instance, meta=np.array(json.dumps(self.meta)))
        return path

    def save_sequence(self, path: str | Path) -> Path:
        """Write the raw per-pose scans (``<stem>.sequence.npz``) at ``path``; returns it."""
        if self.sequence is None:
            raise ValueError("this scene was generated without its scan sequence; call "
                             "generate_scene(..., keep_sequence=True)")
        q = self.sequence
        meta = {
            "format": "ros2_inst3d.synthetic_sequence/1",
            "seed": self.meta["seed"],
            "frame_id": q.frame_id,
            "fixed_frame": q.fixed_frame,
            "poses": "sensor -> fixed_frame, 4x4 homogeneous",
            "sensor": self.meta["sensor"],
            "class_names": list(SCANNET20_CLASSES),
        }
        np.savez_compressed(Path(path), xyz_sensor=q.xyz_sensor, rgb=q.rgb, semantic=q.semantic,
                            instance=q.instance, scan_offsets=q.scan_offsets,
                            stamps_ns=q.stamps_ns, poses=q.poses, meta=np.array(json.dumps(meta)))
        return Path(path)

    def save_bag(self, path: str | Path, storage: str = "mcap") -> Path:
        """Write the scan sequence as a rosbag2 at ``path`` (a new directory): one
        ``sensor_msgs/PointCloud2`` per pose on ``/points`` (sensor frame, rgb), ``/tf``
        ``room -> <sensor frame>`` at every scan stamp and ``/tf_static`` ``map -> room``
        (identity), so ``ros2-inst3d bag`` and the node (fixed frame ``map``) take it as is."""
        from ..testing import write_scan_bag

        if self.sequence is None:
            raise ValueError("this scene was generated without its scan sequence; call "
                             "generate_scene(..., keep_sequence=True)")
        q = self.sequence
        scans = [q.scan(s) for s in range(q.num_scans)]
        stamps = [stamp for _, _, stamp, _ in scans]
        pose_at = {stamp: pose for _, _, stamp, pose in scans}
        return write_scan_bag(path, [np.asarray(xyz, np.float32) for xyz, _, _, _ in scans],
                              stamps, lambda stamp: pose_at[int(stamp)], stamps,
                              frame=q.frame_id, odom_frame=q.fixed_frame, fixed_frame="map",
                              rgbs=[rgb for _, rgb, _, _ in scans], storage=storage)

    def save_preview(self, path: str | Path) -> Path:
        """Top and 3D view of the scene coloured by instance (grey: stuff and ignore)."""
        from ..outputs import instance_colors
        from ..render import render_instances_png

        colors = instance_colors(self.instance)
        labels = [f"{i['id']}:{i['class_name']}" for i in self.meta["instances"]]
        box_colors = instance_colors([i["id"] for i in self.meta["instances"]])
        room = self.meta["room"]
        title = (f"seed {self.meta['seed']}  {room['kind']}  {self.num_points} pts  "
                 f"{self.num_instances} instances  {self.meta['sensor']['kind']}")
        return render_instances_png(path, self.xyz, colors, title, boxes=self.boxes(),
                                    box_colors=box_colors, box_labels=labels)


def _majority(point_to_voxel: np.ndarray, labels: np.ndarray, num_voxels: int) -> np.ndarray:
    """(M,) the most frequent label per voxel; ties go to the smaller label."""
    n_labels = int(labels.max()) + 1 if len(labels) else 1
    key = point_to_voxel.astype(np.int64) * n_labels + labels.astype(np.int64)
    uniq, counts = np.unique(key, return_counts=True)
    vox = uniq // n_labels
    order = np.lexsort((-counts, vox))  # per voxel, the largest count first
    first = np.ones(len(order), dtype=bool)
    first[1:] = vox[order][1:] != vox[order][:-1]
    out = np.empty(num_voxels, dtype=np.int64)
    out[vox[order][first]] = (uniq % n_labels)[order][first]
    return out


def downsample(xyz: np.ndarray, rgb: np.ndarray, obj: np.ndarray, voxel_size: float):
    """One point per voxel: the majority object of the voxel, and the mean position and colour
    of that object's points in it (so a voxel on a contact does not average two surfaces).

    xyz: (N, 3) float32 metres; rgb: (N, 3) float32; obj: (N,) int object index. Returns
    (xyz (M, 3) float32, rgb (M, 3) float32, obj (M,) int64, keep (N,) bool: the points used).
    """
    from ..voxelize import VoxelGrid, voxel_mean, voxelize

    grid = voxelize(xyz, voxel_size)
    winner = _majority(grid.point_to_voxel, obj, grid.num_voxels)
    keep = obj == winner[grid.point_to_voxel]
    # Every voxel keeps at least one point, so the kept points form the same voxels.
    kept = VoxelGrid(coords=grid.coords, point_to_voxel=grid.point_to_voxel[keep],
                     voxel_size=grid.voxel_size, origin=grid.origin)
    return (voxel_mean(kept, xyz[keep]).astype(np.float32),
            voxel_mean(kept, rgb[keep]).astype(np.float32), winner, keep)


def _to_uint8(rgb01: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(rgb01 * 255.0), 0, 255).astype(np.uint8)


@dataclass
class FurnishedRoom:
    """The geometry of a scene before scanning.

    room: the ``layout.Room``; floor, walls: their ``furniture.Model`` (room frame); objects: the
    placed ``layout.Placed`` things. Object index o (the ray-casting geometry id) is 0 for the
    floor, 1 for the walls and 2 + k for ``objects[k]``; the last index marks flying pixels.
    """

    room: Any
    floor: Any
    walls: Any
    objects: list

    @property
    def semantic_of(self) -> np.ndarray:
        """(O + 1,) int64 class per object index (IGNORE_LABEL for clutter), and IGNORE_LABEL
        for index O, the scanner's "no surface" (flying pixels)."""
        return np.array([self.floor.class_id, self.walls.class_id]
                        + [o.semantic for o in self.objects] + [IGNORE_LABEL], dtype=np.int64)

    def surfaces(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """Per object index: (vertices (V, 3) float32 room frame, triangles (T, 3) int32,
        tri_color (T, 3) float32, tri_texture (T,) uint8)."""
        out = [(m.vertices, m.triangles, m.tri_color, m.tri_texture)
               for m in (self.floor, self.walls)]
        out += [(o.vertices(), o.model.triangles, o.model.tri_color, o.model.tri_texture)
                for o in self.objects]
        return out


def _streams(seed: int) -> list[np.random.Generator]:
    """Independent random streams per stage (room, layout, world, path, sensor), so a change in
    one stage leaves the others' draws alone."""
    if int(seed) < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return [np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(5)]


def furnish_room(seed: int, params: SceneParams | None = None) -> FurnishedRoom:
    """The room and furniture of scene ``seed`` (what ``generate_scene`` scans)."""
    from . import layout as lay_mod

    params = params or SceneParams()
    rng_room, rng_layout = _streams(seed)[:2]
    room = lay_mod.make_room(rng_room, params.room_size, params.l_shape_prob, params.wall_height,
                             params.room_kind)
    layout = lay_mod.furnish(room, rng_layout, params.mesh_prob, params.clutter_density,
                             params.fill)
    floor, walls = lay_mod.room_models(room, rng_layout)
    return FurnishedRoom(room, floor, walls, layout.objects)


def _sensor_and_trajectory(scene_geo: FurnishedRoom, params: SceneParams,
                           rng: np.random.Generator):
    from . import scanner

    lidar = params.sensor == "lidar"
    sensor = params.lidar() if lidar else params.camera()
    obstacles = [o.footprint for o in scene_geo.objects if o.obstacle]
    # A LiDAR sees all around: it needs fewer, sparser poses than a camera for the same cover.
    traj = scanner.plan_trajectory(scene_geo.room, obstacles, rng, lidar,
                                   params.pose_spacing * (2.5 if lidar else 1.0),
                                   max(1, params.max_poses // 2) if lidar else params.max_poses)
    return sensor, traj


def generate_scene(seed: int, params: SceneParams | None = None, *, keep_sequence: bool = False,
                   threads: int = 0) -> Scene:
    """Generate, scan and label one scene; deterministic from ``seed`` and ``params``.

    keep_sequence: also return the raw per-pose scans (``Scene.sequence``). threads: ray-casting
    threads (0: all cores); it does not change the result.
    """
    from . import scanner

    params = params or SceneParams()
    seed = int(seed)
    timing: dict[str, float] = {}
    t0 = time.perf_counter()
    rng_world, rng_path, rng_sensor = _streams(seed)[2:]
    scene_geo = furnish_room(seed, params)
    room, objects = scene_geo.room, scene_geo.objects
    timing["layout"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    world = scanner.build_world(scene_geo.surfaces(), rng_world)
    semantic_of = scene_geo.semantic_of
    sensor, traj = _sensor_and_trajectory(scene_geo, params, rng_path)
    timing["plan"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    raw = scanner.scan(world, traj, sensor, rng_sensor, threads=threads)
    timing["scan"] = time.perf_counter() - t2

    t3 = time.perf_counter()
    if len(raw.obj) == 0:
        raise RuntimeError(f"seed {seed}: the sensor saw nothing (no ray hit within "
                           f"{sensor.min_range}..{sensor.max_range} m); check the sensor params")
    xyz, rgb, obj, _ = downsample(raw.xyz_room, raw.rgb, raw.obj, params.voxel_size)

    # Labels per object: stuff keeps its class without instance; things seen by enough points
    # get ids 0..K-1 in placement order; clutter and barely-seen things are ignored.
    n_obj = len(semantic_of)
    counts = np.bincount(obj, minlength=n_obj)
    is_thing = (semantic_of >= 0) & ~np.isin(semantic_of, list(STUFF_CLASSES))
    kept = is_thing & (counts >= params.min_instance_points)
    instance_of = np.full(n_obj, IGNORE_LABEL, dtype=np.int64)
    instance_of[kept] = np.arange(int(kept.sum()))
    sem_of = semantic_of.copy()
    sem_of[is_thing & ~kept] = IGNORE_LABEL
    sem_of[semantic_of < 0] = IGNORE_LABEL
    semantic = sem_of[obj].astype(np.int16)
    instance = instance_of[obj].astype(np.int32)

    instances_meta = []
    for k in np.flatnonzero(kept):
        o = objects[k - 2]
        centre, size, yaw = o.box()
        instances_meta.append({
            "id": int(instance_of[k]), "class_id": int(semantic_of[k]),
            "class_name": SCANNET20_CLASSES[int(semantic_of[k])], "model": o.model.kind,
            "role": o.role, "center": [round(float(v), 4) for v in centre],
            "size": [round(float(v), 4) for v in size], "yaw": round(float(yaw), 5),
            "num_points": int(counts[k]),
        })
    sensor_meta = {"kind": params.sensor, "frame_id": sensor.frame_id, **{
        k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(sensor).items()}}
    meta = {
        "format": FORMAT,
        "seed": seed,
        "split": split_of_seed(seed),
        "class_names": list(SCANNET20_CLASSES),
        "ignore_label": IGNORE_LABEL,
        "params": json.loads(json.dumps(asdict(params))),
        "room": {
            "kind": room.kind, "height": round(room.height, 4),
            "polygon": [[round(float(x), 4), round(float(y), 4)] for x, y in room.polygon],
            "openings": [{"kind": o.kind, "wall": o.wall, "s": [round(o.s0, 4), round(o.s1, 4)],
                          "z": [round(o.z0, 4), round(o.z1, 4)]} for o in room.openings],
        },
        "sensor": sensor_meta,
        "num_poses": int(len(traj.poses)),
        "path_length_m": round(traj.path_length, 3),
        "num_rays": raw.num_rays,
        "num_raw_points": int(len(raw.obj)),
        "voxel_size": params.voxel_size,
        "instances": instances_meta,
        "num_placed_objects": len(objects),
        "num_ignored_objects_seen": int(np.count_nonzero((counts[:-1] > 0)
                                                         & (sem_of[:-1] == IGNORE_LABEL))),
        "num_flying_points": int(counts[-1]),
    }
    sequence = None
    if keep_sequence:
        sequence = ScanSequence(
            xyz_sensor=raw.xyz_sensor, rgb=_to_uint8(raw.rgb),
            semantic=sem_of[raw.obj].astype(np.int16), instance=instance_of[raw.obj].astype(np.int32),
            scan_offsets=raw.offsets, stamps_ns=traj.stamps_ns, poses=traj.poses,
            frame_id=sensor.frame_id)
    timing["downsample"] = time.perf_counter() - t3
    timing["total"] = time.perf_counter() - t0
    return Scene(xyz=xyz, rgb=_to_uint8(rgb), semantic=semantic, instance=instance, meta=meta,
                 sequence=sequence, timing_s=timing)


def _scene_stem(seed: int, split: str | None) -> str:
    return f"{split}_{seed % SPLIT_SIZE:05d}" if split else f"scene_{seed:06d}"


def _generate_one(task: tuple) -> tuple[list[str], int, float]:
    seed, split, outdir, params, sequence, preview, bag = task
    scene = generate_scene(seed, params, keep_sequence=sequence or bag)
    stem = _scene_stem(seed, split)
    written = [str(scene.save(Path(outdir) / f"{stem}.npz"))]
    if sequence:
        written.append(str(scene.save_sequence(Path(outdir) / f"{stem}{SEQUENCE_SUFFIX}")))
    if bag:
        bag_path = Path(outdir) / f"{stem}{BAG_SUFFIX}"
        if bag_path.exists():
            raise FileExistsError(f"{bag_path} exists already; remove it to write a new bag")
        written.append(str(scene.save_bag(bag_path)))
    if preview:
        written.append(str(scene.save_preview(Path(outdir) / f"{stem}{PREVIEW_SUFFIX}")))
    return written, scene.num_points, scene.timing_s["total"]


def generate_dataset(outdir: str | Path, num_scenes: int, seed: int = 0, split: str | None = None,
                     sequence: bool = False, preview: bool = False, progress: bool = True,
                     params: SceneParams | None = None, workers: int = 1,
                     bag: bool = False) -> list[Path]:
    """Generate ``num_scenes`` scenes into ``outdir``; returns the scene ``.npz`` paths.

    Without ``split`` the seeds are ``seed .. seed + num_scenes - 1`` and the files
    ``scene_<seed>.npz``. With ``split`` ("train" | "val" | "test") ``seed`` is the first index
    within the split, the seeds are ``split_seed(split, seed + i)`` and the files
    ``<split>_<index>.npz``. sequence / preview add ``<stem>.sequence.npz`` /
    ``<stem>.preview.png``; bag adds ``<stem>_bag/`` (rosbag2, ``Scene.save_bag``). workers > 1 generates scenes in parallel processes (same files).
    """
    if num_scenes < 0:
        raise ValueError(f"num_scenes must be >= 0, got {num_scenes}")
    if split is not None:
        seeds = [split_seed(split, seed + i) for i in range(num_scenes)]
    else:
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        seeds = [seed + i for i in range(num_scenes)]
    params = params or SceneParams()
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    tasks = [(s, split, str(outdir), params, sequence, preview, bag) for s in seeds]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(tasks), desc="gen-data", unit="scene")
    results: list[tuple[list[str], int, float]] = []
    if workers > 1 and len(tasks) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers) as pool:
            for r in pool.map(_generate_one, tasks):
                results.append(r)
                if bar is not None:
                    bar.update(1)
    else:
        for task in tasks:
            results.append(_generate_one(task))
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    if results:
        pts = np.array([r[1] for r in results])
        secs = np.array([r[2] for r in results])
        log.info("generated %d scenes in %s: %.0f points/scene (min %d, max %d), %.2f s/scene",
                 len(results), outdir, pts.mean(), pts.min(), pts.max(), secs.mean())
    return [Path(r[0][0]) for r in results]


def raycast_baseline(seed: int, params: SceneParams | None = None, threads: int = 1):
    """The bare ray casting of scene ``seed``: a zero-argument callable that casts exactly the
    rays ``generate_scene`` casts (same world, trajectory and sensor) and nothing else. The
    benchmark's baseline: generator time / this time is the cost of everything around the ray
    casting (layout, noise, colour, voxelization, labels)."""
    import open3d as o3d

    from . import scanner

    params = params or SceneParams()
    rng_world, rng_path, rng_sensor = _streams(seed)[2:]
    scene_geo = furnish_room(seed, params)
    world = scanner.build_world(scene_geo.surfaces(), rng_world)
    sensor, traj = _sensor_and_trajectory(scene_geo, params, rng_path)
    rays = o3d.core.Tensor(scanner.sensor_rays(traj, sensor, rng_sensor))
    return lambda: world.scene.cast_rays(rays, nthreads=threads)


def benchmark_generator(num_scenes: int = 5, seed: int = 0, params: SceneParams | None = None,
                        threads: int = 1) -> dict[str, Any]:
    """Time ``generate_scene`` over seeds ``seed .. seed + num_scenes - 1`` against the bare ray
    casting of the same rays (``raycast_baseline``), both on ``threads`` ray-casting threads
    (numpy itself runs on one core).

    Returns ``{'scenes', 'seconds_per_scene', 'points_per_scene', 'rays_per_scene',
    'raycast_seconds_per_scene', 'ratio', 'per_scene': [...]}`` with wall-clock seconds (means
    over scenes) and ``ratio = seconds_per_scene / raycast_seconds_per_scene``.
    """
    params = params or SceneParams()
    generate_scene(seed, params, threads=threads)  # warm-up: imports, mesh files, caches
    rows = []
    for s in range(seed, seed + num_scenes):
        cast = raycast_baseline(s, params, threads)
        cast()
        t = time.perf_counter()
        cast()
        t_cast = time.perf_counter() - t
        t = time.perf_counter()
        scene = generate_scene(s, params, threads=threads)
        t_gen = time.perf_counter() - t
        rows.append({"seed": s, "kind": scene.meta["room"]["kind"], "points": scene.num_points,
                     "rays": scene.meta["num_rays"], "seconds": t_gen, "raycast_seconds": t_cast,
                     "stages": {k: round(v, 4) for k, v in scene.timing_s.items()}})
    sec = float(np.mean([r["seconds"] for r in rows]))
    cast_sec = float(np.mean([r["raycast_seconds"] for r in rows]))
    return {
        "scenes": num_scenes,
        "seconds_per_scene": sec,
        "points_per_scene": float(np.mean([r["points"] for r in rows])),
        "rays_per_scene": float(np.mean([r["rays"] for r in rows])),
        "raycast_seconds_per_scene": cast_sec,
        "ratio": sec / cast_sec,
        "per_scene": rows,
    }
