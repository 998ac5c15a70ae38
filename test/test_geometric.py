"""The geometric baseline and the Segmenter around it, on scenes built here with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import lidar_config, room_scene

from ros2_inst3d.classes import OTHERFURNITURE
from ros2_inst3d.config import Config, GeometricConfig
from ros2_inst3d.model.geometric import (
    GeometricModel,
    count_inliers,
    fit_plane,
    ransac_plane,
    structure_mask,
    voxel_components,
)
from ros2_inst3d.model.proposals import Proposals, paste_by_score
from ros2_inst3d.segmenter import SegmentationError, Segmenter


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
    props = GeometricModel().predict_points(xyz)
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
    a = GeometricModel().predict_points(xyz)
    b = GeometricModel().predict_points(xyz)
    assert len(a) == len(b)
    assert all(np.array_equal(x, y) for x, y in zip(a.indices, b.indices))


def test_paste_by_score_gives_overlaps_to_the_best_proposal():
    props = Proposals([np.array([0, 1, 2]), np.array([2, 3]), np.array([3, 4])],
                      [4, 4, 6], [0.5, 0.9, 0.7])
    owner = paste_by_score(6, props)
    assert owner.tolist() == [0, 0, 1, 1, 2, -1]


def test_segmenter_instances_are_the_points_they_own():
    # Overlapping proposals (SoftGroup's dual-set grouping makes many): each instance keeps only
    # the points it wins, so its indices agree with the labelled cloud, and a proposal that wins
    # no point is not an instance.
    class Replay:
        name = "replay"
        proposals = Proposals([np.arange(0, 60), np.arange(30, 90), np.arange(40, 50)],
                              np.array([4, 6, 4], np.int32), np.array([0.5, 0.9, 0.3], np.float32))

        def predict_points(self, xyz, rgb):
            return self.proposals

    xyz = np.random.default_rng(0).uniform(-1, 1, (100, 3)).astype(np.float32)
    cfg = Config().replace(**{"segment.min_points": 5, "segment.score_threshold": 0.1})
    inst = Segmenter(cfg, Replay()).segment(xyz)
    assert inst.class_ids.tolist() == [4, 6] and inst.scores.tolist() == pytest.approx([0.5, 0.9])
    assert [idx.tolist() for idx in inst.indices] == [list(range(0, 30)), list(range(30, 90))]
    for k in range(inst.num_instances):
        assert np.count_nonzero(inst.point_instance == k) == len(inst.indices[k])


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
