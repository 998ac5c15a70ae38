"""The geometric baseline and the Segmenter around it, on scenes built here with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from config_helpers import lidar_config

from ros2_inst3d.classes import OTHERFURNITURE
from ros2_inst3d.config import GeometricConfig
from ros2_inst3d.model.geometric import (
    GeometricSegmenter,
    count_inliers,
    fit_plane,
    ransac_plane,
    structure_mask,
    voxel_components,
)
from ros2_inst3d.model.proposals import Proposals, paste_by_score
from ros2_inst3d.segmenter import SegmentationError, Segmenter


def _box_surface(rng, centre, size, n):
    """Points on the surface of an axis-aligned box (what a scanner sees, roughly)."""
    p = rng.uniform(-0.5, 0.5, (n, 3))
    axis = rng.integers(0, 3, n)
    p[np.arange(n), axis] = rng.choice([-0.5, 0.5], n)
    return p * np.asarray(size) + np.asarray(centre)


def room_scene(seed=0):
    """Floor 6x5 m, two walls, a table (top at 0.75 m on four legs) and three separate objects,
    sampled about as densely as a 2-3 cm RGB-D accumulation (~1 cm apart on objects).

    Returns xyz and the ground-truth object id per point (-1 = structure).
    """
    rng = np.random.default_rng(seed)
    parts, ids = [], []
    floor = np.c_[rng.uniform(0, 6, (30000, 2)) * [1, 5 / 6], rng.normal(0, 0.004, 30000)]
    wall_a = np.c_[rng.uniform(0, 6, 12000), np.full(12000, 5.0), rng.uniform(0, 2.5, 12000)]
    wall_b = np.c_[np.full(10000, 0.0), rng.uniform(0, 5, 10000), rng.uniform(0, 2.5, 10000)]
    for p in (floor, wall_a, wall_b):
        parts.append(p)
        ids.append(np.full(len(p), -1))
    table_top = np.c_[rng.uniform(2.0, 3.4, 12000), rng.uniform(2.0, 2.9, 12000),
                      rng.uniform(0.72, 0.76, 12000)]
    legs = [_box_surface(rng, [x, y, 0.37], [0.05, 0.05, 0.7], 900)
            for x in (2.05, 3.35) for y in (2.05, 2.85)]
    objects = [np.concatenate([table_top, *legs]),
               _box_surface(rng, [1.0, 1.0, 0.45], [0.5, 0.5, 0.9], 9000),
               _box_surface(rng, [4.8, 1.0, 0.6], [0.6, 0.8, 1.2], 12000),
               _box_surface(rng, [4.5, 4.0, 0.25], [0.4, 0.4, 0.5], 4500)]
    for k, p in enumerate(objects):
        parts.append(p)
        ids.append(np.full(len(p), k))
    return np.concatenate(parts).astype(np.float32), np.concatenate(ids)


def test_fit_plane_and_ransac_recover_a_plane():
    rng = np.random.default_rng(1)
    normal = np.array([0.2, -0.3, 0.93])
    normal /= np.linalg.norm(normal)
    basis = np.linalg.svd(normal[None])[2][1:]
    pts = rng.uniform(-2, 2, (2000, 2)) @ basis + 0.5 * normal
    outliers = rng.uniform(-2, 2, (500, 3))
    n, d = fit_plane(pts)
    assert abs(abs(n @ normal) - 1) < 1e-9 and abs(abs(d) - 0.5) < 1e-9
    found = ransac_plane(np.vstack([pts, outliers]), 0.01, 200, np.random.default_rng(0))
    assert found is not None
    n2, _, inliers = found
    assert abs(abs(n2 @ normal) - 1) < 1e-4
    assert inliers[:2000].all() and inliers[2000:].mean() < 0.05


def test_count_inliers_matches_float64_counts_away_from_the_threshold():
    """The chunked float32 scoring counts what a float64 |n.p + d| < t would, for every
    hypothesis (more than one chunk of them), when no point sits within 1e-4 m of the threshold."""
    rng = np.random.default_rng(3)
    sample = rng.uniform(-5, 5, (3000, 3))
    normals = rng.normal(size=(45, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    offsets = rng.uniform(-1, 1, 45)
    distance = 0.4
    exact = np.abs(sample @ normals.T + offsets)
    near = np.abs(exact - distance) < 1e-4
    sample = sample[~near.any(axis=1)]
    expected = (np.abs(sample @ normals.T + offsets) < distance).sum(axis=0)
    counts = count_inliers(sample, normals, offsets, distance)
    assert counts.dtype == np.int64 and counts.shape == (45,)
    np.testing.assert_array_equal(counts, expected)
    assert expected.min() > 0


def test_voxel_components_match_a_slow_flood_fill():
    rng = np.random.default_rng(2)
    coords = np.unique(rng.integers(0, 8, (120, 3)), axis=0)
    labels = voxel_components(coords, reach=1)
    # Slow reference: BFS over 26-neighbourhoods.
    index = {tuple(c): i for i, c in enumerate(coords)}
    ref = -np.ones(len(coords), dtype=int)
    comp = 0
    for start in range(len(coords)):
        if ref[start] >= 0:
            continue
        stack = [start]
        ref[start] = comp
        while stack:
            i = stack.pop()
            for off in np.ndindex(3, 3, 3):
                j = index.get(tuple(coords[i] + np.array(off) - 1))
                if j is not None and ref[j] < 0:
                    ref[j] = comp
                    stack.append(j)
        comp += 1
    # Same partition (ids may be numbered differently).
    pairs = set(zip(labels.tolist(), ref.tolist()))
    assert len(pairs) == len(set(labels.tolist())) == len(set(ref.tolist()))


def test_structure_mask_removes_floor_and_walls_but_keeps_the_table_top():
    xyz, gt = room_scene()
    structure = structure_mask(xyz, GeometricConfig())
    assert structure[gt == -1].mean() > 0.97
    table = gt == 0
    assert structure[table].mean() < 0.05  # its top is horizontal but 0.74 m above the floor


def test_baseline_finds_each_separate_object_once():
    xyz, gt = room_scene()
    props = GeometricSegmenter().predict_points(xyz)
    assert len(props) == 4
    assert (props.class_ids == OTHERFURNITURE).all()
    for ix in props.indices:
        owners = gt[ix]
        majority = np.bincount(owners[owners >= 0]).argmax()
        # Each cluster is one object, and covers most of it: a box loses its bottom face (1/6 of
        # its points), which lies on the floor plane.
        assert (owners == majority).mean() > 0.98
        assert len(ix) / (gt == majority).sum() > 0.75
    assert len({int(np.bincount(gt[ix][gt[ix] >= 0]).argmax()) for ix in props.indices}) == 4


def test_baseline_is_deterministic_and_order_independent_of_nothing_random():
    xyz, _ = room_scene(3)
    a = GeometricSegmenter().predict_points(xyz)
    b = GeometricSegmenter().predict_points(xyz)
    assert len(a) == len(b)
    assert all(np.array_equal(x, y) for x, y in zip(a.indices, b.indices))


def test_paste_by_score_gives_overlaps_to_the_best_proposal():
    props = Proposals([np.array([0, 1, 2]), np.array([2, 3]), np.array([3, 4])],
                      [4, 4, 6], [0.5, 0.9, 0.7])
    owner = paste_by_score(6, props)
    assert owner.tolist() == [0, 0, 1, 1, 2, -1]


def test_segmenter_filters_and_maps_back_to_all_points():
    xyz, gt = room_scene()
    cfg = lidar_config().replace(**{"segment.roi_max": [50.0, 3.5, 5.0]})  # cuts the far objects
    inst = Segmenter(cfg).segment(xyz)
    assert len(inst.point_instance) == len(xyz)
    inside = xyz[:, 1] < 3.5
    assert (inst.point_instance[~inside] == -1).all()
    assert inst.num_instances == 3  # the object at y=4 is outside the ROI
    assert inst.ids.tolist() == list(range(inst.num_instances))
    for k in range(inst.num_instances):
        assert (inst.point_instance[inst.indices[k]] == k).all()

    strict = lidar_config().replace(**{"segment.min_points": 9000})
    # The table (~15000 points left) and the 12000-point box (~10000 above the floor) remain.
    assert Segmenter(strict).segment(xyz).num_instances == 2
    none = lidar_config().replace(**{"segment.class_filter": ["chair"]})
    assert Segmenter(none).segment(xyz).num_instances == 0


def test_segmenter_point_cap_and_bad_input():
    xyz, _ = room_scene()
    capped = Segmenter(lidar_config().replace(**{"segment.max_points": 20000})).segment(xyz)
    assert (capped.point_instance >= 0).sum() <= 20000
    seg = Segmenter(lidar_config())
    with pytest.raises(SegmentationError) as err:
        seg.segment(np.array([[0, 0, np.nan]], dtype=np.float32))
    assert err.value.reason == "non_finite"
    with pytest.raises(SegmentationError):
        seg.segment(np.zeros((5, 2), dtype=np.float32))
    empty = seg.segment(np.zeros((0, 3), dtype=np.float32))
    assert empty.num_instances == 0
