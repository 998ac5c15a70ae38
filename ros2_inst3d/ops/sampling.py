"""Farthest point sampling (ISBNet's ``furthestsampling_batchflat``, docs/official-models.md §5.2)."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np
import torch

from . import _backend
from ._checks import batch_offsets_tensor, check_points

__all__ = ["farthest_point_sample", "instance_aware_fps"]


def farthest_point_sample(
    xyz: torch.Tensor,
    num_samples: int | Sequence[int] | torch.Tensor,
    batch_offsets: torch.Tensor | Sequence[int] | None = None,
    start_idx: int | Sequence[int] | torch.Tensor = 0,
) -> torch.Tensor:
    """Farthest point sampling per batch item.

    Starting from ``start_idx``, each step picks the point whose squared distance to the samples so
    far is largest (float32, ``dx*dx + dy*dy + dz*dz``); ties go to the smaller index, so CPU and
    CUDA pick the same points. This is the plain geometric FPS; the instance-aware variant of
    ISBNet (sampling guided by predicted instance masks) is not provided by this function.

    Args:
        xyz: (N, 3) float32, metres, batch-contiguous.
        num_samples: samples per batch item: one int for all, or a (B,) sequence/tensor. Each must
            be <= that item's point count (an item never returns duplicates).
        batch_offsets: (B + 1,) int offsets of the batch items; None = one item.
        start_idx: index of the first sample *within* each item (an int for all, or (B,)).

    Returns:
        (S,) int64 rows of ``xyz`` in sampling order, items one after another
        (S = total samples; item b's samples start at ``sum(num_samples[:b])``).

    Cost: O(samples x points) per item; CPU loops over samples (not points).

    Example:
        >>> import torch
        >>> from ros2_inst3d.ops import farthest_point_sample
        >>> xyz = torch.tensor([[0.0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0], [0, 0, 0], [5, 0, 0]])
        >>> farthest_point_sample(xyz, [3, 2], batch_offsets=[0, 4, 6]).tolist()
        [0, 3, 1, 4, 5]
    """
    xyz = check_points(xyz, "xyz")
    device = xyz.device
    offsets = batch_offsets_tensor(batch_offsets, xyz.shape[0], device)
    num_batches = offsets.numel() - 1
    counts = (offsets[1:] - offsets[:-1]).cpu()
    samples = _per_item(num_samples, num_batches, "num_samples")
    starts = _per_item(start_idx, num_batches, "start_idx")
    for b in range(num_batches):
        if samples[b] < 0:
            raise ValueError(f"farthest_point_sample: num_samples must be >= 0, got {samples[b]} for item {b}")
        if samples[b] > counts[b]:
            raise ValueError(
                f"farthest_point_sample: batch item {b} has {int(counts[b])} points but {samples[b]} "
                f"samples were asked; ask for at most {int(counts[b])} (num_samples may be one count "
                "per item)")
        if samples[b] > 0 and not 0 <= starts[b] < counts[b]:
            raise ValueError(f"farthest_point_sample: start_idx {starts[b]} is outside batch item {b} "
                             f"(0 <= start_idx < {int(counts[b])})")
    sample_offsets = torch.zeros(num_batches + 1, dtype=torch.int64)
    torch.cumsum(torch.tensor(samples, dtype=torch.int64), 0, out=sample_offsets[1:])
    total = int(sample_offsets[-1])
    if device.type == "cuda" and total > 0:
        extension = _backend.cuda_extension()
        if extension is not None:
            return extension.farthest_point_sample(
                xyz.contiguous(), offsets.contiguous(), sample_offsets.to(device),
                torch.tensor(starts, dtype=torch.int64, device=device), total)
    return _fps_cpu(xyz.cpu(), offsets.cpu(), samples, starts).to(device)


def _per_item(value: int | Sequence[int] | torch.Tensor, num_batches: int, name: str) -> list[int]:
    if isinstance(value, torch.Tensor):
        value = value.reshape(-1).tolist() if value.dim() else int(value)
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return [int(value)] * num_batches
    items = [int(v) for v in value]  # type: ignore[union-attr]
    if len(items) != num_batches:
        raise ValueError(f"{name} has {len(items)} entries but there are {num_batches} batch items")
    return items


def _fps_buffers(points: np.ndarray) -> tuple[np.ndarray, ...]:
    """The CPU FPS loops' working arrays for one batch item's (n, 3) float32 points: contiguous
    x, y, z columns, the running minimum distance (inf) and two scratch arrays."""
    x, y, z = (np.ascontiguousarray(points[:, axis]) for axis in range(3))
    min_dist = np.full(len(points), np.inf, dtype=np.float32)
    return x, y, z, min_dist, np.empty_like(min_dist), np.empty_like(min_dist)


def _fps_cpu(xyz: torch.Tensor, offsets: torch.Tensor, samples: list[int],
             starts: list[int]) -> torch.Tensor:
    # numpy, not torch: this loop issues thousands of tiny ops, where torch's per-op thread-pool
    # overhead dominates on small, busy CPUs.
    points = xyz.numpy()
    picked: list[np.ndarray] = []
    for b, (count, start) in enumerate(zip(samples, starts)):
        if count == 0:
            continue
        n0, n1 = int(offsets[b]), int(offsets[b + 1])
        x, y, z, min_dist, dist, step = _fps_buffers(points[n0:n1])
        out = np.empty(count, dtype=np.int64)
        last = start
        out[0] = last
        for s in range(1, count):
            # One rounding per operation, like the kernel.
            _squared_distance_to(x, y, z, last, dist, step)
            np.minimum(min_dist, dist, out=min_dist)
            last = int(np.argmax(min_dist))  # first maximum: ties go to the smaller index
            out[s] = last
        picked.append(out + n0)
    return torch.from_numpy(np.concatenate(picked)) if picked else torch.zeros(0, dtype=torch.int64)


def instance_aware_fps(
    points: torch.Tensor,
    num_samples: int,
    candidate: torch.Tensor,
    batch_offsets: torch.Tensor | Sequence[int] | None = None,
    seeds: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Farthest point sampling restricted to candidate points, continuing from earlier samples.

    ISBNet's instance-aware FPS (IA-FPS, paper §3.1): queries are drawn only from points that are
    neither background nor covered by the masks of earlier queries (``candidate``), and far from
    the earlier queries (``seeds``), so a test-time chunk [192, 128, 64] after another fills the
    instances the previous chunks missed. Pass the *predicted centroids* (xyz + predicted offset)
    as ``points``: the points of one instance then collapse onto one spot and the samples spread
    over instances, not over points.

    Rule (both back ends): in each batch item, the running distance of a point is the float32
    squared distance ``(dx*dx + dy*dy) + dz*dz`` to its nearest sample so far (seeds included);
    each step picks the eligible point (candidate, not a seed, not yet picked) with the largest
    running distance, ties to the smaller index. Without seeds in an item its first sample is its
    first eligible point.

    Args:
        points: (N, 3) float32, metres, batch-contiguous.
        num_samples: samples per batch item (fewer where an item has fewer eligible points).
        candidate: (N,) bool, points that may be sampled.
        batch_offsets: (B + 1,) int item offsets; None = one item.
        seeds: (S0,) int64 rows sampled before (any order, any items); None = none.

    Returns:
        ``(index (S,) int64 rows of points in sampling order, items one after another;
        sample_offsets (B + 1,) int64)``, both on ``points``' device.

    Example:
        >>> import torch
        >>> from ros2_inst3d.ops import instance_aware_fps
        >>> p = torch.tensor([[0.0, 0, 0], [0.1, 0, 0], [2, 0, 0], [4, 0, 0]])
        >>> idx, off = instance_aware_fps(p, 2, torch.tensor([False, True, True, True]),
        ...                               seeds=torch.tensor([3]))
        >>> idx.tolist(), off.tolist()
        ([1, 2], [0, 2])
    """
    points = check_points(points, "points")
    device = points.device
    n = points.shape[0]
    if isinstance(num_samples, bool) or int(num_samples) != num_samples or int(num_samples) < 0:
        raise ValueError("instance_aware_fps: num_samples must be an int >= 0, got "
                         f"{num_samples!r}")
    num_samples = int(num_samples)
    if not isinstance(candidate, torch.Tensor) or candidate.dtype != torch.bool \
            or candidate.shape != (n,):
        raise ValueError(f"instance_aware_fps: candidate must be a ({n},) bool tensor")
    offsets = batch_offsets_tensor(batch_offsets, n, device)
    num_batches = offsets.numel() - 1
    eligible = candidate.to(device).clone()
    seed_rows = torch.zeros(0, dtype=torch.int64, device=device)
    if seeds is not None:
        seed_rows = torch.as_tensor(seeds, device=device).long().reshape(-1)
        if seed_rows.numel() and (int(seed_rows.min()) < 0 or int(seed_rows.max()) >= n):
            raise ValueError(f"instance_aware_fps: seeds must be rows in [0, {n}), got "
                             f"{int(seed_rows.min())}..{int(seed_rows.max())}")
        seed_rows = torch.unique(seed_rows)  # sorted: batch-contiguous
        eligible[seed_rows] = False
    per_item = torch.stack([eligible[int(offsets[b]):int(offsets[b + 1])].sum()
                            for b in range(num_batches)]).cpu() if num_batches else \
        torch.zeros(0, dtype=torch.int64)
    counts = torch.clamp(per_item, max=num_samples).to(torch.int64)
    sample_offsets = torch.zeros(num_batches + 1, dtype=torch.int64)
    torch.cumsum(counts, 0, out=sample_offsets[1:])
    seed_offsets = torch.searchsorted(seed_rows, offsets)
    total = int(sample_offsets[-1])
    if device.type == "cuda" and total > 0:
        extension = _backend.cuda_extension()
        if extension is not None:
            index = extension.instance_aware_fps(
                points.contiguous(), eligible.contiguous(), offsets.contiguous(),
                sample_offsets.to(device), seed_rows.contiguous(), seed_offsets.contiguous(),
                total)
            return index, sample_offsets.to(device)
    index = _ia_fps_cpu(points.cpu().numpy(), eligible.cpu().numpy(), offsets.cpu().numpy(),
                        counts.tolist(), seed_rows.cpu().numpy(), seed_offsets.cpu().numpy())
    return index.to(device), sample_offsets.to(device)


def _squared_distance_to(x: np.ndarray, y: np.ndarray, z: np.ndarray, row: int,
                         out: np.ndarray, step: np.ndarray) -> np.ndarray:
    """float32 ((dx*dx + dy*dy) + dz*dz) of every point to point ``row``, into ``out``."""
    np.subtract(x, x[row], out=out)
    np.multiply(out, out, out=out)
    np.subtract(y, y[row], out=step)
    np.multiply(step, step, out=step)
    out += step
    np.subtract(z, z[row], out=step)
    np.multiply(step, step, out=step)
    out += step
    return out


def _ia_fps_cpu(points: np.ndarray, eligible: np.ndarray, offsets: np.ndarray,
                counts: list[int], seeds: np.ndarray, seed_offsets: np.ndarray) -> torch.Tensor:
    picked: list[np.ndarray] = []
    for b, count in enumerate(counts):
        if count == 0:
            continue
        n0, n1 = int(offsets[b]), int(offsets[b + 1])
        x, y, z, min_dist, dist, step = _fps_buffers(points[n0:n1])
        for s in seeds[int(seed_offsets[b]):int(seed_offsets[b + 1])]:
            np.minimum(min_dist, _squared_distance_to(x, y, z, int(s) - n0, dist, step),
                       out=min_dist)
        # Ineligible points get -1 (every eligible distance is >= 0); picked ones join them.
        min_dist[~eligible[n0:n1]] = -1.0
        out = np.empty(count, dtype=np.int64)
        for s in range(count):
            last = int(np.argmax(min_dist))  # first maximum: ties go to the smaller index
            out[s] = last
            min_dist[last] = -1.0
            if s + 1 < count:
                _squared_distance_to(x, y, z, last, dist, step)
                # min() keeps the -1 of ineligible points: distances are >= 0.
                np.minimum(min_dist, dist, out=min_dist)
        picked.append(out + n0)
    return torch.from_numpy(np.concatenate(picked)) if picked else torch.zeros(0, dtype=torch.int64)
