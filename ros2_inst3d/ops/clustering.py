"""Grouping points into clusters: connected components of a neighbour graph (the BFS clustering
of PointGroup/SoftGroup, docs/official-models.md §5.1) and the ball-query + components
convenience the grouping heads call."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from . import _backend
from ._checks import (
    batch_ids,
    batch_offsets_tensor,
    check_index,
    check_points,
    check_positive_int,
    check_radius,
    check_tensor,
    same_device,
)
from .neighbors import ball_query
from .segment_reduce import segment_reduce
from .voxel_maps import voxelize_points

__all__ = ["cluster_points", "connected_components", "renumber_clusters"]


def _canonical(component: torch.Tensor, valid: torch.Tensor | None, min_size: int | torch.Tensor,
               labels: torch.Tensor | None) -> torch.Tensor:
    """Cluster id per point from any component id in [0, N): components smaller than min_size and
    points where ``valid`` is False become -1; the rest are numbered 0, 1, ... by their smallest
    point index."""
    n = component.numel()
    device = component.device
    if n == 0:
        return torch.zeros(0, dtype=torch.int64, device=device)
    rows = torch.arange(n, device=device)
    if valid is not None:
        component = torch.where(valid, component, torch.full_like(component, n))  # n = dropped bin
    first = torch.full((n + 1,), n, dtype=torch.int64, device=device)
    first.scatter_reduce_(0, component, rows, reduce="amin")
    size = torch.bincount(component, minlength=n + 1)
    candidates = torch.nonzero(size[:n] > 0).squeeze(1)
    threshold: int | torch.Tensor = min_size
    if isinstance(min_size, torch.Tensor):
        if labels is None:
            raise ValueError("a per-class min_size tensor needs labels (the class of each point)")
        component_class = labels[first[candidates]]
        if component_class.numel() and int(component_class.max()) >= min_size.numel():
            raise ValueError(f"min_size has {min_size.numel()} entries (one per class) but a cluster "
                             f"has class {int(component_class.max())}")
        threshold = min_size.to(device)[component_class]
    kept_ids = candidates[size[candidates] >= threshold]
    order = torch.argsort(first[kept_ids])
    new_id = torch.full((n + 1,), -1, dtype=torch.int64, device=device)
    new_id[kept_ids[order]] = torch.arange(kept_ids.numel(), device=device)
    return new_id[component]


def renumber_clusters(cluster: torch.Tensor) -> torch.Tensor:
    """Renumber cluster ids 0, 1, ... in the order of each cluster's smallest point index.

    cluster: (N,) int, -1 = no cluster, other values arbitrary non-negative ids. Returns (N,)
    int64 with the same partition; -1 stays -1. This is the canonical numbering every op here
    returns, so results from different devices or traversal orders compare with ``==``.

    >>> import torch
    >>> renumber_clusters(torch.tensor([7, -1, 3, 7])).tolist()
    [0, -1, 1, 0]
    """
    cluster = check_index(cluster, "cluster")
    valid = cluster >= 0
    n = cluster.numel()
    # Dense ids in [0, n) first (arbitrary values may exceed n).
    _, dense = torch.unique(torch.where(valid, cluster, torch.zeros_like(cluster)), return_inverse=True)
    return _canonical(dense.to(torch.int64), valid, 1, None) if n else cluster.to(torch.int64)


def connected_components(
    neighbor_idx: torch.Tensor,
    ptr: torch.Tensor,
    num_points: int | None = None,
    labels: torch.Tensor | None = None,
    min_size: int | torch.Tensor = 1,
) -> torch.Tensor:
    """Clusters = connected components of a neighbour graph, with a class constraint and a minimum size.

    Edge ``i -> neighbor_idx[k]`` for ``ptr[i] <= k < ptr[i + 1]`` joins two points; edges are
    treated as undirected (a capped ball query can list j under i but not i under j; weak
    connectivity makes the result independent of visiting order, which the official BFS is not).
    With ``labels``, an edge only joins points of the same label, and points with a negative label
    (e.g. -100 = ignore) join nothing and get -1 — PointGroup's ``bfs_cluster`` rule.

    Args:
        neighbor_idx: (E,) int — CSR column indices, e.g. from :func:`ball_query` on the same points.
        ptr: (N + 1,) int — CSR row offsets.
        num_points: N (default ``ptr.numel() - 1``; must agree).
        labels: (N,) int class per point, or None for no class constraint.
        min_size: clusters with fewer points become -1. An int, or a (num_classes,) tensor indexed
            by the cluster's label (SoftGroup: ``npoint_thr * class_numpoint_mean``).

    Returns:
        (N,) int64 cluster id per point, -1 = dropped; clusters numbered 0, 1, ... in the order of
        their smallest point index (identical on CPU and CUDA).

    Example:
        >>> import torch
        >>> from ros2_inst3d.ops import connected_components
        >>> index = torch.tensor([1, 0, 3, 2])          # 0-1 and 2-3 are neighbours
        >>> ptr = torch.tensor([0, 1, 2, 3, 4, 4])     # point 4 has none
        >>> connected_components(index, ptr).tolist()
        [0, 0, 1, 1, 2]
        >>> connected_components(index, ptr, labels=torch.tensor([0, 1, 2, 2, 2]), min_size=2).tolist()
        [-1, -1, 0, 0, -1]
    """
    neighbor_idx = check_index(neighbor_idx, "neighbor_idx")
    ptr = check_index(ptr, "ptr")
    device = same_device(("neighbor_idx", neighbor_idx), ("ptr", ptr))
    n = ptr.numel() - 1
    if n < 0:
        raise ValueError("ptr must hold N + 1 >= 1 row offsets")
    if num_points is not None and int(num_points) != n:
        raise ValueError(f"num_points={num_points} but ptr describes {n} rows; the graph must have one "
                         "row per point (run ball_query without a separate query)")
    ptr = ptr.to(torch.int64)
    neighbor_idx = neighbor_idx.to(torch.int64)
    host_ends = ptr[[0, -1]].tolist()
    if host_ends != [0, neighbor_idx.numel()] or bool((ptr[1:] < ptr[:-1]).any()):
        raise ValueError(f"ptr must run from 0 to len(neighbor_idx)={neighbor_idx.numel()} without "
                         f"decreasing; got ends {host_ends}")
    if neighbor_idx.numel() and (int(neighbor_idx.min()) < 0 or int(neighbor_idx.max()) >= n):
        raise ValueError(f"neighbor_idx must index the {n} points, got values in "
                         f"[{int(neighbor_idx.min())}, {int(neighbor_idx.max())}]")
    if labels is not None:
        labels = check_index(labels, "labels").to(device=device, dtype=torch.int64)
        if labels.numel() != n:
            raise ValueError(f"labels must have one entry per point ({n}), got {labels.numel()}")
    if isinstance(min_size, torch.Tensor):
        if min_size.dim() != 1:
            raise ValueError("a min_size tensor must be 1-D, one threshold per class")
    else:
        min_size = check_positive_int(min_size, "min_size")

    row = torch.repeat_interleave(torch.arange(n, device=device), ptr.diff())
    valid = None if labels is None else labels >= 0
    if device.type == "cuda":
        extension = _backend.cuda_extension()
        if extension is not None:
            empty = torch.zeros(0, dtype=torch.int64, device=device)
            root = extension.connected_components(row.contiguous(), neighbor_idx.contiguous(),
                                                  empty if labels is None else labels.contiguous(), n)
            return _canonical(root, valid, min_size, labels)
    component = _components_cpu(row.cpu(), neighbor_idx.cpu(), None if labels is None else labels.cpu(), n)
    return _canonical(component.to(device), valid, min_size, labels)


def _components_cpu(row: torch.Tensor, col: torch.Tensor, labels: torch.Tensor | None,
                    n: int) -> torch.Tensor:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components as scipy_components

    if labels is not None:
        same = (labels[row] == labels[col]) & (labels[row] >= 0)
        row, col = row[same], col[same]
    graph = coo_matrix((np.ones(row.numel(), dtype=np.int32), (row.numpy(), col.numpy())),
                       shape=(n, n)).tocsr()
    _, component = scipy_components(graph, directed=True, connection="weak")
    return torch.from_numpy(component.astype(np.int64))


def cluster_points(
    xyz: torch.Tensor,
    semantic: torch.Tensor,
    radius: float,
    min_size: int | torch.Tensor,
    max_neighbors: int,
    batch_offsets: torch.Tensor | Sequence[int] | None = None,
    merge_size: float = 0.0,
) -> torch.Tensor:
    """Class-aware radius clustering: what PointGroup/SoftGroup's grouping does per class.

    Points of the same batch item and the same semantic class whose distance is below ``radius``
    are linked (see :func:`ball_query`; the neighbour cap counts same-class neighbours only, as
    SoftGroup's per-class ball query does), and each connected component with at least
    ``min_size`` points is a cluster. Points with a negative class (e.g. -100, or stuff classes
    the caller set to -1) are not clustered.

    Args:
        xyz: (N, 3) float32, metres, batch-contiguous (e.g. PointGroup's offset-shifted coords).
        semantic: (N,) int class per point; negative = leave out.
        radius: metres, > 0 (SoftGroup ScanNet: 0.04; PointGroup: 0.03).
        min_size: int, or (num_classes,) tensor of per-class minimum sizes.
        max_neighbors: neighbour cap per point (SoftGroup's mean_active: 300; the official kernel
            caps at 1000).
        batch_offsets: (B + 1,) int offsets of the batch items, or None for one.
        merge_size: metres; > 0 first merges the points of one (batch item, class) that share a
            cubic cell of this side into one node at their mean (SoftGroup++'s pyramid grouping,
            docs/official-models.md §2.3, which uses half the radius), links nodes closer
            than ``radius`` and gives every point its node's cluster; ``min_size`` still counts
            points. Offset-shifted points of a well-trained model pile up near instance centres,
            where the uncapped neighbour pairs of a plain radius search grow with the square of
            the instance size; merged, they stay a handful of nodes. 0 = the official per-point
            grouping.

    Returns:
        (N,) int64 cluster id per point, -1 = none; numbered by smallest point index, never shared
        across batch items or classes.

    Example:
        >>> import torch
        >>> from ros2_inst3d.ops import cluster_points
        >>> xyz = torch.tensor([[0.0, 0, 0], [0.02, 0, 0], [0.04, 0, 0], [1.0, 0, 0]])
        >>> cluster_points(xyz, torch.tensor([4, 4, 6, 4]), radius=0.03, min_size=1,
        ...                max_neighbors=16).tolist()
        [0, 0, 1, 2]
    """
    xyz = check_points(xyz, "xyz")
    semantic = check_index(check_tensor(semantic, "semantic"), "semantic")
    radius = check_radius(radius)
    max_neighbors = check_positive_int(max_neighbors, "max_neighbors")
    device = same_device(("xyz", xyz), ("semantic", semantic))
    n = xyz.shape[0]
    if semantic.numel() != n:
        raise ValueError(f"semantic must have one class per point ({n}), got {semantic.numel()}")
    offsets = batch_offsets_tensor(batch_offsets, n, device)
    semantic = semantic.to(torch.int64)
    members = torch.nonzero(semantic >= 0).squeeze(1)
    result = torch.full((n,), -1, dtype=torch.int64, device=device)
    if members.numel() == 0:
        return result
    # One ball-query "batch item" per (batch item, class): neighbours never cross classes, and
    # the cap counts same-class neighbours only.
    num_classes = int(semantic.max()) + 1
    group = batch_ids(offsets)[members] * num_classes + semantic[members]
    group, order = torch.sort(group, stable=True)
    members = members[order]
    nodes, node_group, node_of_member = _merge_nodes(xyz[members], group, merge_size)
    _, counts = torch.unique_consecutive(node_group, return_counts=True)
    group_offsets = torch.zeros(counts.numel() + 1, dtype=torch.int64, device=device)
    torch.cumsum(counts, 0, out=group_offsets[1:])
    index, ptr = ball_query(nodes, radius, max_neighbors, group_offsets)
    component = connected_components(index, ptr, nodes.shape[0])[node_of_member]
    result[members] = _canonical(component, None, min_size, semantic[members])
    return renumber_clusters(result)


def _merge_nodes(points: torch.Tensor, group: torch.Tensor, merge_size: float
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Graph nodes of ``cluster_points``: (V, 3) node positions, (V,) group per node (contiguous,
    as ``group`` is sorted) and (P,) node of every point; without merging, one node per point."""
    if not merge_size:
        return points, group, torch.arange(points.shape[0], device=points.device)
    if not merge_size > 0:
        raise ValueError(f"merge_size must be >= 0 metres, got {merge_size!r}")
    cells = torch.floor(points / float(merge_size)).to(torch.int64)
    # First-occurrence order over group-sorted points keeps the nodes group-contiguous.
    maps = voxelize_points(torch.cat([group[:, None], cells], dim=1))
    num_nodes = maps.voxel_coords.shape[0]
    nodes = segment_reduce(points, maps.point_to_voxel, num_nodes, "mean")
    return nodes, maps.voxel_coords[:, 0].contiguous(), maps.point_to_voxel
