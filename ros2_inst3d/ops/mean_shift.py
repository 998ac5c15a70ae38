"""Flat-kernel mean-shift clustering of embeddings (MTML's grouping, batched)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from . import _backend
from ._checks import batch_ids, batch_offsets_tensor, check_tensor
from .clustering import renumber_clusters

__all__ = ["mean_shift", "mean_shift_modes"]

_PAIR_CHUNK = 2**22  # (mode, point) distances held at once on the CPU path


def _check_embedding(embedding: object) -> torch.Tensor:
    embedding = check_tensor(embedding, "embedding")
    if embedding.dim() != 2 or embedding.shape[1] < 1:
        raise ValueError(f"embedding must be (N, D) with D >= 1, got {tuple(embedding.shape)}")
    if embedding.dtype != torch.float32:
        raise TypeError(f"embedding must be float32, got {embedding.dtype}; pass .float()")
    if embedding.numel() and not bool(torch.isfinite(embedding).all()):
        raise ValueError("embedding has NaN/inf entries")
    return embedding


def _squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(A, B) float32 ``sum_k (a_k - b_k)^2``, summed over k in order (the CUDA kernel's order)."""
    out = torch.zeros(a.shape[0], b.shape[0], dtype=torch.float32, device=a.device)
    d = torch.empty_like(out)
    for k in range(a.shape[1]):
        # In place: the same float32 operations in the same order, without two temporaries of
        # (A, B) per dimension (MTML's mean-shift spends most of its time here).
        torch.sub(a[:, k, None], b[None, :, k], out=d)
        out.add_(d.mul_(d))
    return out


def _shift_cpu(modes: torch.Tensor, embedding: torch.Tensor, mode_item: torch.Tensor,
               offsets: torch.Tensor, bw2: float) -> tuple[torch.Tensor, torch.Tensor]:
    new = torch.zeros_like(modes)
    count = torch.zeros(modes.shape[0], dtype=torch.int64)
    for b in range(offsets.numel() - 1):
        rows = torch.nonzero(mode_item == b).squeeze(1)
        p0, p1 = int(offsets[b]), int(offsets[b + 1])
        if rows.numel() == 0 or p1 == p0:
            continue
        points = embedding[p0:p1]
        step = max(1, _PAIR_CHUNK // max(1, p1 - p0))
        for c in range(0, rows.numel(), step):
            chunk = rows[c:c + step]
            inside = (_squared_distances(modes[chunk], points) < bw2).float()
            new[chunk] = inside @ points
            count[chunk] = inside.sum(1).long()
    return new, count


def mean_shift_modes(embedding: torch.Tensor, seeds: torch.Tensor, bandwidth: float,
                     batch_offsets: torch.Tensor | Sequence[int] | None = None,
                     seed_item: torch.Tensor | None = None, max_iters: int = 30,
                     tol: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """Move every seed uphill: ``m <- mean{x of its batch item : |x - m|^2 < bandwidth^2}``.

    embedding: (N, D) float32 batch-contiguous; seeds: (K, D) float32 starting modes; seed_item:
    (K,) int64 batch item of each seed (None: all in item 0). Stops after ``max_iters`` steps or
    when no mode moves more than ``tol * bandwidth``; a mode with no point in its window stays.
    Returns ``(modes (K, D), counts (K,) int64 points in the final window)``.
    """
    embedding = _check_embedding(embedding)
    device = embedding.device
    offsets = batch_offsets_tensor(batch_offsets, embedding.shape[0], device)
    modes = seeds.to(device=device, dtype=torch.float32).clone()
    item = (torch.zeros(modes.shape[0], dtype=torch.int64, device=device) if seed_item is None
            else seed_item.to(device).long())
    bw = float(bandwidth)
    bw2 = float(np.float32(bw) * np.float32(bw))
    extension = _backend.cuda_extension() if device.type == "cuda" else None
    count = torch.zeros(modes.shape[0], dtype=torch.int64, device=device)
    # A mode whose step left it exactly where it was has a fixed window, so every later step
    # would repeat it: only the modes that still move are stepped (each mode's step depends on
    # that mode alone).
    moving = torch.arange(modes.shape[0], device=device)
    embedding, offsets = embedding.contiguous(), offsets.contiguous()
    if extension is None:  # the CPU step's operands, moved once rather than every step
        host_embedding, host_offsets = embedding.cpu(), offsets.cpu()
    for _ in range(max(1, int(max_iters))):
        if moving.numel() == 0:
            break
        current, current_item = modes[moving].contiguous(), item[moving].contiguous()
        if extension is not None:
            total, step_count = extension.mean_shift_step(current, embedding, current_item,
                                                          offsets, bw2)
        else:
            total, step_count = _shift_cpu(current.cpu(), host_embedding, current_item.cpu(),
                                           host_offsets, bw2)
            total, step_count = total.to(device), step_count.to(device)
        moved = torch.where(step_count[:, None] > 0,
                            total / step_count.clamp_min(1)[:, None].float(), current)
        shift = (moved - current).norm(dim=1).max()
        modes[moving] = moved
        count[moving] = step_count
        moving = moving[(moved != current).any(dim=1)]
        if float(shift) <= tol * bw:
            break
    return modes, count


def mean_shift(embedding: torch.Tensor, bandwidth: float,
               batch_offsets: torch.Tensor | Sequence[int] | None = None,
               max_iters: int = 30, min_size: int = 1, max_seeds: int | None = None
               ) -> torch.Tensor:
    """Cluster ids of flat-kernel mean-shift on ``embedding`` (MTML's grouping), per batch item.

    Seeds are the occupied cells of a grid of side ``bandwidth`` (scikit-learn's bin seeding:
    each seed is its cell's mean; with ``max_seeds``, only that many of the most populated cells
    over the batch, ties to the lower cell), shifted by :func:`mean_shift_modes`. Converged modes
    are merged greedily: by descending window count (ties: lower seed row), a mode closer than
    ``bandwidth`` to a kept mode of its item is dropped. Every point joins its nearest kept mode
    when that is closer than ``bandwidth`` (squared float32 distance, summed over dimensions in
    order), else none; clusters smaller than ``min_size`` are dropped.

    Args:
        embedding: (N, D) float32, batch-contiguous.
        bandwidth: kernel radius in embedding units (> 0).
        batch_offsets: (B + 1,) int item offsets; None = one item.
        max_iters: mean-shift steps at most.
        min_size: smallest kept cluster, points.
        max_seeds: cap on the seeds (None: every occupied cell). Each mean-shift step costs
            seeds x points x D, and an untrained embedding occupies about one cell per point.

    Returns:
        (N,) int64 cluster id (-1 = none), numbered by each cluster's smallest point index.
        Clusters never span two batch items.

    Example:
        >>> import torch
        >>> e = torch.tensor([[0.0], [0.1], [5.0], [5.2], [0.05]])
        >>> mean_shift(e, 1.0).tolist()
        [0, 0, 1, 1, 0]
    """
    embedding = _check_embedding(embedding)
    bw = float(bandwidth)
    if not (bw > 0 and np.isfinite(bw)):
        raise ValueError(f"bandwidth must be a finite positive number, got {bandwidth!r}")
    device = embedding.device
    n = embedding.shape[0]
    offsets = batch_offsets_tensor(batch_offsets, n, device)
    if n == 0:
        return torch.zeros(0, dtype=torch.int64, device=device)
    point_item = batch_ids(offsets)
    # Bin seeding: one seed per occupied (item, cell), at the mean of the cell's points.
    cells = torch.floor(embedding / bw).long()
    key = torch.cat([point_item[:, None], cells], dim=1)
    _, cell_of_point = torch.unique(key, dim=0, return_inverse=True)
    num_cells = int(cell_of_point.max()) + 1
    sums = torch.zeros(num_cells, embedding.shape[1], device=device).index_add_(
        0, cell_of_point, embedding)
    sizes = torch.bincount(cell_of_point, minlength=num_cells)
    seeds = sums / sizes[:, None].float()
    seed_item = torch.zeros(num_cells, dtype=torch.int64, device=device).scatter_(
        0, cell_of_point, point_item)
    if max_seeds is not None and num_cells > int(max_seeds):
        top = torch.argsort(-sizes * (num_cells + 1) + torch.arange(num_cells, device=device))
        top = torch.sort(top[:max(1, int(max_seeds))]).values
        seeds, seed_item = seeds[top], seed_item[top]
        num_cells = int(top.numel())
    modes, count = mean_shift_modes(embedding, seeds, bw, offsets, seed_item, max_iters)
    # Greedy merge, strongest mode first.
    order = torch.argsort(-count * (num_cells + 1) + torch.arange(num_cells, device=device))
    bw2 = float(np.float32(bw) * np.float32(bw))
    close = _squared_distances(modes[order], modes[order]) < bw2
    close &= seed_item[order][:, None] == seed_item[order][None, :]
    close_np = close.cpu().numpy()
    keep = np.zeros(num_cells, dtype=bool)
    suppressed = np.zeros(num_cells, dtype=bool)
    for i in range(num_cells):
        if suppressed[i]:
            continue
        keep[i] = True
        suppressed |= close_np[i]
    kept = order[torch.from_numpy(np.flatnonzero(keep)).to(device)]
    kept_modes, kept_item = modes[kept], seed_item[kept]
    cluster = torch.full((n,), -1, dtype=torch.int64, device=device)
    step = max(1, _PAIR_CHUNK // max(1, kept.numel()))
    for c in range(0, n, step):
        d2 = _squared_distances(embedding[c:c + step], kept_modes)
        d2 = torch.where(point_item[c:c + step, None] == kept_item[None, :], d2,
                         torch.full_like(d2, float("inf")))
        best, arg = d2.min(1)
        cluster[c:c + step] = torch.where(best < bw2, arg, torch.full_like(arg, -1))
    if min_size > 1:
        sizes = torch.bincount(cluster[cluster >= 0], minlength=kept.numel())
        small = sizes < int(min_size)
        cluster = torch.where((cluster >= 0) & small[cluster.clamp_min(0)],
                              torch.full_like(cluster, -1), cluster)
    return renumber_clusters(cluster)
