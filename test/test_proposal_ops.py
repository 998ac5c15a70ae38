"""Proposal helpers of SoftGroup's refinement / PointGroup's ScoreNet against slow references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ros2_inst3d.model.proposal_ops import (
    clusters_to_masks,
    concat_masks,
    gt_iou,
    mask_offsets,
    select_masks,
    soft_score_target,
    split_per_item,
    voxelize_proposals,
)
from ros2_inst3d.ops import SparseMasks


def random_masks(rng: np.random.Generator, num_points: int, num_masks: int) -> SparseMasks:
    pairs = sorted({(int(rng.integers(num_masks)), int(p))
                    for p in rng.integers(0, num_points, size=num_points * 2)})
    mask_idx = torch.tensor([m for m, _ in pairs])
    point_idx = torch.tensor([p for _, p in pairs])
    return SparseMasks(mask_idx, point_idx, num_masks)


def test_clusters_to_masks_groups_points_by_id_in_point_order():
    masks = clusters_to_masks(torch.tensor([2, 0, -1, 2, 0, 1, -1]))
    assert masks.num_masks == 3
    assert masks.mask_idx.tolist() == [0, 0, 1, 2, 2]
    assert masks.point_idx.tolist() == [1, 4, 5, 0, 3]
    assert mask_offsets(masks).tolist() == [0, 2, 3, 5]
    assert clusters_to_masks(torch.full((4,), -1)).num_masks == 0


def test_concat_and_select_renumber_masks():
    a = clusters_to_masks(torch.tensor([0, 0, 1, -1]))
    b = clusters_to_masks(torch.tensor([-1, 0, 0, 0]))
    both = concat_masks([a, b])
    assert both.num_masks == 3
    assert both.mask_idx.tolist() == [0, 0, 1, 2, 2, 2]
    picked = select_masks(both, torch.tensor([0, 2]))
    assert picked.num_masks == 2
    assert picked.mask_idx.tolist() == [0, 0, 1, 1, 1]
    assert picked.point_idx.tolist() == [0, 1, 1, 2, 3]
    reordered = select_masks(both, torch.tensor([2, 0]))  # any order: new ids follow `keep`
    assert reordered.mask_idx.tolist() == [0, 0, 0, 1, 1]
    assert reordered.point_idx.tolist() == [1, 2, 3, 0, 1]


def test_split_per_item_makes_indices_local_and_keeps_mask_order():
    # Item 0 = points 0..3, item 1 = points 4..8; mask 1 lies in item 1, masks 0 and 2 in item 0.
    masks = SparseMasks(torch.tensor([0, 0, 1, 1, 2]), torch.tensor([1, 2, 5, 8, 3]), 3)
    point_class = torch.arange(9) + 10
    items = split_per_item(masks, torch.tensor([4, 5, 6]), torch.tensor([0.9, 0.8, 0.7]),
                           point_class, torch.tensor([0, 4, 9]), {"grouping": 1.5})
    assert [ix.tolist() for ix in items[0].indices] == [[1, 2], [3]]
    assert [ix.tolist() for ix in items[1].indices] == [[1, 4]]
    assert items[0].class_ids.tolist() == [4, 6] and items[1].class_ids.tolist() == [5]
    assert items[1].scores.tolist() == pytest.approx([0.8])
    assert items[1].point_class.tolist() == [14, 15, 16, 17, 18]
    assert items[0].timing_ms == {"grouping": 1.5}


def test_gt_iou_matches_set_arithmetic():
    rng = np.random.default_rng(0)
    n, k, num_inst = 200, 7, 5
    masks = random_masks(rng, n, k)
    instance = torch.from_numpy(rng.integers(-1, num_inst, size=n)).long()
    instance[instance < 0] = -100
    counts = torch.bincount(instance[instance >= 0], minlength=num_inst)
    weight = torch.from_numpy(rng.random(masks.point_idx.numel()) > 0.4)
    for entry_weight in (None, weight):
        got = gt_iou(masks, instance, counts, entry_weight)
        for m in range(k):
            rows = (masks.mask_idx == m)
            if entry_weight is not None:
                rows &= entry_weight
            points = set(masks.point_idx[rows].tolist())
            for g in range(num_inst):
                gt = set(torch.nonzero(instance == g).squeeze(1).tolist())
                union = len(points | gt)
                want = len(points & gt) / union if union else 0.0
                assert got[m, g].item() == pytest.approx(want, abs=1e-6)


def test_soft_score_target_ramps_between_thresholds():
    iou = torch.tensor([0.0, 0.25, 0.5, 0.75, 0.9])
    assert soft_score_target(iou, 0.75, 0.25).tolist() == pytest.approx([0, 0, 0.5, 1, 1])


@pytest.mark.parametrize("shift", [None, 7])
def test_voxelize_proposals_fits_each_box_in_the_cube_and_averages(shift):
    rng = np.random.default_rng(1)
    n = 300
    xyz = torch.from_numpy(rng.random((n, 3)) * np.array([3.0, 0.5, 0.01])).float()
    feats = torch.from_numpy(rng.standard_normal((n, 4))).float()
    cluster = torch.from_numpy(rng.integers(-1, 4, size=n)).long()
    cluster[0] = 3  # every id used
    cluster[1], cluster[2], cluster[3] = 0, 1, 2
    masks = clusters_to_masks(cluster)
    size = 14
    generator = None if shift is None else torch.Generator().manual_seed(shift)
    tensor, entry_to_voxel = voxelize_proposals(masks, feats, xyz, scale=50, spatial_shape=size,
                                                random_shift=generator)
    coords = tensor.indices.long()
    assert tensor.batch_size == 4 and tensor.spatial_shape == [size] * 3
    assert int(coords[:, 1:].min()) >= 0 and int(coords[:, 1:].max()) < size
    # Entries of a mask land in voxels of that mask's batch item.
    assert torch.equal(coords[entry_to_voxel, 0], masks.mask_idx)
    # Voxel features are the mean of their entries' point features.
    for v in range(tensor.features.shape[0]):
        rows = masks.point_idx[entry_to_voxel == v]
        assert torch.allclose(tensor.features[v], feats[rows].mean(0), atol=1e-5)
    # The long axis of each box spans (almost) the whole cube at the deterministic placement.
    if shift is None:
        for m in range(4):
            c = coords[coords[:, 0] == m, 1:]
            assert int(c[:, 0].min()) == 0
            if (cluster == m).sum() > 10:
                assert int(c[:, 0].max()) == size - 1
