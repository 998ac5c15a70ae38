"""Proposal-level tensor helpers shared by SoftGroup's refinement and PointGroup's ScoreNet.

Inside a forward pass, instance proposals are :class:`~ros2_inst3d.ops.SparseMasks`: entries
``(mask_idx[e], point_idx[e])`` sorted by mask, then point, so proposal ``k`` owns the entries
``offsets[k]:offsets[k + 1]`` (the official ``proposals_idx`` / ``proposals_offset`` pair). The
official CUDA helpers these replace (docs/official-models.md §5.1): ``sec_min/sec_max``,
``voxelization_idx`` + ``voxelization`` on proposals (``clusters_voxelization``),
``global_avg_pool`` / ``roipool``, ``get_mask_iou_on_cluster`` / ``get_mask_iou_on_pred`` and
PointGroup's ``get_segmented_scores``. All are plain torch (CPU and CUDA alike).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import spconv.pytorch as spconv
import torch

from ..ops import SparseMasks, segment_reduce, voxelize_points
from .proposals import Proposals


def clusters_to_masks(cluster: torch.Tensor) -> SparseMasks:
    """Masks of a per-point cluster id (N,) int (-1 = none): mask ``k`` = points with id ``k``.

    Ids must be 0..K-1 (as ``ops.cluster_points`` numbers them); entries come sorted by mask,
    then point.
    """
    cluster = torch.as_tensor(cluster).long()
    points = torch.nonzero(cluster >= 0).squeeze(1)
    ids = cluster[points]
    order = torch.sort(ids, stable=True).indices
    num = int(ids.max()) + 1 if ids.numel() else 0
    return SparseMasks(ids[order], points[order], num)


def concat_masks(parts: Sequence[SparseMasks], device: torch.device | str | None = None
                 ) -> SparseMasks:
    """One mask set from several, numbered in order (part 0's masks first)."""
    if not parts:
        empty = torch.zeros(0, dtype=torch.int64, device=device)
        return SparseMasks(empty, empty.clone(), 0)
    mask_idx, point_idx, base = [], [], 0
    for part in parts:
        mask_idx.append(part.mask_idx.long() + base)
        point_idx.append(part.point_idx.long())
        base += int(part.num_masks)
    return SparseMasks(torch.cat(mask_idx), torch.cat(point_idx), base)


def horizontal_extent(xyz: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    """Where points lie along their main horizontal axis: (position of each point along it,
    1st percentile, 99th percentile), metres. The length of an object is ``high - low``; the
    percentiles keep a few stray points from counting."""
    xy = xyz[:, :2].double()
    xy = xy - xy.mean(0)
    axis = torch.linalg.eigh(xy.T @ xy).eigenvectors[:, -1]
    along = xy @ axis
    low, high = torch.quantile(along, torch.tensor([0.01, 0.99], dtype=along.dtype,
                                                   device=along.device)).tolist()
    return along, low, high


def typical_class_lengths(scenes: Iterable[Any], num_classes: int, quantile: float = 0.9,
                          min_points: int = 30) -> list[float]:
    """``grouping_cfg.class_length`` from labelled scenes (anything with ``xyz``, ``semantic``
    and ``instance`` arrays, e.g. ``data.datasets.read_scene`` results): per semantic class, the
    ``quantile`` of its ground-truth instances' lengths (:func:`horizontal_extent`), -1 for the
    stuff classes and classes without instances. Instances under ``min_points`` are skipped."""
    from ..classes import STUFF_CLASSES

    lengths: list[list[float]] = [[] for _ in range(num_classes)]
    for scene in scenes:
        for inst in np.unique(scene.instance[scene.instance >= 0]):
            members = scene.instance == inst
            cls = int(np.bincount(scene.semantic[members]).argmax())
            if cls not in STUFF_CLASSES and members.sum() >= min_points:
                _, low, high = horizontal_extent(torch.from_numpy(scene.xyz[members]))
                lengths[cls].append(high - low)
    return [round(float(np.quantile(v, quantile)), 2) if v else -1.0 for v in lengths]


def class_lengths(split_factor: float, class_length: Sequence[float] | None,
                  semantic_classes: int) -> list[float]:
    """The checked ``class_length`` of a model with ``split_factor`` (see
    :func:`split_long_masks`): one length per semantic class when splitting is on."""
    lengths = [float(v) for v in class_length or []]
    if float(split_factor) < 0:
        raise ValueError(f"split_factor must be >= 0 (0: off), got {split_factor}")
    if float(split_factor) > 0 and len(lengths) != semantic_classes:
        raise ValueError(f"split_factor needs class_length: one length per semantic class "
                         f"({semantic_classes}), got {len(lengths)}")
    return lengths


def split_long_masks(masks: SparseMasks, mask_class: torch.Tensor, xyz: torch.Tensor,
                     class_length: Sequence[float], factor: float, min_points: int = 1
                     ) -> SparseMasks:
    """Pieces of the masks too long to be one object of their class, as extra masks.

    A mask's length is the spread of its points along their main horizontal axis (1st to 99th
    percentile, so a few stray points do not count). A mask of class c longer than ``factor *
    class_length[c]`` metres (``class_length[c] <= 0``: never split) is cut across that axis
    into ``round(length / class_length[c])`` equally long pieces: a row of touching cabinets or
    bookshelves, which the predicted offsets do not pull apart, becomes one piece per unit.
    Pieces with fewer than ``min_points`` points are dropped. The input masks are not changed;
    the caller appends the pieces, and the refinement scores pieces and whole rows alike.

    masks: entries sorted by mask id (as grouping makes them). mask_class: (K,) semantic class
    per mask. xyz: (N, 3) metres. Returns the pieces, numbered from 0, entries sorted by piece
    then point.
    """
    device = masks.mask_idx.device
    point_idx = masks.point_idx.long()
    bounds = mask_offsets(masks).tolist()  # host lists: no device sync per mask
    units = [float(class_length[c]) for c in mask_class.tolist()]
    piece_masks, piece_points, count = [], [], 0
    for k, unit in enumerate(units):
        start, end = bounds[k], bounds[k + 1]
        if unit <= 0.0 or end - start < 2 * max(1, min_points):
            continue
        points = point_idx[start:end]
        along, low, high = horizontal_extent(xyz[points])
        length = high - low
        if length <= factor * unit:
            continue
        pieces = int(round(length / unit))
        if pieces < 2:  # a factor under 1.5 lets a mask through that is still one unit long
            continue
        piece = ((along - low) / (length / pieces)).floor().clamp(0, pieces - 1).long()
        for b in range(pieces):
            members = points[piece == b]
            if members.numel() >= min_points:
                piece_masks.append(torch.full_like(members, count))
                piece_points.append(members)
                count += 1
    if not count:
        empty = torch.zeros(0, dtype=torch.int64, device=device)
        return SparseMasks(empty, empty.clone(), 0)
    return SparseMasks(torch.cat(piece_masks), torch.cat(piece_points), count)


def select_masks(masks: SparseMasks, keep: torch.Tensor) -> SparseMasks:
    """The masks ``keep[0], keep[1], ...`` ((K',) distinct indices, any order) renumbered
    0..K'-1 in that order; entries sorted by new id, then point."""
    keep = torch.as_tensor(keep, device=masks.mask_idx.device).long()
    new_id = torch.full((masks.num_masks,), -1, dtype=torch.int64, device=keep.device)
    new_id[keep] = torch.arange(keep.numel(), device=keep.device)
    mapped = new_id[masks.mask_idx.long()]
    kept = torch.nonzero(mapped >= 0).squeeze(1)
    kept = kept[torch.sort(mapped[kept], stable=True).indices]  # points stay sorted in a mask
    return SparseMasks(mapped[kept], masks.point_idx[kept].long(), int(keep.numel()))


def mask_sizes(masks: SparseMasks) -> torch.Tensor:
    """(K,) int64 number of entries (points) of each mask."""
    return torch.bincount(masks.mask_idx.long(), minlength=masks.num_masks)


def mask_offsets(masks: SparseMasks) -> torch.Tensor:
    """(K + 1,) int64 CSR offsets of the entries (which are sorted by mask)."""
    offsets = torch.zeros(masks.num_masks + 1, dtype=torch.int64, device=masks.mask_idx.device)
    torch.cumsum(mask_sizes(masks), 0, out=offsets[1:])
    return offsets


def split_per_item(masks: SparseMasks, class_ids: torch.Tensor, scores: torch.Tensor,
                   point_class: torch.Tensor, batch_offsets: torch.Tensor,
                   timing_ms: dict[str, float] | None = None) -> list[Proposals]:
    """One :class:`Proposals` per batch item from batch-wide masks, in mask order.

    masks: K non-empty masks over the batch's N points (entries sorted by mask, then point;
    each mask inside one item). class_ids, scores: (K,). point_class: (N,) semantic class per
    point. batch_offsets: (B + 1,) point offsets. Indices become local to their item.
    """
    offsets = torch.as_tensor(batch_offsets).long().cpu()
    point = masks.point_idx.long().cpu()
    first_point = point[mask_offsets(masks)[:-1].cpu()]
    item = torch.searchsorted(offsets, first_point, right=True) - 1
    local = point - offsets[item][masks.mask_idx.long().cpu()]
    item = item.numpy()
    pieces = torch.split(local, mask_sizes(masks).cpu().tolist())
    class_np = class_ids.to(torch.int32).cpu().numpy()
    score_np = scores.float().cpu().numpy()
    point_class_np = point_class.to(torch.int32).cpu().numpy()
    bounds = offsets.tolist()
    results = []
    for b in range(len(bounds) - 1):
        mine = (item == b).nonzero()[0]
        results.append(Proposals(indices=[pieces[k].numpy() for k in mine],
                                 class_ids=class_np[mine], scores=score_np[mine],
                                 point_class=point_class_np[bounds[b]:bounds[b + 1]],
                                 timing_ms=dict(timing_ms or {})))
    return results


class StageClock:
    """Milliseconds between laps of a method's stages (``Proposals.timing_ms``); synchronises
    CUDA first, since kernels run asynchronously."""

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self.last = self._now()

    def _now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def lap(self) -> float:
        now = self._now()
        elapsed, self.last = (now - self.last) * 1000.0, now
        return elapsed


def voxelize_proposals(masks: SparseMasks, point_feats: torch.Tensor, xyz: torch.Tensor,
                       scale: float, spatial_shape: int,
                       random_shift: torch.Generator | None = None
                       ) -> tuple[spconv.SparseConvTensor, torch.Tensor]:
    """Each proposal as its own item of a sparse tensor (official ``clusters_voxelization``).

    Every proposal's points are scaled so its bounding box fits the ``spatial_shape``-voxel cube:
    ``s = min(scale, spatial_shape / max_extent - 0.01)`` voxels per metre (the 0.01 keeps the
    far corner below ``spatial_shape``), shifted to start at 0, truncated to integer voxels; voxel
    features are the mean of their points' ``point_feats``.

    masks: K proposals over N points. point_feats: (N, C). xyz: (N, 3) metres. scale: the
        finest resolution, voxels per metre (official 50 = 2 cm). spatial_shape: voxels per
        axis (SoftGroup 20, PointGroup 14). random_shift: training's ``rand_quantize``: the
        boxes move by a random amount (one draw per call, as the official code) where they are
        smaller than the cube; None is the deterministic test-time placement.

    Returns the SparseConvTensor (batch item k = proposal k, voxels grouped by proposal) and
    ``entry_to_voxel`` (E,) int64: the voxel row of every mask entry.
    """
    if masks.num_masks == 0 or masks.point_idx.numel() == 0:
        raise ValueError("voxelize_proposals needs at least one non-empty proposal")
    entry_mask = masks.mask_idx.long()
    entry_point = masks.point_idx.long()
    feats = point_feats[entry_point]
    coords = xyz[entry_point].float()
    k = masks.num_masks
    low = segment_reduce(coords, entry_mask, k, "min")
    high = segment_reduce(coords, entry_mask, k, "max")
    extent = (high - low).amax(dim=1)
    # Single-point proposals have zero extent: 1/0 = inf, clamped to `scale` like the official.
    box_scale = torch.clamp(float(spatial_shape) / extent - 0.01, max=float(scale))
    low_scaled = low * box_scale[:, None]
    if random_shift is not None:
        span = (high - low) * box_scale[:, None]
        draw = torch.rand(3, generator=random_shift).to(coords.device)
        draw2 = torch.rand(3, generator=random_shift).to(coords.device)
        low_scaled = low_scaled - torch.clamp(spatial_shape - span - 0.001, min=0) * draw
        low_scaled = low_scaled - torch.clamp(spatial_shape - span + 0.001, max=0) * draw2
    grid = coords * box_scale[entry_mask][:, None] - low_scaled[entry_mask]
    grid = grid.long().clamp_(0, spatial_shape - 1)
    maps = voxelize_points(torch.cat([entry_mask[:, None], grid], dim=1))
    voxel_feats = segment_reduce(feats, maps.point_to_voxel, maps.voxel_coords.shape[0], "mean")
    tensor = spconv.SparseConvTensor(voxel_feats, maps.voxel_coords.int().contiguous(),
                                     [spatial_shape] * 3, k)
    return tensor, maps.point_to_voxel


def pool_per_proposal(values: torch.Tensor, proposal_of_row: torch.Tensor, num_proposals: int,
                      reduce: str) -> torch.Tensor:
    """(K, C) mean/max of the rows of ``values`` (R, C) per proposal id ``proposal_of_row`` (R,).

    SoftGroup pools the refined *voxels* by mean (``global_avg_pool``); PointGroup's ScoreNet
    pools the proposal *points* by max (``roipool``).
    """
    return segment_reduce(values, proposal_of_row.long(), num_proposals, reduce)


def gt_iou(masks: SparseMasks, instance: torch.Tensor, instance_num_points: torch.Tensor,
           entry_weight: torch.Tensor | None = None) -> torch.Tensor:
    """(K, I) float32 IoU of each proposal with each ground-truth instance.

    instance: (N,) int64 GT instance per point (-100 / negative = none). instance_num_points:
    (I,) points per GT instance. entry_weight: (E,) bool — count only these entries of the
    proposals (SoftGroup's ``get_mask_iou_on_pred`` uses the entries whose mask sigmoid > 0.5);
    None counts every entry (``get_mask_iou_on_cluster``).
    """
    num_inst = int(instance_num_points.numel())
    k = masks.num_masks
    device = masks.mask_idx.device
    if k == 0 or num_inst == 0:
        return torch.zeros((k, num_inst), dtype=torch.float32, device=device)
    mask_idx = masks.mask_idx.long()
    label = instance[masks.point_idx.long()].long()
    if entry_weight is None:
        counted = torch.ones_like(mask_idx, dtype=torch.bool)
    else:
        counted = entry_weight.to(torch.bool)
    size = torch.bincount(mask_idx[counted], minlength=k).float()
    hit = counted & (label >= 0)
    inter = torch.bincount(mask_idx[hit] * num_inst + label[hit], minlength=k * num_inst)
    inter = inter.view(k, num_inst).float()
    union = size[:, None] + instance_num_points.float()[None, :].to(device) - inter
    return torch.where(union > 0, inter / union.clamp_min(1.0), torch.zeros_like(inter))


def voxel_first_point(point_to_voxel: torch.Tensor, num_voxels: int) -> torch.Tensor:
    """(M,) int64 smallest point index of every voxel (whose labels stand for the voxel, as
    ISBNet's ``voxel_spps`` take the first point's); ``point_to_voxel``: (N,) int."""
    p2v = torch.as_tensor(point_to_voxel).long()
    return segment_reduce(torch.arange(p2v.numel(), device=p2v.device), p2v, num_voxels, "min")


def voxel_mean_xyz(xyz: torch.Tensor, point_to_voxel: torch.Tensor, num_voxels: int
                   ) -> torch.Tensor:
    """(M, 3) float32 mean xyz of each voxel's points (official ``voxel_coords_float``)."""
    return segment_reduce(xyz.float(), torch.as_tensor(point_to_voxel, device=xyz.device).long(),
                          num_voxels, "mean")


def soft_score_target(max_iou: torch.Tensor, fg_thresh: float, bg_thresh: float) -> torch.Tensor:
    """PointGroup's ScoreNet target: 0 below ``bg_thresh``, 1 above ``fg_thresh``, linear between."""
    ramp = (max_iou - bg_thresh) / (fg_thresh - bg_thresh)
    return ramp.clamp(0.0, 1.0)




def add_semantic_instances(results: list[Any], sem2ins_classes: Sequence[int],
                           num_stuff_classes: int) -> None:
    """Append to each item's proposals one instance per ``sem2ins_classes`` entry (instance-head
    class ids): the points whose semantic argmax is that class, score 1 (official sem2ins)."""
    for proposals in results:
        for c in sem2ins_classes:
            sem = c + num_stuff_classes
            where = np.flatnonzero(proposals.point_class == sem)
            if where.size:
                proposals.indices.append(where.astype(np.int64))
                proposals.class_ids = np.append(proposals.class_ids, np.int32(sem))
                proposals.scores = np.append(proposals.scores, np.float32(1.0))


__all__ = ["StageClock", "add_semantic_instances", "clusters_to_masks", "concat_masks", "gt_iou", "mask_offsets",
           "mask_sizes", "pool_per_proposal", "select_masks", "soft_score_target",
           "split_per_item", "voxel_first_point", "voxel_mean_xyz", "voxelize_proposals"]
