"""Tests for ros2_inst3d.voxelize against slow per-point reference implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ros2_inst3d.voxelize import (VoxelGrid, crop_roi, first_points_of_voxels, unique_voxels,
                                  voxel_coords, voxel_mean, voxelize)

PROPERTY = settings(max_examples=80, deadline=None)

# Coordinates on a coarse lattice make many points share voxels and land exactly on faces.
lattice_clouds = hnp.arrays(
    np.float32,
    st.tuples(st.integers(0, 60), st.just(3)),
    elements=st.integers(-20, 20).map(lambda v: float(np.float32(v * 0.05))),
)
free_clouds = hnp.arrays(
    np.float64,
    st.tuples(st.integers(0, 60), st.just(3)),
    elements=st.floats(-100.0, 100.0, allow_nan=False, allow_infinity=False),
)
clouds = st.one_of(lattice_clouds, free_clouds)
voxel_sizes = st.sampled_from([0.01, 0.05, 0.1, 0.3, 1.0, 7.5])


def reference_voxelize(xyz, voxel_size, origin):
    """Per-point loop with a dict in insertion order (the official op's hash map)."""
    voxel_of = {}
    point_to_voxel = []
    for p in np.asarray(xyz, dtype=np.float64):
        key = tuple(math.floor((p[a] - origin[a]) / voxel_size) for a in range(3))
        if key not in voxel_of:
            voxel_of[key] = len(voxel_of)
        point_to_voxel.append(voxel_of[key])
    return np.array(list(voxel_of), dtype=np.int64).reshape(-1, 3), np.array(point_to_voxel, dtype=np.int64)


@PROPERTY
@given(xyz=clouds, voxel_size=voxel_sizes)
def test_voxelize_matches_insertion_order_reference(xyz, voxel_size):
    grid = voxelize(xyz, voxel_size)
    origin = xyz.min(axis=0).astype(np.float64) if len(xyz) else np.zeros(3)
    coords, point_to_voxel = reference_voxelize(xyz, voxel_size, origin)
    assert grid.coords.dtype == np.int32 and grid.point_to_voxel.dtype == np.int64
    np.testing.assert_array_equal(grid.coords, coords)
    np.testing.assert_array_equal(grid.point_to_voxel, point_to_voxel)
    np.testing.assert_array_equal(grid.origin, origin)
    assert grid.num_voxels == len(coords) and grid.num_points == len(xyz)


@PROPERTY
@given(xyz=clouds, voxel_size=voxel_sizes)
def test_every_point_lies_in_exactly_its_voxel(xyz, voxel_size):
    grid = voxelize(xyz, voxel_size)
    assert grid.point_to_voxel.shape == (len(xyz),)
    if len(xyz) == 0:
        assert grid.num_voxels == 0
        return
    assert grid.point_to_voxel.min() >= 0 and grid.point_to_voxel.max() < grid.num_voxels
    # Every voxel holds at least one point and voxels are distinct.
    assert set(grid.point_to_voxel.tolist()) == set(range(grid.num_voxels))
    assert len({tuple(c) for c in grid.coords.tolist()}) == grid.num_voxels
    # Default origin = min corner -> non-negative coords.
    assert grid.coords.min() >= 0
    lower = grid.origin + grid.coords[grid.point_to_voxel] * voxel_size
    upper = lower + voxel_size
    tol = 1e-9 * max(1.0, float(np.abs(xyz).max()))
    assert np.all(xyz >= lower - tol) and np.all(xyz < upper + tol)
    # First-occurrence order: the first point of each voxel comes before the first of the next.
    first = np.array([np.flatnonzero(grid.point_to_voxel == m)[0] for m in range(grid.num_voxels)])
    assert np.all(np.diff(first) > 0)


@PROPERTY
@given(xyz=free_clouds.filter(lambda a: len(a) > 0), data=st.data())
def test_voxel_mean_matches_loop(xyz, data):
    grid = voxelize(xyz, 5.0)
    values = data.draw(hnp.arrays(np.float32, (len(xyz), 4), elements=st.floats(-1e3, 1e3, width=32)))
    means = voxel_mean(grid, values)
    assert means.shape == (grid.num_voxels, 4) and means.dtype == np.float32
    for m in range(grid.num_voxels):
        members = values[grid.point_to_voxel == m].astype(np.float64)
        np.testing.assert_allclose(means[m], members.mean(axis=0), rtol=1e-6, atol=1e-4)
    single = voxel_mean(grid, values[:, 0])
    assert single.shape == (grid.num_voxels,)
    np.testing.assert_allclose(single, means[:, 0])


@PROPERTY
@given(xyz=clouds, voxel_size=voxel_sizes)
def test_voxel_to_points_csr_inverts_point_to_voxel(xyz, voxel_size):
    grid = voxelize(xyz, voxel_size)
    ptr, idx = grid.voxel_to_points()
    assert ptr.shape == (grid.num_voxels + 1,) and idx.shape == (len(xyz),)
    assert ptr[0] == 0 and ptr[-1] == len(xyz)
    for m in range(grid.num_voxels):
        np.testing.assert_array_equal(idx[ptr[m] : ptr[m + 1]], np.flatnonzero(grid.point_to_voxel == m))
    np.testing.assert_array_equal(grid.voxel_counts(), np.diff(ptr))


def test_small_cloud_by_hand():
    xyz = np.array([[0.0, 0.0, 0.0], [0.15, 0.0, 0.0], [0.05, 0.0, 0.0], [0.01, 0.01, 0.01], [0.25, 0.1, 0.0]])
    grid = voxelize(xyz, 0.1, origin=[0.0, 0.0, 0.0])
    np.testing.assert_array_equal(grid.coords, [[0, 0, 0], [1, 0, 0], [2, 1, 0]])
    np.testing.assert_array_equal(grid.point_to_voxel, [0, 1, 0, 0, 2])
    np.testing.assert_allclose(voxel_mean(grid, xyz), [[0.02, 1 / 300, 1 / 300], [0.15, 0, 0], [0.25, 0.1, 0]])
    np.testing.assert_allclose(grid.voxel_centers(), [[0.05, 0.05, 0.05], [0.15, 0.05, 0.05], [0.25, 0.15, 0.05]])
    rgb = np.array([[0, 0, 0], [10, 20, 30], [255, 255, 255], [30, 30, 30], [1, 2, 3]], dtype=np.uint8)
    colour = voxel_mean(grid, rgb)
    assert colour.dtype == np.float32
    np.testing.assert_allclose(colour[0], [95.0, 95.0, 95.0])


def test_explicit_origin_allows_negative_coords():
    grid = voxelize(np.array([[-0.25, 0.0, 0.35]]), 0.1, origin=np.zeros(3))
    np.testing.assert_array_equal(grid.coords, [[-3, 0, 3]])


def test_huge_extent_uses_row_comparison_and_agrees_with_reference():
    """Extents whose product overflows a packed int64 key must not collide."""
    rng = np.random.default_rng(0)
    xyz = np.concatenate([rng.uniform(0, 1e3, size=(200, 3)), rng.uniform(0, 1e3, size=(50, 3)).round(1)])
    xyz = np.concatenate([xyz, xyz[:40]])  # duplicates to merge
    voxel_size = 1e-6  # extents ~1e9 voxels per axis: 1e27 > 2**62
    grid = voxelize(xyz, voxel_size)
    coords, point_to_voxel = reference_voxelize(xyz, voxel_size, xyz.min(axis=0))
    np.testing.assert_array_equal(grid.coords, coords)
    np.testing.assert_array_equal(grid.point_to_voxel, point_to_voxel)


def test_unique_voxels_does_not_wrap_int64_keys():
    # y and z span 2**32 voxels: a packed key x * 2**64 + ... would wrap and merge x = 0 with x = 1.
    coords = np.array([[0, 0, 0], [1, 0, 0], [0, 2**32 - 1, 2**32 - 1]], dtype=np.int64)
    first, point_to_voxel = unique_voxels(coords)
    np.testing.assert_array_equal(first, [0, 1, 2])
    np.testing.assert_array_equal(point_to_voxel, [0, 1, 2])


def test_unique_voxels_first_index():
    coords = np.array([[5, 5, 5], [1, 1, 1], [5, 5, 5], [0, 0, 0], [1, 1, 1]])
    first, point_to_voxel = unique_voxels(coords)
    np.testing.assert_array_equal(first, [0, 1, 3])
    np.testing.assert_array_equal(point_to_voxel, [0, 1, 0, 2, 1])


def test_empty_cloud_gives_empty_grid():
    grid = voxelize(np.zeros((0, 3), np.float32), 0.05)
    assert grid.num_voxels == 0 and grid.num_points == 0 and grid.coords.shape == (0, 3)
    assert voxel_mean(grid, np.zeros((0, 6), np.float32)).shape == (0, 6)
    ptr, idx = grid.voxel_to_points()
    np.testing.assert_array_equal(ptr, [0])
    assert idx.shape == (0,)


@pytest.mark.parametrize("voxel_size", [0.0, -0.1, float("nan"), float("inf")])
def test_bad_voxel_size_is_rejected(voxel_size):
    with pytest.raises(ValueError, match="voxel_size"):
        voxelize(np.zeros((3, 3)), voxel_size)


def test_bad_clouds_are_rejected():
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        voxelize(np.zeros((4, 2)), 0.1)
    with pytest.raises(ValueError, match="NaN/inf"):
        voxelize(np.array([[0.0, 0.0, np.nan]]), 0.1)
    with pytest.raises(ValueError, match="floating point"):
        voxelize(np.zeros((4, 3), dtype=np.int32), 0.1)
    with pytest.raises(ValueError, match="int32 range"):
        voxelize(np.array([[0.0, 0.0, 0.0], [1e4, 0.0, 0.0]]), 1e-6)
    with pytest.raises(ValueError, match="origin"):
        voxel_coords(np.zeros((1, 3)), 0.1, [0.0, 0.0])
    grid = voxelize(np.zeros((4, 3)), 0.1)
    with pytest.raises(ValueError, match="N = 4"):
        voxel_mean(grid, np.zeros((3, 2)))


def test_voxel_grid_is_the_documented_dataclass():
    grid = VoxelGrid(
        coords=np.zeros((1, 3), np.int32), point_to_voxel=np.zeros(2, np.int64), voxel_size=0.1, origin=np.zeros(3)
    )
    assert grid.num_voxels == 1 and grid.num_points == 2
    np.testing.assert_array_equal(grid.voxel_counts(), [2])


# ---------------------------------------------------------------------------------------------
# ROI crop
# ---------------------------------------------------------------------------------------------

bounds = st.lists(st.one_of(st.none(), st.integers(-20, 20).map(lambda v: v * 0.05)), min_size=3, max_size=3)


@PROPERTY
@given(xyz=lattice_clouds, low=st.one_of(st.none(), bounds), high=st.one_of(st.none(), bounds))
def test_crop_roi_matches_loop(xyz, low, high):
    lo = [None] * 3 if low is None else low
    hi = [None] * 3 if high is None else high
    if any(a is not None and b is not None and a >= b for a, b in zip(lo, hi, strict=True)):
        with pytest.raises(ValueError, match="ROI is empty"):
            crop_roi(xyz, low, high)
        return
    mask = crop_roi(xyz, low, high)
    # Exact comparison of the float32 coordinates with the float64 bounds.
    expected = [
        all((lo[a] is None or float(p[a]) >= lo[a]) and (hi[a] is None or float(p[a]) < hi[a]) for a in range(3))
        for p in xyz
    ]
    assert mask.dtype == bool
    np.testing.assert_array_equal(mask, np.array(expected, dtype=bool).reshape(-1))


def test_crop_roi_is_half_open():
    xyz = np.array([[0.0, 0.0, 0.0], [1.0, 0.5, 0.5], [0.5, 0.5, 1.0], [0.5, -0.1, 0.5]], dtype=np.float32)
    np.testing.assert_array_equal(crop_roi(xyz, [0, 0, 0], [1, 1, 1]), [True, False, False, False])
    np.testing.assert_array_equal(crop_roi(xyz, [0, None, 0], [None, 1, None]), [True, True, True, True])
    np.testing.assert_array_equal(crop_roi(xyz), [True] * 4)
    # Two boxes that share a face split the points without overlap.
    left = crop_roi(xyz, None, [0.5, None, None])
    right = crop_roi(xyz, [0.5, None, None], None)
    assert not np.any(left & right) and np.all(left | right)


def test_crop_roi_bad_bounds():
    with pytest.raises(ValueError, match="3 entries"):
        crop_roi(np.zeros((1, 3)), [0, 0], None)
    with pytest.raises(ValueError, match="NaN"):
        crop_roi(np.zeros((1, 3)), [0, float("nan"), 0], None)
    with pytest.raises(ValueError, match="ROI is empty"):
        crop_roi(np.zeros((1, 3)), [0, 0, 1], [1, 1, 1])


@pytest.mark.parametrize("seed", range(4))
def test_fast_grouping_matches_numpy_unique(seed):
    # unique_voxels / first_points_of_voxels group with an unstable sort; the answer must be the
    # one np.unique's stable definition gives: first occurrence, voxels in first-point order.
    rng = np.random.default_rng(seed)
    coords = rng.integers(-3, 4, size=(5000, 3))
    _, first_ref, inverse_ref = np.unique(coords, axis=0, return_index=True, return_inverse=True)
    by_first = np.argsort(first_ref)
    rank = np.empty_like(by_first)
    rank[by_first] = np.arange(len(by_first))
    first, point_to_voxel = unique_voxels(coords)
    np.testing.assert_array_equal(first, first_ref[by_first])
    np.testing.assert_array_equal(point_to_voxel, rank[inverse_ref.reshape(-1)])
    np.testing.assert_array_equal(first_points_of_voxels(coords), first)
    assert first_points_of_voxels(np.zeros((0, 3), np.int64)).shape == (0,)
