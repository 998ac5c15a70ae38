"""Radius neighbours (``ball_query``), batched, with a deterministic per-query cap."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from . import _backend
from ._checks import (
    batch_ids,
    batch_offsets_tensor,
    check_points,
    check_positive_int,
    check_radius,
    same_device,
)

__all__ = ["NeighborCSR", "ball_query"]

# Candidate search radius slack: the float32 test below decides membership; the KD-tree (float64)
# and the CUDA grid (cell edge) only need to be a hair wider so that no float32 hit is missed.
_CANDIDATE_SLACK = 1e-5
_CELL_SLACK = 1e-3
_KEY_LIMIT = 2**62


class NeighborCSR(NamedTuple):
    """Neighbour lists in compressed-row form.

    index: (E,) int64 — neighbour rows of ``xyz``; query m's neighbours are
        ``index[ptr[m]:ptr[m + 1]]``, in increasing index order.
    ptr: (M + 1,) int64 — row offsets, ``ptr[0] == 0``, ``ptr[-1] == E``.
    """

    index: torch.Tensor
    ptr: torch.Tensor


def radius_squared_f32(radius: float) -> float:
    """r² exactly as both back ends compare it: the float32 product of float32(r) with itself."""
    r32 = np.float32(radius)
    return float(r32 * r32)


def ball_query(
    xyz: torch.Tensor,
    radius: float,
    max_neighbors: int,
    batch_offsets: torch.Tensor | Sequence[int] | None = None,
    query: torch.Tensor | None = None,
    query_batch_offsets: torch.Tensor | Sequence[int] | None = None,
) -> NeighborCSR:
    """All points within ``radius`` of each query point, capped at ``max_neighbors`` per query.

    A point ``j`` is a neighbour of query ``m`` when both lie in the same batch item and
    ``dx*dx + dy*dy + dz*dz < radius*radius``, evaluated in float32 in exactly that order on both
    back ends (the rule of SoftGroup's ``ballquery_batch_p``). When a query has more than
    ``max_neighbors`` neighbours, the ``max_neighbors`` with the **smallest indices** are kept,
    like the official kernels, which scan points in index order. Each list is sorted by index, so
    the result does not depend on the device, thread count or the order the search visits points.
    Without ``query``, every point queries the cloud and is its own neighbour.

    Args:
        xyz: (N, 3) float32, metres — the searched points, batch-contiguous.
        radius: metres, > 0.
        max_neighbors: cap K >= 1 per query.
        batch_offsets: (B + 1,) int — batch item b holds ``xyz[batch_offsets[b]:batch_offsets[b+1]]``;
            None = one batch item.
        query: (M, 3) float32 query points (default: ``xyz``).
        query_batch_offsets: (B + 1,) int offsets of ``query`` into the same B batch items;
            required when both ``query`` and ``batch_offsets`` are given.

    Returns:
        :class:`NeighborCSR` ``(index (E,) int64, ptr (M + 1,) int64)`` on ``xyz``'s device.

    Memory: the CPU path holds every uncapped neighbour pair of one batch item at once; the CUDA
    path only the capped result.

    Example:
        >>> import torch
        >>> from ros2_inst3d.ops import ball_query
        >>> xyz = torch.tensor([[0.0, 0, 0], [0.05, 0, 0], [1.0, 0, 0], [0.0, 0, 0]])
        >>> index, ptr = ball_query(xyz, radius=0.1, max_neighbors=8, batch_offsets=[0, 3, 4])
        >>> [index[ptr[m]:ptr[m + 1]].tolist() for m in range(4)]
        [[0, 1], [0, 1], [2], [3]]
    """
    xyz = check_points(xyz, "xyz")
    radius = check_radius(radius)
    max_neighbors = check_positive_int(max_neighbors, "max_neighbors")
    device = xyz.device
    offsets = batch_offsets_tensor(batch_offsets, xyz.shape[0], device)
    self_query = query is None
    if self_query:
        if query_batch_offsets is not None:
            raise ValueError("query_batch_offsets was given without query; pass query too, or drop it")
        query, query_offsets = xyz, offsets
    else:
        query = check_points(query, "query")
        same_device(("xyz", xyz), ("query", query))
        if query_batch_offsets is None and batch_offsets is not None:
            raise ValueError("query_batch_offsets is required when query and batch_offsets are both "
                             "given (which batch item does each query belong to?)")
        query_offsets = batch_offsets_tensor(query_batch_offsets, query.shape[0], device,
                                             "query_batch_offsets")
        if query_offsets.numel() != offsets.numel():
            raise ValueError(f"query_batch_offsets describes {query_offsets.numel() - 1} batch items "
                             f"but batch_offsets {offsets.numel() - 1}; they must match")

    num_queries = query.shape[0]
    if num_queries == 0 or xyz.shape[0] == 0:
        return NeighborCSR(torch.zeros(0, dtype=torch.int64, device=device),
                           torch.zeros(num_queries + 1, dtype=torch.int64, device=device))

    if device.type == "cuda":
        extension = _backend.cuda_extension()
        if extension is not None:
            return _ball_query_cuda(extension, xyz, query, offsets, query_offsets, radius, max_neighbors)
    index, ptr = _ball_query_cpu(xyz.cpu(), query.cpu(), offsets.cpu(), query_offsets.cpu(),
                                 radius, max_neighbors, self_query)
    return NeighborCSR(index.to(device), ptr.to(device))


def _ball_query_cpu(xyz: torch.Tensor, query: torch.Tensor, offsets: torch.Tensor,
                    query_offsets: torch.Tensor, radius: float, max_neighbors: int,
                    self_query: bool) -> tuple[torch.Tensor, torch.Tensor]:
    import scipy.sparse
    from scipy.spatial import cKDTree

    points = xyz.numpy()
    queries = query.numpy()
    candidate_radius = radius * (1.0 + _CANDIDATE_SLACK)
    r2 = np.float32(radius_squared_f32(radius))

    def within(q_rows: np.ndarray, p_rows: np.ndarray) -> np.ndarray:
        # float32, ((dx*dx + dy*dy) + dz*dz), one rounding per operation: the CUDA kernel's rule.
        dist2 = np.zeros(q_rows.shape[0], dtype=np.float32)
        for axis in range(3):
            d = queries[q_rows, axis] - points[p_rows, axis]
            dist2 += d * d
        return dist2 < r2

    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    for b in range(offsets.numel() - 1):
        p0, p1 = int(offsets[b]), int(offsets[b + 1])
        q0, q1 = int(query_offsets[b]), int(query_offsets[b + 1])
        if p0 == p1 or q0 == q1:
            continue
        tree = cKDTree(points[p0:p1], balanced_tree=False, compact_nodes=False)  # faster build
        if self_query:  # each unordered pair once, then both directions and the point itself
            pairs = tree.query_pairs(candidate_radius, output_type="ndarray").astype(np.int64) + p0
            pairs = pairs[within(pairs[:, 0], pairs[:, 1])]
            own = np.arange(p0, p1, dtype=np.int64)
            rows.append(np.concatenate([pairs[:, 0], pairs[:, 1], own]))
            cols.append(np.concatenate([pairs[:, 1], pairs[:, 0], own]))
        else:
            found = cKDTree(queries[q0:q1], balanced_tree=False, compact_nodes=False).sparse_distance_matrix(
                tree, candidate_radius, output_type="ndarray")
            row = found["i"].astype(np.int64) + q0
            col = found["j"].astype(np.int64) + p0
            hit = within(row, col)
            rows.append(row[hit])
            cols.append(col[hit])
    row = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    col = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)

    num_points = points.shape[0]
    num_queries = queries.shape[0]
    # Pairs grouped by query, each query's neighbours by index: scipy's CSR build is a counting
    # sort by row plus small per-row sorts, about twice as fast as one sort of row * N + col.
    # Pairs are distinct, so nothing is summed.
    pairs = scipy.sparse.csr_matrix((np.ones(row.size, dtype=np.int8), (row, col)),
                                    shape=(num_queries, num_points))
    pairs.sort_indices()
    col = pairs.indices.astype(np.int64, copy=False)
    starts = pairs.indptr.astype(np.int64, copy=False)
    counts = np.diff(starts)
    # Rank of each pair within its query's list: the first max_neighbors are kept.
    rank = np.arange(col.shape[0], dtype=np.int64) - np.repeat(starts[:-1], counts)
    keep = rank < max_neighbors
    ptr = np.zeros(num_queries + 1, dtype=np.int64)
    np.cumsum(np.minimum(counts, max_neighbors), out=ptr[1:])
    return torch.from_numpy(np.ascontiguousarray(col[keep])), torch.from_numpy(ptr)


def _ball_query_cuda(extension, xyz: torch.Tensor, query: torch.Tensor, offsets: torch.Tensor,
                     query_offsets: torch.Tensor, radius: float,
                     max_neighbors: int) -> NeighborCSR:
    """Uniform grid with cell edge ~radius; the kernel scans the 27 cells around each query."""
    cell = radius * (1.0 + _CELL_SLACK)
    low = torch.minimum(xyz.min(0).values, query.min(0).values).double()
    point_cells = torch.floor((xyz.double() - low) / cell).long()
    query_cells = torch.floor((query.double() - low) / cell).long()
    dims = (torch.maximum(point_cells.max(0).values, query_cells.max(0).values) + 1).tolist()
    num_batches = offsets.numel() - 1
    if num_batches * dims[0] * dims[1] * dims[2] >= _KEY_LIMIT:
        raise ValueError(
            f"ball_query: the cloud spans {dims} cells of {radius} m in x, y, z across {num_batches} "
            "batch item(s), too many to index; crop far-away points or use a larger radius")

    def cell_key(batch: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
        return ((batch * dims[0] + cells[:, 0]) * dims[1] + cells[:, 1]) * dims[2] + cells[:, 2]

    point_keys = cell_key(batch_ids(offsets), point_cells)
    sorted_keys, order = torch.sort(point_keys, stable=True)
    cell_keys, cell_counts = torch.unique_consecutive(sorted_keys, return_counts=True)
    cell_start = torch.zeros(cell_keys.numel() + 1, dtype=torch.int64, device=xyz.device)
    torch.cumsum(cell_counts, 0, out=cell_start[1:])
    query_batch = batch_ids(query_offsets)
    query_cell = torch.cat([query_batch[:, None], query_cells], dim=1).contiguous()

    index, ptr = extension.ball_query_grid(
        query.contiguous(), query_cell, xyz[order].contiguous(), order.contiguous(),
        cell_keys.contiguous(), cell_start, dims[0], dims[1], dims[2],
        radius_squared_f32(radius), max_neighbors)
    # The kernel writes each query's hits in grid order; sort every row by index.
    num_points = xyz.shape[0]
    row = torch.repeat_interleave(torch.arange(ptr.numel() - 1, device=xyz.device), ptr.diff())
    key = torch.sort(row * num_points + index).values
    return NeighborCSR(key - row * num_points, ptr)
