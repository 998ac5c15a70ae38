"""The segmentation result (:class:`Instances`) and per-instance geometry (boxes, footprints).

Two box kinds, both computed from an instance's points:

- ``aabb``: axis-aligned in the fixed frame (min/max of the points).
- ``obb_z``: rotated about z only. Its ground rectangle is the minimum-area rectangle around the
  points' xy convex hull (one side of that rectangle lies on a hull edge, Freeman & Shapira 1975,
  so trying every edge direction finds it); z spans min..max of the points. Convention: the box x
  axis runs along the longer horizontal side (``size[0] >= size[1]``) and ``yaw`` is in
  [-pi/2, pi/2). For near-square footprints the long side, hence yaw, can flip by 90 degrees
  between frames; the rectangle itself stays the same.

The ground footprint published to navigation is the xy convex hull itself (tighter than any box
for non-rectangular objects), see :func:`convex_hull_xy`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ros2_inst3d.classes import IGNORE_LABEL, SCANNET20_CLASSES, class_name
from ros2_inst3d.transforms import quaternion_from_euler

BOX_KINDS = ("aabb", "obb_z")


@dataclass(frozen=True, eq=False)
class Box3D:
    """A box rotated about z.

    center: (3,) float64, metres. size: (3,) float64, full extent along the box's own x, y, z,
    metres. yaw: rotation about z, rad (0 for ``aabb``). kind: ``'aabb'`` or ``'obb_z'``.
    """

    center: np.ndarray
    size: np.ndarray
    yaw: float = 0.0
    kind: str = "aabb"

    @property
    def quaternion(self) -> np.ndarray:
        """(4,) float64 orientation (x, y, z, w), unit length; (0, 0, 0, 1) when yaw is 0."""
        return quaternion_from_euler(0.0, 0.0, self.yaw)

    def _axes_xy(self) -> np.ndarray:
        """(2, 2) float64: columns are the box's x and y axes in the frame."""
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return np.array([[c, -s], [s, c]])

    def footprint(self) -> np.ndarray:
        """(4, 2) float64 ground rectangle corners (x, y), counter-clockwise, metres."""
        half = 0.5 * self.size[:2]
        local = np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]]) * half
        return self.center[:2] + local @ self._axes_xy().T

    def corners(self) -> np.ndarray:
        """(8, 3) float64 corners: the footprint at the bottom face, then at the top face."""
        ring = self.footprint()
        z0 = self.center[2] - 0.5 * self.size[2]
        z1 = self.center[2] + 0.5 * self.size[2]
        return np.concatenate([np.column_stack([ring, np.full(4, z0)]),
                               np.column_stack([ring, np.full(4, z1)])])

    def contains(self, xyz: np.ndarray, tol: float = 1e-6) -> np.ndarray:
        """(N,) bool: which points of ``xyz`` (N, 3) lie inside the box grown by ``tol`` metres."""
        rel = np.asarray(xyz, dtype=np.float64) - self.center
        local_xy = rel[:, :2] @ self._axes_xy()
        half = 0.5 * self.size + tol
        return ((np.abs(local_xy) <= half[:2]).all(axis=1)) & (np.abs(rel[:, 2]) <= half[2])


def _points3(xyz: Any, what: str) -> np.ndarray:
    pts = np.asarray(xyz, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) == 0:
        raise ValueError(f"{what} needs a non-empty (N, 3) array of points, got shape {pts.shape}")
    if not np.isfinite(pts).all():
        raise ValueError(f"{what}: the points contain NaN or inf; filter non-finite points first")
    return pts


def axis_aligned_box(xyz: np.ndarray) -> Box3D:
    """The axis-aligned bounding box of ``xyz`` (N, 3), N >= 1, metres."""
    pts = _points3(xyz, "axis_aligned_box")
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    return Box3D(center=0.5 * (lo + hi), size=hi - lo, yaw=0.0, kind="aabb")


def _principal_direction(xy: np.ndarray) -> np.ndarray:
    """(2,) unit vector of largest spread of ``xy`` (N, 2), centred; (1, 0) when there is none."""
    cov = xy.T @ xy
    if not np.any(cov):
        return np.array([1.0, 0.0])
    _, vectors = np.linalg.eigh(cov)
    return vectors[:, -1]


def _hull_xy_centred(xy: np.ndarray) -> np.ndarray:
    """Convex hull of ``xy`` (N, 2), already centred: (H, 2) counter-clockwise, H in 1..N.

    Degenerate inputs qhull refuses (fewer than 3 distinct points, all collinear) give the two
    extreme points along the line, or the single point.
    """
    from scipy.spatial import ConvexHull, QhullError

    if len(xy) >= 3:
        try:
            return xy[ConvexHull(xy).vertices]  # scipy orders 2-D hull vertices counter-clockwise
        except QhullError:
            pass
    direction = _principal_direction(xy)
    t = xy @ direction
    lo, hi = int(np.argmin(t)), int(np.argmax(t))
    return xy[[lo]] if np.array_equal(xy[lo], xy[hi]) else xy[[lo, hi]]


def convex_hull_xy(xyz: np.ndarray) -> np.ndarray:
    """Convex hull of the points projected onto the xy plane.

    xyz: (N, 3) (or (N, 2)) points, N >= 1, metres. Returns (H, 2) float64 vertices,
    counter-clockwise, not closed. H is 2 for collinear points and 1 when all points coincide.
    """
    pts = np.asarray(xyz, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] not in (2, 3) or len(pts) == 0:
        raise ValueError(f"convex_hull_xy needs a non-empty (N, 3) array, got shape {pts.shape}")
    xy = pts[:, :2]
    if not np.isfinite(xy).all():
        raise ValueError("convex_hull_xy: the points contain NaN or inf; filter them first")
    origin = xy.mean(axis=0)  # qhull is more robust near the origin than at map coordinates
    return _hull_xy_centred(xy - origin) + origin


def _wrap_half_turn(angle: float) -> float:
    """``angle`` mapped into [-pi/2, pi/2) (a box is symmetric under a half turn)."""
    wrapped = (angle + 0.5 * math.pi) % math.pi - 0.5 * math.pi
    return wrapped - math.pi if wrapped >= 0.5 * math.pi else wrapped


def _min_area_angle(hull: np.ndarray) -> float:
    """Direction (rad) of the minimum-area rectangle around ``hull`` (H >= 3, 2), CCW.

    Rotating calipers, vectorised: every edge direction is a candidate, and the four caliper
    (support) vertices of every candidate are found at once by binary search, because the
    edge directions of a counter-clockwise convex polygon increase monotonically: vertex i is
    the farthest one in every direction between the outward normals of edges i-1 and i.
    O(H log H) time and memory, also for round objects whose hull has thousands of vertices.
    """
    edges = np.roll(hull, -1, axis=0) - hull
    raw = np.arctan2(edges[:, 1], edges[:, 0])
    # Unwrapped, non-decreasing edge directions (each turn of a convex CCW polygon is >= 0).
    turns = np.concatenate([[0.0], np.cumsum(np.mod(np.diff(raw), 2.0 * math.pi))])
    directions = raw[0] + turns

    def support(normal_angle: np.ndarray) -> np.ndarray:
        """(E, 2) hull vertex farthest along each direction ``normal_angle`` (E,) rad."""
        edge_angle = raw[0] + np.mod(normal_angle + 0.5 * math.pi - raw[0], 2.0 * math.pi)
        return hull[np.searchsorted(directions, edge_angle) % len(hull)]

    u = np.column_stack([np.cos(raw), np.sin(raw)])  # candidate x axes, (E, 2)
    v = np.column_stack([-u[:, 1], u[:, 0]])
    length = np.einsum("ij,ij->i", support(raw) - support(raw + math.pi), u)
    width = np.einsum("ij,ij->i", support(raw + 0.5 * math.pi) - support(raw - 0.5 * math.pi), v)
    return float(raw[int(np.argmin(length * width))])


def oriented_box_z(xyz: np.ndarray) -> Box3D:
    """The minimum-footprint box of ``xyz`` (N, 3), N >= 1, rotated about z only.

    Ground rectangle: minimum area around the xy convex hull; z: min..max of the points.
    ``size[0] >= size[1]`` and ``yaw`` in [-pi/2, pi/2) (module docstring). Degenerate
    footprints: collinear points give a zero-width box along their line; coincident points a
    zero-size box with yaw 0.
    """
    return _oriented_box_and_hull(xyz)[0]


def _oriented_box_and_hull(xyz: np.ndarray) -> tuple[Box3D, np.ndarray]:
    """``oriented_box_z(xyz)`` and ``convex_hull_xy(xyz)``, sharing the hull computation."""
    pts = _points3(xyz, "oriented_box_z")
    origin = pts[:, :2].mean(axis=0)
    xy = pts[:, :2] - origin
    hull = _hull_xy_centred(xy)
    if len(hull) >= 3:
        angle = _min_area_angle(hull) % (0.5 * math.pi)
    else:
        direction = _principal_direction(xy)
        angle = math.atan2(direction[1], direction[0]) if np.ptp(xy, axis=0).any() else 0.0
    c, s = math.cos(angle), math.sin(angle)
    # The collinear case measures the width from all points: qhull may refuse a set that is
    # only nearly collinear, and the box must still contain it.
    ring = hull if len(hull) >= 3 else xy
    u = ring @ np.array([c, s])
    v = ring @ np.array([-s, c])
    length, width = float(np.ptp(u)), float(np.ptp(v))
    mid_u, mid_v = 0.5 * (u.min() + u.max()), 0.5 * (v.min() + v.max())
    center_xy = origin + mid_u * np.array([c, s]) + mid_v * np.array([-s, c])
    if width > length:
        length, width, angle = width, length, angle + 0.5 * math.pi
    z0, z1 = float(pts[:, 2].min()), float(pts[:, 2].max())
    box = Box3D(center=np.array([center_xy[0], center_xy[1], 0.5 * (z0 + z1)]),
                size=np.array([length, width, z1 - z0]),
                yaw=_wrap_half_turn(angle) if length > 0 else 0.0, kind="obb_z")
    return box, hull + origin


# ------------------------------------------------------------------------------------ Instances


def _integer_array(name: str, value: Any, shape: tuple[int | None, ...],
                   dtype: type = np.int32) -> np.ndarray:
    arr = np.asarray(value)
    if arr.size == 0:
        arr = arr.astype(dtype)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"Instances.{name} must be an integer array, got dtype {arr.dtype}")
    _check_shape(name, arr, shape)
    info = np.iinfo(dtype)
    if arr.size and (arr.min() < info.min or arr.max() > info.max):
        raise ValueError(f"Instances.{name} has values outside the {np.dtype(dtype)} range")
    return arr.astype(dtype, copy=False)


def _check_shape(name: str, arr: np.ndarray, shape: tuple[int | None, ...]) -> None:
    if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"Instances.{name} must have shape {want}, got {arr.shape}")


@dataclass(eq=False)
class Instances:
    """Instances found in one cloud.

    Per point (N points, the cloud the result refers to):
        xyz: (N, 3) float32, metres, fixed frame.
        rgb: (N, 3) uint8 or None.
        point_instance: (N,) int32, the id of the instance each point is shown as, -1 = none.
            One id per point even where instances overlap (the model's fused labelling).
        point_class: (N,) int32, semantic class per point (index into ``class_names``),
            -100 = unknown.
    Per instance (K instances; ``k`` below is a position 0..K-1, not an id):
        ids: (K,) int32, unique, >= 0.
        class_ids: (K,) int32, indices into ``class_names``.
        scores: (K,) float32, confidence in [0, 1].
        indices: K arrays of int64 point indices, non-empty, sorted or not; instances may share
            points.
    class_names: the class table (default ScanNet-20). timing_ms: per-stage timings, ms (the
    given dict itself is kept, so stages timed after construction can still add to it).

    Boxes, hulls and centroids are computed on first use and cached; the arrays must not be
    modified afterwards.
    """

    xyz: np.ndarray
    rgb: np.ndarray | None
    point_instance: np.ndarray
    point_class: np.ndarray
    ids: np.ndarray
    class_ids: np.ndarray
    scores: np.ndarray
    indices: list[np.ndarray]
    class_names: tuple[str, ...] = SCANNET20_CLASSES
    timing_ms: dict[str, float] = field(default_factory=dict)
    _cache: dict[tuple[str, int], Any] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        xyz = np.asarray(self.xyz)
        if xyz.dtype.kind != "f":
            raise TypeError(f"Instances.xyz must be a float array, got dtype {xyz.dtype}")
        _check_shape("xyz", xyz, (None, 3))
        self.xyz = xyz.astype(np.float32, copy=False)
        n = len(self.xyz)
        if self.rgb is not None:
            rgb = np.asarray(self.rgb)
            if rgb.dtype != np.uint8:
                raise TypeError(f"Instances.rgb must be uint8 (0..255), got dtype {rgb.dtype}")
            _check_shape("rgb", rgb, (n, 3))
            self.rgb = rgb
        self.point_instance = _integer_array("point_instance", self.point_instance, (n,))
        self.point_class = _integer_array("point_class", self.point_class, (n,))
        self.ids = _integer_array("ids", self.ids, (None,))
        k = len(self.ids)
        self.class_ids = _integer_array("class_ids", self.class_ids, (k,))
        scores = np.asarray(self.scores)
        if scores.size == 0:
            scores = scores.astype(np.float32)
        if scores.dtype.kind != "f":
            raise TypeError(f"Instances.scores must be a float array, got dtype {scores.dtype}")
        _check_shape("scores", scores, (k,))
        self.scores = scores.astype(np.float32, copy=False)
        self.class_names = tuple(self.class_names)
        if not isinstance(self.timing_ms, dict):
            self.timing_ms = dict(self.timing_ms)
        self._check_values()
        if len(self.indices) != k:
            raise ValueError(f"Instances has {k} ids but {len(self.indices)} index arrays")
        self.indices = [self._check_indices(i, idx) for i, idx in enumerate(self.indices)]

    def _check_values(self) -> None:
        n_classes = len(self.class_names)
        if len(self.ids) and self.ids.min() < 0:
            raise ValueError("Instances.ids must be >= 0 (-1 marks points without an instance)")
        if len(np.unique(self.ids)) != len(self.ids):
            raise ValueError(f"Instances.ids must be unique, got {self.ids.tolist()}")
        bad = (self.class_ids < 0) | (self.class_ids >= n_classes)
        if bad.any():
            raise ValueError(f"Instances.class_ids {self.class_ids[bad].tolist()} are not indices "
                             f"into class_names ({n_classes} classes)")
        if not np.isfinite(self.scores).all():
            raise ValueError("Instances.scores contain NaN or inf")
        bad = (self.point_class != IGNORE_LABEL) & (
            (self.point_class < 0) | (self.point_class >= n_classes))
        if bad.any():
            raise ValueError(f"Instances.point_class has values {np.unique(self.point_class[bad])}"
                             f" that are neither {IGNORE_LABEL} nor indices into class_names")
        labelled = self.point_instance[self.point_instance != -1]
        stray = labelled[~np.isin(labelled, self.ids)]
        if len(stray):
            raise ValueError(f"Instances.point_instance refers to ids {np.unique(stray).tolist()} "
                             "that are not in Instances.ids (use -1 for 'no instance')")

    def _check_indices(self, k: int, idx: Any) -> np.ndarray:
        arr = np.asarray(idx)
        if arr.dtype.kind not in "iu" or arr.ndim != 1:
            raise TypeError(f"Instances.indices[{k}] must be a 1-D integer array, got "
                            f"{arr.dtype} with shape {arr.shape}")
        if len(arr) == 0:
            raise ValueError(f"instance id {int(self.ids[k])} has no points; drop empty "
                             "instances before building Instances")
        if arr.min() < 0 or arr.max() >= len(self.xyz):
            raise ValueError(f"Instances.indices[{k}] has point indices outside "
                             f"0..{len(self.xyz) - 1}")
        return arr.astype(np.int64, copy=False)

    # ------------------------------------------------------------------ construction

    @classmethod
    def empty(cls, xyz: np.ndarray, rgb: np.ndarray | None = None,
              class_names: Sequence[str] = SCANNET20_CLASSES,
              timing_ms: Mapping[str, float] | None = None) -> "Instances":
        """No instances on the cloud ``xyz`` (N, 3): every point unlabelled."""
        n = len(np.asarray(xyz))
        return cls(xyz=xyz, rgb=rgb, point_instance=np.full(n, -1, np.int32),
                   point_class=np.full(n, IGNORE_LABEL, np.int32),
                   ids=np.zeros(0, np.int32), class_ids=np.zeros(0, np.int32),
                   scores=np.zeros(0, np.float32), indices=[],
                   class_names=tuple(class_names), timing_ms=dict(timing_ms or {}))

    @classmethod
    def from_point_labels(
        cls,
        xyz: np.ndarray,
        rgb: np.ndarray | None,
        point_instance: np.ndarray,
        class_of_instance: Sequence[int] | np.ndarray | Mapping[int, int],
        score_of_instance: Sequence[float] | np.ndarray | Mapping[int, float],
        point_class: np.ndarray | None = None,
        class_names: Sequence[str] = SCANNET20_CLASSES,
        timing_ms: Mapping[str, float] | None = None,
    ) -> "Instances":
        """Instances from one instance id per point (no overlaps).

        point_instance: (N,) int, any negative value = no instance (e.g. -1 or -100).
        class_of_instance / score_of_instance: class index / score per instance id, as an array
            indexed by id (length > max id, the prediction-file layout) or a mapping id -> value.
        point_class: (N,) int semantic class per point; default: the class of each point's
            instance, -100 for points without one.
        Ids are kept as given and sorted ascending; each instance's indices are ascending.
        """
        labels = _integer_array("point_instance", point_instance, (len(np.asarray(xyz)),),
                                dtype=np.int64)
        labels = np.where(labels < 0, -1, labels)
        labelled = np.flatnonzero(labels >= 0)
        order = labelled[np.argsort(labels[labelled], kind="stable")]
        ids, starts = np.unique(labels[order], return_index=True)
        indices = np.split(order, starts[1:]) if len(ids) else []
        class_ids = _lookup("class_of_instance", class_of_instance, ids, np.int64)
        scores = _lookup("score_of_instance", score_of_instance, ids, np.float64)
        if point_class is None:
            point_class = np.full(len(labels), IGNORE_LABEL, np.int32)
            point_class[labelled] = class_ids[np.searchsorted(ids, labels[labelled])]
        return cls(xyz=xyz, rgb=rgb, point_instance=labels, point_class=point_class,
                   ids=ids, class_ids=class_ids, scores=scores.astype(np.float32),
                   indices=indices, class_names=tuple(class_names),
                   timing_ms=dict(timing_ms or {}))

    def select(self, keep: np.ndarray | Sequence[bool] | Sequence[int]) -> "Instances":
        """The instances chosen by ``keep``: a (K,) bool mask or positions 0..K-1.

        Ids, the points and their semantic classes are kept; points of dropped instances get
        point_instance -1. Cached boxes of kept instances carry over.
        """
        keep = np.asarray(keep)
        if keep.dtype == bool:
            if keep.shape != (self.num_instances,):
                raise ValueError(f"select: mask of shape {keep.shape} for {self.num_instances} "
                                 "instances")
            positions = np.flatnonzero(keep)
        elif keep.dtype.kind in "iu" or keep.size == 0:
            positions = keep.astype(np.int64).reshape(-1)
            if len(positions) and (positions.min() < 0 or positions.max() >= self.num_instances):
                raise IndexError(f"select: positions must be in 0..{self.num_instances - 1}")
        else:
            raise TypeError(f"select takes a bool mask or integer positions, got {keep.dtype}")
        ids = self.ids[positions]
        point_instance = self.point_instance.copy()
        point_instance[(point_instance != -1) & ~np.isin(point_instance, ids)] = -1
        out = Instances(xyz=self.xyz, rgb=self.rgb, point_instance=point_instance,
                        point_class=self.point_class, ids=ids,
                        class_ids=self.class_ids[positions], scores=self.scores[positions],
                        indices=[self.indices[p] for p in positions],
                        class_names=self.class_names, timing_ms=dict(self.timing_ms))
        new_position = {int(p): i for i, p in enumerate(positions)}
        out._cache.update({(what, new_position[p]): value
                           for (what, p), value in self._cache.items() if p in new_position})
        return out

    # ------------------------------------------------------------------ per-instance views

    @property
    def num_instances(self) -> int:
        return len(self.ids)

    @property
    def num_points(self) -> int:
        return len(self.xyz)

    def position(self, instance_id: int) -> int:
        """The position k of the instance with id ``instance_id``."""
        hits = np.flatnonzero(self.ids == instance_id)
        if not len(hits):
            raise KeyError(f"no instance with id {instance_id} (ids: {self.ids.tolist()})")
        return int(hits[0])

    def points(self, k: int) -> np.ndarray:
        """(M, 3) float32 points of instance ``k``."""
        return self.xyz[self.indices[k]]

    def class_name(self, k: int) -> str:
        return class_name(int(self.class_ids[k]), self.class_names)

    def _cached(self, what: str, k: int, compute: Any) -> Any:
        if not 0 <= k < self.num_instances:
            raise IndexError(f"instance position {k} out of range 0..{self.num_instances - 1}")
        key = (what, k)
        if key not in self._cache:
            self._cache[key] = compute(self.points(k))
        return self._cache[key]

    def aabb(self, k: int) -> Box3D:
        """Axis-aligned box of instance ``k`` (cached)."""
        return self._cached("aabb", k, axis_aligned_box)

    def obb(self, k: int) -> Box3D:
        """Z-oriented minimum-footprint box of instance ``k`` (cached)."""
        return self._oriented(k)[0]

    def _oriented(self, k: int) -> tuple[Box3D, np.ndarray]:
        return self._cached("obb_z", k, _oriented_box_and_hull)

    def box(self, k: int, kind: str = "obb_z") -> Box3D:
        """``aabb(k)`` or ``obb(k)`` by ``kind``."""
        if kind not in BOX_KINDS:
            raise ValueError(f"unknown box kind '{kind}'; choose one of {BOX_KINDS}")
        return self.aabb(k) if kind == "aabb" else self.obb(k)

    def footprint(self, k: int) -> np.ndarray:
        """(H, 2) float64 xy convex hull of instance ``k``, counter-clockwise (cached)."""
        return self._oriented(k)[1]

    def centroid(self, k: int) -> np.ndarray:
        """(3,) float64 mean of the points of instance ``k``, metres (cached)."""
        return self._cached("centroid", k, lambda p: p.astype(np.float64).mean(axis=0))


def _lookup(name: str, table: Any, ids: np.ndarray, dtype: type) -> np.ndarray:
    """``table[id]`` for every id, from an array indexed by id or a mapping."""
    if isinstance(table, Mapping):
        missing = [int(i) for i in ids if int(i) not in table]
        if missing:
            raise KeyError(f"{name} has no entry for instance ids {missing}")
        values = np.asarray([table[int(i)] for i in ids])
    else:
        values = np.asarray(table)
        if len(ids) and (values.ndim != 1 or len(values) <= ids.max()):
            raise ValueError(f"{name} must be a 1-D array indexed by instance id; it has shape "
                             f"{values.shape} but instance id {int(ids.max())} occurs")
        values = values[ids] if len(ids) else np.zeros(0, dtype)
    if np.dtype(dtype).kind in "iu" and values.size and values.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers, got dtype {values.dtype}")
    return values.astype(dtype)
