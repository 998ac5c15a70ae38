"""Point-mask IoU and greedy mask NMS (PointGroup's test-time NMS, SoftGroup's IoU ops;
docs/official-models.md §4, §5.1).

Both back ends run the same torch code and give exact integer intersection counts: either by
counting, for every point, the pairs of masks that contain it (cheap when points lie in few
masks, as instance masks do), or by multiplying masks densified a chunk of points at a time
(0/1 products summed in float32 are exact, TF32 included). Memory stays bounded either way.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from ._checks import check_index, check_tensor, expand_counts

__all__ = ["SparseMasks", "mask_iou", "mask_nms", "matrix_nms"]

_CHUNK_ELEMENTS = 2**24  # densified (masks x points) entries per chunk: 64 MiB of float32
_EXACT_CHUNK_POINTS = 2**24  # float32 holds every count up to 2^24 exactly
_PAIR_CHUNK = 2**22  # (mask_a, mask_b) pairs counted at once on the sparse route
_DENSE_ADVANTAGE = 16  # a dense multiply-add costs about this fraction of a counted pair


class SparseMasks(NamedTuple):
    """K point masks as (mask, point) index pairs: point ``point_idx[e]`` belongs to mask
    ``mask_idx[e]``. A repeated pair counts once. SoftGroup's ``proposals_idx`` (sumNPoint, 2)
    is ``SparseMasks(proposals_idx[:, 0], proposals_idx[:, 1], num_proposals)``.

    mask_idx: (E,) int in [0, num_masks); point_idx: (E,) int >= 0; num_masks: K.
    """

    mask_idx: torch.Tensor
    point_idx: torch.Tensor
    num_masks: int


Masks = torch.Tensor | SparseMasks


def _distinct_sorted(keys: torch.Tensor) -> torch.Tensor:
    """Sorted distinct values of a 1-D int64 tensor (``torch.unique`` on CPU is several times
    slower than a sort and a neighbour comparison)."""
    keys = torch.sort(keys).values
    if keys.numel() > 1:
        keys = keys[torch.cat([keys.new_ones(1, dtype=torch.bool), keys[1:] != keys[:-1]])]
    return keys


class _MaskSource:
    """Dense (K, N) bool masks or SparseMasks, held as distinct (mask, point) entries sorted by
    point (plus the dense tensor when given)."""

    def __init__(self, masks: Masks, name: str):
        if isinstance(masks, torch.Tensor):
            if masks.dim() != 2 or masks.dtype != torch.bool:
                raise TypeError(f"{name} as a tensor must be a (K, N) bool mask, got "
                                f"{masks.dtype} {tuple(masks.shape)}; for index pairs use SparseMasks")
            self.dense: torch.Tensor | None = masks
            self.num_masks = masks.shape[0]
            self.min_points = masks.shape[1]
            self.device = masks.device
            self._entries: tuple[torch.Tensor, torch.Tensor] | None = None  # built on demand
            return
        if not (isinstance(masks, tuple) and len(masks) == 3):
            raise TypeError(f"{name} must be a (K, N) bool tensor or SparseMasks(mask_idx, point_idx, "
                            f"num_masks), got {type(masks).__name__}")
        mask_idx = check_index(check_tensor(masks[0], f"{name}.mask_idx"), f"{name}.mask_idx").to(torch.int64)
        point_idx = check_index(check_tensor(masks[1], f"{name}.point_idx"), f"{name}.point_idx").to(torch.int64)
        if mask_idx.numel() != point_idx.numel() or mask_idx.device != point_idx.device:
            raise ValueError(f"{name}: mask_idx and point_idx must have the same length and device")
        self.dense = None
        self.num_masks = int(masks[2])
        self.device = mask_idx.device
        if mask_idx.numel():
            if int(mask_idx.min()) < 0 or int(mask_idx.max()) >= self.num_masks:
                raise ValueError(f"{name}.mask_idx must lie in [0, num_masks={self.num_masks}), got "
                                 f"[{int(mask_idx.min())}, {int(mask_idx.max())}]")
            if int(point_idx.min()) < 0:
                raise ValueError(f"{name}.point_idx must be >= 0, got {int(point_idx.min())}")
        self.min_points = int(point_idx.max()) + 1 if point_idx.numel() else 0
        self._sparse = (mask_idx, point_idx)
        self._entries = None  # built on demand

    def entries(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(point_idx, mask_idx) of every membership, sorted by point (then mask)."""
        if self._entries is None:
            if self.dense is not None:
                pairs = torch.nonzero(self.dense.T)  # (point, mask) rows, sorted by point
                self._entries = (pairs[:, 0], pairs[:, 1])
            else:
                mask_idx, point_idx = self._sparse
                width = max(self.num_masks, 1)
                key = _distinct_sorted(point_idx * width + mask_idx)
                self._entries = (key // width, key % width)
        return self._entries

    def entries_by_mask(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(point_idx, mask_idx) of every membership, sorted by mask (then point)."""
        if self.dense is not None:
            pairs = torch.nonzero(self.dense)  # (mask, point) rows, sorted by mask
            return pairs[:, 1], pairs[:, 0]
        mask_idx, point_idx = self._sparse
        width = max(self.min_points, 1)
        key = _distinct_sorted(mask_idx * width + point_idx)
        return key % width, key // width

    def degree(self, num_points: int) -> torch.Tensor:
        """(num_points,) int64 number of masks containing each point."""
        if self.dense is not None:
            return self.dense.sum(0, dtype=torch.int64)
        return torch.bincount(self.entries()[0], minlength=num_points)

    def areas(self) -> torch.Tensor:
        if self.dense is not None:
            return self.dense.sum(1, dtype=torch.int64).to(torch.float64)
        return torch.bincount(self.entries()[1], minlength=self.num_masks).to(torch.float64)

    def chunk(self, p0: int, p1: int) -> torch.Tensor:
        """(K, p1 - p0) float32 0/1 membership of points p0..p1-1."""
        if self.dense is not None:
            return self.dense[:, p0:p1].to(torch.float32)
        point_idx, mask_idx = self.entries()
        lo, hi = torch.searchsorted(point_idx, torch.tensor([p0, p1], device=self.device)).tolist()
        out = torch.zeros((self.num_masks, p1 - p0), dtype=torch.float32, device=self.device)
        out[mask_idx[lo:hi], point_idx[lo:hi] - p0] = 1.0
        return out


def _intersections(a: _MaskSource, b: _MaskSource | None, num_points: int | None,
                   chunk_size: int | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(Ka, Kb) intersection counts and (Ka,), (Kb,) areas, all float64 (exact integers).

    Two routes with the same (exact) result: counting the (mask_a, mask_b) pairs that share each
    point — cheap when every point lies in few masks, as instance masks do — or multiplying
    densified chunks, cheaper when masks overlap heavily.
    """
    other = b if b is not None else a
    if a.device != other.device:
        raise ValueError(f"masks_a is on {a.device} but masks_b on {other.device}; use one device")
    n = max(a.min_points, other.min_points, int(num_points or 0))
    if a.dense is not None and other.dense is not None and a.min_points != other.min_points:
        raise ValueError(f"dense masks must cover the same points: {a.min_points} vs {other.min_points}")
    for source, name in ((a, "masks_a"), (other, "masks_b")):
        if source.dense is not None and source.min_points != n:
            raise ValueError(f"{name} covers {source.min_points} points but sparse masks index up to {n}")
    area_a, area_b = a.areas(), other.areas()
    ka, kb = a.num_masks, other.num_masks
    degree_b = other.degree(n)
    total_pairs = int((a.degree(n) * degree_b).sum()) if b is not None else int((degree_b * degree_b).sum())
    if chunk_size is None and total_pairs * _DENSE_ADVANTAGE <= ka * kb * n:
        return _count_shared_points(a, other, degree_b), area_a, area_b
    if chunk_size is None:
        chunk_size = max(1024, _CHUNK_ELEMENTS // max(1, ka + kb))
    chunk_size = max(1, min(int(chunk_size), _EXACT_CHUNK_POINTS))
    inter = torch.zeros((ka, kb), dtype=torch.float64, device=a.device)
    for p0 in range(0, n, chunk_size):
        p1 = min(n, p0 + chunk_size)
        block_a = a.chunk(p0, p1)
        block_b = block_a if b is None else other.chunk(p0, p1)
        inter += (block_a @ block_b.T).to(torch.float64)
    return inter, area_a, area_b


def _count_shared_points(a: _MaskSource, b: _MaskSource, degree_b: torch.Tensor) -> torch.Tensor:
    device = a.device
    ka, kb = a.num_masks, b.num_masks
    point_a, mask_a = a.entries()
    mask_b = b.entries()[1]
    pairs = degree_b[point_a]  # for each entry of a: the masks of b sharing its point
    start_b = torch.cumsum(degree_b, 0) - degree_b  # b's entries of point p: start_b[p] + [0, degree)
    inter = torch.zeros(ka * kb, dtype=torch.float64, device=device)
    ends = torch.cumsum(pairs, 0)
    # Split a's entries so that each chunk expands to about _PAIR_CHUNK pairs.
    total = int(ends[-1]) if ends.numel() else 0
    cuts = torch.arange(_PAIR_CHUNK, max(total, _PAIR_CHUNK), _PAIR_CHUNK, device=device)
    bounds = torch.searchsorted(ends, cuts, right=True).tolist()
    for e0, e1 in zip([0, *bounds], [*bounds, pairs.numel()]):
        if e1 <= e0:
            continue
        entry, within = expand_counts(pairs[e0:e1], e0)
        partner = start_b[point_a[entry]] + within
        key = mask_a[entry] * kb + mask_b[partner]
        inter += torch.bincount(key, minlength=ka * kb).to(torch.float64)
    return inter.reshape(ka, kb)


def mask_iou(masks_a: Masks, masks_b: Masks | None = None, num_points: int | None = None,
             chunk_size: int | None = None) -> torch.Tensor:
    """Intersection over union between two sets of point masks.

    Args:
        masks_a: K_a masks: a (K_a, N) bool tensor or :class:`SparseMasks`.
        masks_b: K_b masks in either form (may differ from masks_a's), or None for
            ``masks_a`` against itself.
        num_points: N when only sparse masks are given and trailing points matter (they do not
            change IoU; accepted for symmetry with dense masks).
        chunk_size: use the dense route with this many points per chunk. Default: pick the
            cheaper route; dense chunks then hold about 2^24 mask entries.

    Returns:
        (K_a, K_b) float32 IoU on the masks' device; 0 where both masks are empty.

    Example:
        >>> import torch
        >>> from ros2_inst3d.ops import SparseMasks, mask_iou
        >>> dense = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1]], dtype=torch.bool)
        >>> sparse = SparseMasks(torch.tensor([0, 0]), torch.tensor([0, 1]), 1)  # mask 0 = {0, 1}
        >>> mask_iou(dense, sparse).tolist()
        [[0.5], [0.0]]
    """
    a = _MaskSource(masks_a, "masks_a")
    b = None if masks_b is None else _MaskSource(masks_b, "masks_b")
    inter, area_a, area_b = _intersections(a, b, num_points, chunk_size)
    union = area_a[:, None] + area_b[None, :] - inter
    iou = torch.where(union > 0, inter / union.clamp_min(1.0), torch.zeros_like(inter))
    return iou.to(torch.float32)


def mask_nms(masks: Masks, scores: torch.Tensor, iou_threshold: float,
             labels: torch.Tensor | None = None) -> torch.Tensor:
    """Greedy non-maximum suppression of point masks.

    Masks are visited by decreasing score (equal scores: smaller index first); a mask is kept
    unless its IoU with an already kept mask is **greater than** ``iou_threshold`` (PointGroup:
    0.3). With ``labels``, only masks of the same label suppress each other (class-aware NMS).

    Args:
        masks: K masks, (K, N) bool or :class:`SparseMasks`.
        scores: (K,) float, finite.
        iou_threshold: in [0, 1].
        labels: (K,) int class per mask, or None for class-agnostic NMS.

    Returns:
        (K',) int64 indices of the kept masks, highest score first, on ``scores``' device.

    Memory: an (N, kept masks) bool table.

    Example:
        >>> import torch
        >>> from ros2_inst3d.ops import mask_nms
        >>> masks = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [0, 0, 0, 1]], dtype=torch.bool)
        >>> mask_nms(masks, torch.tensor([0.5, 0.9, 0.4]), iou_threshold=0.5).tolist()
        [1, 2]
    """
    source = _MaskSource(masks, "masks")
    scores = check_tensor(scores, "scores")
    if scores.dim() != 1 or scores.numel() != source.num_masks:
        raise ValueError(f"scores must be (K,) with K = {source.num_masks} masks, got {tuple(scores.shape)}")
    if not scores.is_floating_point() or not bool(torch.isfinite(scores).all()):
        raise ValueError("scores must be finite floating-point values (NaN has no order)")
    threshold = float(iou_threshold)
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"iou_threshold must lie in [0, 1], got {iou_threshold!r}")
    if labels is not None:
        labels = check_index(labels, "labels")
        if labels.numel() != source.num_masks:
            raise ValueError(f"labels must be (K,) with K = {source.num_masks}, got {labels.numel()}")
    if source.num_masks == 0:
        return torch.zeros(0, dtype=torch.int64, device=scores.device)
    # Each candidate is compared with the masks kept so far only (about one per object), not
    # with all K: SoftGroup's hypotheses are up to 18 near-copies of each proposal, where the
    # (K, K) IoU matrix costs (masks per point)^2 per point, seconds on 100k points.
    point_idx, mask_idx = source.entries_by_mask()
    points = point_idx.cpu().numpy()
    starts = np.zeros(source.num_masks + 1, dtype=np.int64)
    np.cumsum(torch.bincount(mask_idx, minlength=source.num_masks).cpu().numpy(), out=starts[1:])
    area = np.diff(starts).astype(np.float64)
    label = None if labels is None else labels.cpu().numpy()
    num_points = max(source.min_points, 1)
    # Point-major membership (point, kept slot): a candidate's intersections with every kept mask
    # read only its own points' rows, O(|mask| x kept) instead of O(N x kept) per candidate.
    kept_member = np.zeros((num_points, min(source.num_masks, 16)), dtype=bool)
    kept_area = np.zeros(source.num_masks, dtype=np.float64)
    kept_label = np.zeros(source.num_masks, dtype=np.int64)
    order = torch.sort(scores.detach().cpu(), descending=True, stable=True).indices.numpy()
    keep: list[int] = []
    for k in order:  # loop over masks (not points)
        members = points[starts[k]:starts[k + 1]]
        rows = np.arange(len(keep)) if label is None else np.flatnonzero(
            kept_label[:len(keep)] == label[k])
        if rows.size:
            inter = kept_member[members, :len(keep)].sum(axis=0, dtype=np.int64)[rows]
            union = area[k] + kept_area[rows] - inter
            iou = np.where(union > 0, inter / np.maximum(union, 1.0), 0.0)
            if bool((iou > threshold).any()):
                continue
        slot = len(keep)
        if slot == kept_member.shape[1]:
            kept_member = np.concatenate([kept_member, np.zeros_like(kept_member)], axis=1)
        kept_member[members, slot] = True
        kept_area[slot] = area[k]
        if label is not None:
            kept_label[slot] = label[k]
        keep.append(int(k))
    return torch.tensor(keep, dtype=torch.int64, device=scores.device)


def matrix_nms(masks: Masks, scores: torch.Tensor, labels: torch.Tensor | None = None,
               sigma: float = 2.0) -> torch.Tensor:
    """Matrix NMS (SOLOv2, ISBNet's test-time NMS): Gaussian score decay, no hard suppression.

    With masks sorted by decreasing score (ties: smaller index first), mask j's score is
    multiplied by ``min_{i before j} exp(-sigma * iou_ij^2) / exp(-sigma * c_i^2)``, where
    ``c_i`` is the largest IoU of mask i with any mask before it (its own chance of being a
    duplicate) and IoUs between different ``labels`` count as 0 (class-aware). The first mask keeps
    its score.

    Args:
        masks: K masks, (K, N) bool or :class:`SparseMasks`.
        scores: (K,) float, finite.
        labels: (K,) int class per mask, or None (class-agnostic).
        sigma: the Gaussian decay (ISBNet: 2).

    Returns:
        (K,) decayed scores, in the input order, on ``scores``' device.

    Example:
        >>> import torch
        >>> masks = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0], [0, 0, 0, 1]], dtype=torch.bool)
        >>> [round(s, 3) for s in matrix_nms(masks, torch.tensor([0.9, 0.8, 0.5])).tolist()]
        [0.9, 0.26, 0.441]
    """
    source = _MaskSource(masks, "masks")
    scores = check_tensor(scores, "scores")
    k = source.num_masks
    if scores.dim() != 1 or scores.numel() != k:
        raise ValueError(f"scores must be (K,) with K = {k} masks, got {tuple(scores.shape)}")
    if not scores.is_floating_point() or not bool(torch.isfinite(scores).all()):
        raise ValueError("scores must be finite floating-point values (NaN has no order)")
    if k == 0:
        return scores.clone()
    iou = mask_iou(masks).to(scores.device).double()
    if labels is not None:
        labels = check_index(labels, "labels").to(scores.device)
        if labels.numel() != k:
            raise ValueError(f"labels must be (K,) with K = {k}, got {labels.numel()}")
        iou = iou * (labels[:, None] == labels[None, :])
    order = torch.sort(scores.detach(), descending=True, stable=True).indices
    iou = torch.triu(iou[order][:, order], diagonal=1)  # iou[i, j]: i scores above j
    compensate = iou.max(0).values  # c_i: largest IoU of i with a mask above it
    decay = torch.exp(-sigma * iou ** 2) / torch.exp(-sigma * compensate[:, None] ** 2)
    coefficient = decay.min(0).values.clamp(max=1.0)
    out = torch.empty_like(scores)
    out[order] = scores[order] * coefficient.to(scores.dtype)
    return out
