"""Points -> voxels: integer voxel coords, point<->voxel maps, per-voxel means, ROI crop.

Voxel order is the order of first occurrence over the points, the order of the hash map in the
official SoftGroup/ISBNet/PointGroup ``voxelization_idx`` op (docs/official-models.md §0,
fact 8). Their released checkpoints were trained with it, and sparse convolutions keep the input
voxel order, so we keep it too. Everything here is vectorised numpy (no loop over points).

A point ``p`` lies in voxel ``c = floor((p - origin) / voxel_size)``, i.e. in the half-open box
``origin + c * voxel_size <= p < origin + (c + 1) * voxel_size``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

__all__ = ["VoxelGrid", "voxelize", "voxel_coords", "voxel_keys", "point_voxel_keys",
           "key_groups", "unique_voxels", "first_points_of_voxels", "voxel_mean", "crop_roi"]

_INT32_MAX = np.iinfo(np.int32).max
# Three axis extents multiplied into one int64 key must stay below this; otherwise rows are
# compared directly (slower, but no wrap-around collisions).
_PACKED_KEY_LIMIT = 2**62


@dataclass
class VoxelGrid:
    """Result of :func:`voxelize`.

    coords: (M, 3) int32 — voxel indices (x, y, z), in first-occurrence order over the points.
    point_to_voxel: (N,) int64 — the voxel row of each point: ``coords[point_to_voxel[n]]`` holds point n.
    voxel_size: edge length of a voxel, metres.
    origin: (3,) float64 — world coordinate of the corner of voxel (0, 0, 0), metres.
    """

    coords: np.ndarray
    point_to_voxel: np.ndarray
    voxel_size: float
    origin: np.ndarray

    @property
    def num_voxels(self) -> int:
        return int(self.coords.shape[0])

    @property
    def num_points(self) -> int:
        return int(self.point_to_voxel.shape[0])

    def voxel_counts(self) -> np.ndarray:
        """(M,) int64 number of points in each voxel."""
        return np.bincount(self.point_to_voxel, minlength=self.num_voxels).astype(np.int64)

    def voxel_to_points(self) -> tuple[np.ndarray, np.ndarray]:
        """CSR map voxel -> points: ``(ptr (M + 1,) int64, idx (N,) int64)``.

        The points of voxel m are ``idx[ptr[m]:ptr[m + 1]]``, in increasing point index.
        """
        idx = np.argsort(self.point_to_voxel, kind="stable").astype(np.int64)
        ptr = np.zeros(self.num_voxels + 1, dtype=np.int64)
        np.cumsum(self.voxel_counts(), out=ptr[1:])
        return ptr, idx

    def voxel_centers(self) -> np.ndarray:
        """(M, 3) float64 world coordinates of the voxel centres, metres."""
        return self.origin + (self.coords.astype(np.float64) + 0.5) * self.voxel_size


def _check_xyz(xyz: Any) -> np.ndarray:
    points = np.asarray(xyz)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"xyz must have shape (N, 3), got {points.shape}")
    if not np.issubdtype(points.dtype, np.floating):
        raise ValueError(f"xyz must be floating point (metres), got dtype {points.dtype}")
    if not np.all(np.isfinite(points)):
        bad = int(np.count_nonzero(~np.all(np.isfinite(points), axis=1)))
        raise ValueError(
            f"xyz has {bad} point(s) with NaN/inf coordinates; drop them first "
            "(cloud.decode removes non-finite points)"
        )
    return points


def _check_voxel_size(voxel_size: float) -> float:
    size = float(voxel_size)
    if not (math.isfinite(size) and size > 0.0):
        raise ValueError(f"voxel_size must be a finite positive length in metres, got {voxel_size!r}")
    return size


def voxel_coords(xyz: Any, voxel_size: float, origin: Sequence[float] | np.ndarray) -> np.ndarray:
    """Integer voxel index of each point: ``floor((xyz - origin) / voxel_size)``.

    xyz: (N, 3) float, metres. origin: (3,) metres. Returns (N, 3) int64, every value within
    int32 range (raises ValueError otherwise: the voxel is too small for the cloud's extent).
    """
    points = _check_xyz(xyz)
    size = _check_voxel_size(voxel_size)
    corner = np.asarray(origin, dtype=np.float64)
    if corner.shape != (3,) or not np.all(np.isfinite(corner)):
        raise ValueError(f"origin must be 3 finite numbers (metres), got {origin!r}")
    # In place: this runs on every scan the accumulator dedupes (temporaries cost as much as
    # the arithmetic).
    scaled = points.astype(np.float64)
    if corner.any():
        scaled -= corner
    scaled /= size
    np.floor(scaled, out=scaled)
    if scaled.size and max(float(scaled.max()), -float(scaled.min())) > _INT32_MAX:
        raise ValueError(
            f"voxel indices exceed int32 range: the cloud spans {np.ptp(points, axis=0).tolist()} m "
            f"from origin {corner.tolist()} with voxel_size {size} m; use a larger voxel_size, "
            "crop the cloud, or put the origin near the points"
        )
    return scaled.astype(np.int64)


# Global voxel keys pack three 21-bit signed axis indices into one int64 (see voxel_keys).
_KEY_BITS = 21
_KEY_OFFSET = 1 << (_KEY_BITS - 1)


def voxel_keys(xyz: Any, voxel_size: float) -> np.ndarray:
    """(M,) int64 sorted unique keys of the global voxels ``floor(xyz / voxel_size)`` holding ``xyz``.

    xyz: (N, 3) float, metres. Keys of different clouds compare directly (same grid, no per-cloud
    origin), so set overlap in the fixed frame is ``np.intersect1d`` of two key arrays. Each axis
    index must lie within +-2**20 voxels (+-105 km at 0.1 m), else ValueError.
    """
    coords = voxel_coords(xyz, voxel_size, np.zeros(3))
    keys = _global_keys(coords)
    if keys is None:
        raise ValueError(f"voxel_keys: coordinates beyond +-{_KEY_OFFSET} voxels of "
                         f"{voxel_size} m from the origin")
    return np.unique(keys)


def point_voxel_keys(xyz: Any, voxel_size: float) -> np.ndarray | None:
    """(N,) int64 key of the global voxel ``floor(xyz / voxel_size)`` of each point (the packing
    of :func:`voxel_keys`, unsorted, one per point), or None when some axis index lies beyond
    +-2**20 voxels. xyz: (N, 3) float, metres."""
    return _global_keys(voxel_coords(xyz, voxel_size, np.zeros(3)))


def _global_keys(coords: np.ndarray) -> np.ndarray | None:
    """(N,) int64 keys of integer ``coords`` (N, 3) on the fixed 21-bit-per-axis packing; None
    when an index lies outside +-2**20. No per-cloud origin, so no per-axis min/max pass."""
    if coords.size and max(int(coords.max()), -int(coords.min())) >= _KEY_OFFSET:
        return None
    x, y, z = (coords[:, axis].astype(np.int64) for axis in range(3))
    x += _KEY_OFFSET
    x <<= 2 * _KEY_BITS
    y += _KEY_OFFSET
    y <<= _KEY_BITS
    z += _KEY_OFFSET
    x |= y
    x |= z
    return x


def _packed_keys(coords: Any) -> np.ndarray | None:
    """(N,) int64 key per row of integer ``coords`` (N, 3), equal iff the rows are equal; None
    when the coords' extent does not fit one int64 (the caller compares rows instead)."""
    coords = np.asarray(coords)
    if coords.ndim != 2 or coords.shape[1] != 3:
        raise ValueError(f"coords must have shape (N, 3), got {coords.shape}")
    if coords.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    key = _global_keys(coords)   # the fast path: any cloud within +-2**20 voxels of the origin
    if key is not None:
        return key
    coords = coords.astype(np.int64, copy=False)
    low = coords.min(axis=0)
    extent = [int(e) for e in coords.max(axis=0) - low + 1]
    if extent[0] * extent[1] * extent[2] >= _PACKED_KEY_LIMIT:
        return None
    shifted = coords - low
    return (shifted[:, 0] * extent[1] + shifted[:, 1]) * extent[2] + shifted[:, 2]


def _groups(key: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Equal keys grouped: ``(order, starts, first)``. ``order`` sorts ``key`` (any order among
    equals), ``starts`` are the group starts in it, ``first[g]`` the smallest index of group g.

    An unstable argsort plus a per-group minimum is several times faster than ``np.unique``'s
    stable sort with index and inverse (numpy's SIMD sorts are unstable-only).
    """
    order = np.argsort(key)
    ordered = key[order]
    boundary = np.empty(len(key), dtype=bool)
    boundary[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=boundary[1:])
    starts = np.flatnonzero(boundary)
    return order, starts, np.minimum.reduceat(order, starts)


def key_groups(key: np.ndarray, last: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Equal keys grouped: ``(unique_keys (M,) sorted, index (M,) int64)``, ``index[g]`` the
    smallest (``last``: the largest) position in ``key`` (N,) int64 holding ``unique_keys[g]``."""
    if len(key) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    order, starts, first = _groups(key)
    index = np.maximum.reduceat(order, starts) if last else first
    return key[order[starts]], index.astype(np.int64, copy=False)


def first_points_of_voxels(coords: np.ndarray) -> np.ndarray:
    """``unique_voxels(coords)[0]`` without the point -> voxel map: (M,) int64 ascending index of
    the first point in each voxel of ``coords`` (N, 3) integer voxel indices (dedupe's need)."""
    if len(coords) == 0:
        return np.zeros(0, dtype=np.int64)
    key = _packed_keys(coords)
    if key is None:
        return unique_voxels(coords)[0]
    return np.sort(_groups(key)[2]).astype(np.int64, copy=False)


def unique_voxels(coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group points by voxel in first-occurrence order.

    coords: (N, 3) integer voxel indices. Returns ``(first_index (M,) int64, point_to_voxel (N,)
    int64)``: ``first_index[m]`` is the first point that falls in voxel m and is increasing in m,
    and ``point_to_voxel[n]`` is the voxel of point n.
    """
    coords = np.asarray(coords)
    if coords.ndim != 2 or coords.shape[1] != 3:
        raise ValueError(f"coords must have shape (N, 3), got {coords.shape}")
    if coords.shape[0] == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    key = _packed_keys(coords)
    if key is not None:
        order, starts, first = _groups(key)
        step = np.zeros(len(key), dtype=np.int64)
        step[starts[1:]] = 1
        group_of_sorted = np.cumsum(step)
        inverse = np.empty(len(key), dtype=np.int64)
        inverse[order] = group_of_sorted
    else:
        _, first, inverse = np.unique(coords.astype(np.int64, copy=False), axis=0,
                                      return_index=True, return_inverse=True)
    # Groups come in key order; renumber the voxels by their first point instead.
    by_first = np.argsort(first)
    rank = np.empty_like(by_first)
    rank[by_first] = np.arange(by_first.shape[0])
    return first[by_first].astype(np.int64), rank[inverse.reshape(-1)].astype(np.int64)


def voxelize(xyz: Any, voxel_size: float, origin: Sequence[float] | np.ndarray | None = None) -> VoxelGrid:
    """Voxelize a cloud.

    xyz: (N, 3) float32/float64, metres. voxel_size: metres, > 0. origin: (3,) metres, the corner of
    voxel (0, 0, 0); default ``xyz.min(0)`` so every coordinate is >= 0 (the zero vector for an
    empty cloud). Returns a :class:`VoxelGrid` with voxels in first-occurrence order.
    """
    points = _check_xyz(xyz)
    size = _check_voxel_size(voxel_size)
    if origin is None:
        corner = points.min(axis=0).astype(np.float64) if points.shape[0] else np.zeros(3)
    else:
        corner = np.asarray(origin, dtype=np.float64).copy()
    coords = voxel_coords(points, size, corner)
    first, point_to_voxel = unique_voxels(coords)
    return VoxelGrid(
        coords=coords[first].astype(np.int32),
        point_to_voxel=point_to_voxel,
        voxel_size=size,
        origin=corner,
    )


def voxel_mean(grid: VoxelGrid, values: Any) -> np.ndarray:
    """Mean of per-point ``values`` over each voxel.

    values: (N,) or (N, C) numeric, one row per point of the grid. Returns (M,) or (M, C), float32
    for float32/integer inputs up to 16 bits (e.g. uint8 rgb) and float64 otherwise; sums run in
    float64.
    """
    array = np.asarray(values)
    if array.ndim not in (1, 2) or array.shape[0] != grid.num_points:
        raise ValueError(
            f"values must have shape (N,) or (N, C) with N = {grid.num_points} points, got {array.shape}"
        )
    out_dtype = np.result_type(array.dtype, np.float32)
    columns = array.reshape(grid.num_points, array.shape[1] if array.ndim == 2 else 1)
    counts = np.bincount(grid.point_to_voxel, minlength=grid.num_voxels).astype(np.float64)
    means = np.empty((grid.num_voxels, columns.shape[1]), dtype=np.float64)
    for c in range(columns.shape[1]):
        sums = np.bincount(
            grid.point_to_voxel, weights=columns[:, c].astype(np.float64), minlength=grid.num_voxels
        )
        means[:, c] = sums / np.maximum(counts, 1.0)
    means = means.astype(out_dtype, copy=False)
    return means.reshape(grid.num_voxels) if array.ndim == 1 else means


def _bounds(value: Any, name: str, unbounded: float) -> np.ndarray:
    if value is None:
        return np.full(3, unbounded)
    items = list(value)
    if len(items) != 3:
        raise ValueError(f"{name} must have 3 entries (x, y, z), got {len(items)}")
    bounds = np.array([unbounded if v is None else float(v) for v in items], dtype=np.float64)
    if np.any(np.isnan(bounds)):
        raise ValueError(f"{name} contains NaN; use None (or ±inf) for an unbounded axis")
    return bounds


def crop_roi(
    xyz: Any,
    roi_min: Sequence[float | None] | None = None,
    roi_max: Sequence[float | None] | None = None,
) -> np.ndarray:
    """Mask of the points inside an axis-aligned region of interest.

    xyz: (N, 3) metres. roi_min/roi_max: 3 bounds (x, y, z) in metres, in xyz's frame; ``None``
    (the whole bound or one entry) leaves that side unbounded. The box is half-open,
    ``roi_min <= p < roi_max`` on every axis, so adjacent boxes tile space without sharing points.
    Returns (N,) bool. Raises ValueError when some axis has ``roi_min >= roi_max`` (an empty box is
    a configuration mistake, not a request).
    """
    points = np.asarray(xyz)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"xyz must have shape (N, 3), got {points.shape}")
    low = _bounds(roi_min, "roi_min", -np.inf)
    high = _bounds(roi_max, "roi_max", np.inf)
    if np.any(low >= high):
        raise ValueError(f"ROI is empty: roi_min {low.tolist()} must be < roi_max {high.tolist()} on every axis")
    return np.all((points >= low) & (points < high), axis=1)
