"""ros2_inst3d.ops against slow, obvious reference implementations written here.

Every op test runs on each available device ([cpu] + [cuda if available]); on a CUDA host that
compares the kernels with the same references as the CPU path.
"""

from __future__ import annotations

import doctest
import importlib
import os
import subprocess
import sys
import warnings
from collections import deque

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ros2_inst3d import ops
from ros2_inst3d.ops import _backend

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ----------------------------------------------------------------------------- references
def dist2_f32(a: np.ndarray, b: np.ndarray) -> np.float32:
    """The contract's squared distance: float32, ((dx*dx + dy*dy) + dz*dz), one rounding per op."""
    d = [np.float32(a[k]) - np.float32(b[k]) for k in range(3)]
    return np.float32(np.float32(d[0] * d[0]) + np.float32(d[1] * d[1])) + np.float32(d[2] * d[2])


def ref_ball_query(xyz, radius, cap, offsets=None, query=None, query_offsets=None):
    """For every query, scan the points of its batch item in index order; keep the first `cap` hits."""
    xyz = np.asarray(xyz, dtype=np.float32)
    offsets = [0, len(xyz)] if offsets is None else list(offsets)
    if query is None:
        query, query_offsets = xyz, offsets
    query = np.asarray(query, dtype=np.float32)
    query_offsets = [0, len(query)] if query_offsets is None else list(query_offsets)
    r2 = np.float32(radius) * np.float32(radius)
    lists = []
    for b in range(len(offsets) - 1):
        for m in range(query_offsets[b], query_offsets[b + 1]):
            hits = [j for j in range(offsets[b], offsets[b + 1]) if dist2_f32(query[m], xyz[j]) < r2]
            lists.append(hits[:cap])
    return lists


def csr_lists(index: torch.Tensor, ptr: torch.Tensor) -> list[list[int]]:
    index, ptr = index.cpu().tolist(), ptr.cpu().tolist()
    return [index[ptr[m]:ptr[m + 1]] for m in range(len(ptr) - 1)]


def ref_components(adjacency: list[list[int]], labels=None, min_size=1) -> list[int]:
    """BFS over undirected edges (same non-negative label only); clusters numbered by first point."""
    n = len(adjacency)
    undirected = [set() for _ in range(n)]
    for i, row in enumerate(adjacency):
        for j in row:
            if labels is None or (labels[i] >= 0 and labels[i] == labels[j]):
                undirected[i].add(j)
                undirected[j].add(i)
    out = [-1] * n
    seen = [False] * n
    next_id = 0
    for seed in range(n):  # ascending seeds: the first point of each cluster is its smallest
        if seen[seed] or (labels is not None and labels[seed] < 0):
            continue
        members, todo = [], deque([seed])
        seen[seed] = True
        while todo:
            i = todo.popleft()
            members.append(i)
            for j in undirected[i]:
                if not seen[j]:
                    seen[j] = True
                    todo.append(j)
        need = min_size if isinstance(min_size, int) else int(min_size[labels[seed]])
        if len(members) >= need:
            for i in members:
                out[i] = next_id
            next_id += 1
    return out


def ref_fps(xyz, counts, offsets, starts):
    xyz = np.asarray(xyz, dtype=np.float32)
    out = []
    for b, count in enumerate(counts):
        rows = list(range(offsets[b], offsets[b + 1]))
        if count == 0:
            continue
        chosen = [rows[starts[b]]]
        nearest = {j: np.float32(np.inf) for j in rows}
        while len(chosen) < count:
            for j in rows:
                nearest[j] = min(nearest[j], dist2_f32(xyz[j], xyz[chosen[-1]]))
            best = max(rows, key=lambda j: (nearest[j], -j))  # largest distance, then smallest row
            chosen.append(best)
        out.extend(chosen)
    return out


def dense_masks(sets: list[set[int]], n: int) -> torch.Tensor:
    masks = torch.zeros((len(sets), n), dtype=torch.bool)
    for k, s in enumerate(sets):
        masks[k, sorted(s)] = True
    return masks


def sparse_masks(sets: list[set[int]], device: str) -> ops.SparseMasks:
    pairs = [(k, p) for k, s in enumerate(sets) for p in sorted(s)]
    mask_idx = torch.tensor([k for k, _ in pairs], dtype=torch.int64, device=device)
    point_idx = torch.tensor([p for _, p in pairs], dtype=torch.int64, device=device)
    return ops.SparseMasks(mask_idx, point_idx, len(sets))


def ref_iou(a: set[int], b: set[int]) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 0.0


# ----------------------------------------------------------------------------- strategies
@st.composite
def batched_clouds(draw, max_points=40, max_batches=3):
    """Points on a 0.05 m lattice (exact ties and radius boundaries) split into batch items."""
    n = draw(st.integers(0, max_points))
    lattice = draw(st.lists(st.tuples(*[st.integers(-6, 6)] * 3), min_size=n, max_size=n))
    xyz = np.asarray(lattice, dtype=np.float32).reshape(-1, 3) * np.float32(0.05)
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=max_batches - 1)))
    return xyz, [0, *cuts, n]


# ----------------------------------------------------------------------------- ball_query
@pytest.mark.parametrize("device", DEVICES)
def test_ball_query_small_cases(device):
    xyz = torch.tensor([[0.0, 0, 0], [0.5, 0, 0], [0.25, 0, 0], [0.0, 0.49, 0], [9, 9, 9]], device=device)
    index, ptr = ops.ball_query(xyz, radius=0.5, max_neighbors=10)
    # d == r is not a neighbour (strict <): points 0 and 1 are exactly 0.5 apart.
    assert csr_lists(index, ptr) == [[0, 2, 3], [1, 2], [0, 1, 2], [0, 3], [4]]
    # The cap keeps the smallest indices, not the nearest points.
    index, ptr = ops.ball_query(xyz, radius=0.5, max_neighbors=2)
    assert csr_lists(index, ptr) == [[0, 2], [1, 2], [0, 1], [0, 3], [4]]
    # Batch items never see each other, even at distance 0.
    same = torch.zeros((4, 3), device=device)
    index, ptr = ops.ball_query(same, radius=0.1, max_neighbors=8, batch_offsets=[0, 1, 1, 3, 4])
    assert csr_lists(index, ptr) == [[0], [1, 2], [1, 2], [3]]
    assert index.device.type == device and index.dtype == ptr.dtype == torch.int64


@pytest.mark.parametrize("device", DEVICES)
def test_ball_query_separate_queries(device):
    xyz = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 0, 0], [1, 0, 0]], device=device)
    query = torch.tensor([[0.9, 0, 0], [0.1, 0, 0], [5, 5, 5]], device=device)
    index, ptr = ops.ball_query(xyz, 0.2, 4, batch_offsets=[0, 2, 4], query=query,
                                query_batch_offsets=[0, 1, 3])
    assert csr_lists(index, ptr) == [[1], [2], []]


@pytest.mark.parametrize("device", DEVICES)
@PROPERTY
@given(cloud=batched_clouds(), radius=st.sampled_from([0.05, 0.07, 0.1, 0.15, 0.3]),
       cap=st.integers(1, 12))
def test_ball_query_matches_reference(device, cloud, radius, cap):
    xyz, offsets = cloud
    index, ptr = ops.ball_query(torch.from_numpy(xyz).to(device), radius, cap, offsets)
    assert csr_lists(index, ptr) == ref_ball_query(xyz, radius, cap, offsets)


@pytest.mark.parametrize("device", DEVICES)
@PROPERTY
@given(cloud=batched_clouds(max_batches=2), queries=batched_clouds(max_points=15, max_batches=1),
       radius=st.sampled_from([0.05, 0.1, 0.2]), cap=st.integers(1, 6))
def test_ball_query_with_queries_matches_reference(device, cloud, queries, radius, cap):
    xyz, offsets = cloud
    query, _ = queries
    # Put every query in the last batch item.
    query_offsets = [0] * (len(offsets) - 1) + [len(query)]
    index, ptr = ops.ball_query(torch.from_numpy(xyz).to(device), radius, cap, offsets,
                                query=torch.from_numpy(query).to(device), query_batch_offsets=query_offsets)
    assert csr_lists(index, ptr) == ref_ball_query(xyz, radius, cap, offsets, query, query_offsets)


@pytest.mark.parametrize("device", DEVICES)
def test_ball_query_random_cloud_matches_reference(device):
    rng = np.random.default_rng(3)
    xyz = (rng.random((700, 3)) * np.array([1.0, 1.0, 0.2])).astype(np.float32) + 50.0  # far from 0
    index, ptr = ops.ball_query(torch.from_numpy(xyz).to(device), 0.08, 7, [0, 300, 700])
    assert csr_lists(index, ptr) == ref_ball_query(xyz, 0.08, 7, [0, 300, 700])


def test_ball_query_rejects_bad_input():
    xyz = torch.zeros((3, 3))
    with pytest.raises(TypeError, match="float32"):
        ops.ball_query(xyz.double(), 0.1, 4)
    with pytest.raises(TypeError, match="torch.from_numpy"):
        ops.ball_query(np.zeros((3, 3), dtype=np.float32), 0.1, 4)
    with pytest.raises(ValueError, match="end at the number of rows"):
        ops.ball_query(xyz, 0.1, 4, batch_offsets=[0, 2])
    with pytest.raises(ValueError, match="radius"):
        ops.ball_query(xyz, 0.0, 4)
    with pytest.raises(ValueError, match="max_neighbors"):
        ops.ball_query(xyz, 0.1, 0)
    with pytest.raises(ValueError, match="NaN"):
        ops.ball_query(torch.tensor([[0.0, float("nan"), 0]]), 0.1, 4)
    with pytest.raises(ValueError, match="query_batch_offsets is required"):
        ops.ball_query(xyz, 0.1, 4, batch_offsets=[0, 3], query=xyz)


# ----------------------------------------------------------------------------- connected_components
@pytest.mark.parametrize("device", DEVICES)
def test_connected_components_small_cases(device):
    # 4 -> 2 and 2 -> 0 only one way round: weak connectivity still joins {0, 2, 4}.
    index = torch.tensor([0, 2, 3], device=device)
    ptr = torch.tensor([0, 0, 0, 1, 1, 2, 3], device=device)  # rows: 2->0, 4->2, 5->3
    assert ops.connected_components(index, ptr).tolist() == [0, 1, 0, 2, 0, 2]
    assert ops.connected_components(index, ptr, min_size=2).tolist() == [0, -1, 0, 1, 0, 1]
    labels = torch.tensor([1, 1, 1, 3, 2, -100], device=device)
    # 4 -> 2 crosses classes; 5 is ignored, so 3 is alone.
    assert ops.connected_components(index, ptr, labels=labels).tolist() == [0, 1, 0, 2, 3, -1]
    per_class = torch.tensor([9, 2, 1, 1], device=device)  # class 1 needs 2 points
    assert ops.connected_components(index, ptr, labels=labels, min_size=per_class).tolist() == [0, -1, 0, 1, 2, -1]


@st.composite
def graphs(draw):
    n = draw(st.integers(0, 30))
    rows = [draw(st.lists(st.integers(0, max(n - 1, 0)), max_size=4)) if n else [] for _ in range(n)]
    labels = draw(st.lists(st.sampled_from([-100, 0, 1, 2]), min_size=n, max_size=n))
    return rows, labels


@pytest.mark.parametrize("device", DEVICES)
@PROPERTY
@given(graph=graphs(), use_labels=st.booleans(), min_size=st.integers(1, 4), per_class=st.booleans())
def test_connected_components_matches_bfs(device, graph, use_labels, min_size, per_class):
    rows, labels = graph
    index = torch.tensor([j for row in rows for j in row], dtype=torch.int64, device=device)
    ptr = torch.tensor(np.concatenate([[0], np.cumsum([len(r) for r in rows])]), dtype=torch.int64,
                       device=device)
    threshold = min_size
    if use_labels and per_class:
        threshold = torch.tensor([min_size, 1, 3], device=device)
    got = ops.connected_components(index, ptr, len(rows),
                                   labels=torch.tensor(labels, dtype=torch.int64, device=device) if use_labels else None,
                                   min_size=threshold)
    expected = ref_components(rows, labels if use_labels else None,
                              threshold.tolist() if isinstance(threshold, torch.Tensor) else threshold)
    assert got.tolist() == expected
    assert got.device.type == device


def test_connected_components_rejects_bad_graph():
    with pytest.raises(ValueError, match="index the 2 points"):
        ops.connected_components(torch.tensor([5]), torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match="num_points=3"):
        ops.connected_components(torch.tensor([1]), torch.tensor([0, 1, 1]), num_points=3)
    with pytest.raises(ValueError, match="needs labels"):
        ops.connected_components(torch.tensor([1]), torch.tensor([0, 1, 1]), min_size=torch.tensor([2]))
    with pytest.raises(TypeError, match="integer"):
        ops.connected_components(torch.tensor([1.0]), torch.tensor([0, 1, 1]))


def test_renumber_clusters_orders_by_first_point():
    assert ops.renumber_clusters(torch.tensor([7, -1, 3, 7, 100, 3])).tolist() == [0, -1, 1, 0, 2, 1]


# ----------------------------------------------------------------------------- cluster_points
def ref_cluster_points(xyz, semantic, radius, min_size, cap, offsets):
    """Per point: same-batch, same-class points within radius, scanned in index order, first `cap`."""
    n = len(xyz)
    batch = np.zeros(n, dtype=int)
    for b in range(len(offsets) - 1):
        batch[offsets[b]:offsets[b + 1]] = b
    r2 = np.float32(radius) * np.float32(radius)
    rows = []
    for i in range(n):
        hits = []
        if semantic[i] >= 0:
            hits = [j for j in range(n) if batch[j] == batch[i] and semantic[j] == semantic[i]
                    and dist2_f32(xyz[i], xyz[j]) < r2]
        rows.append(hits[:cap])
    return ref_components(rows, list(semantic), min_size)


@pytest.mark.parametrize("device", DEVICES)
@PROPERTY
@given(cloud=batched_clouds(), classes=st.data(), radius=st.sampled_from([0.06, 0.1, 0.2]),
       cap=st.integers(1, 6), min_size=st.integers(1, 3))
def test_cluster_points_matches_reference(device, cloud, classes, radius, cap, min_size):
    xyz, offsets = cloud
    semantic = classes.draw(st.lists(st.sampled_from([-100, 2, 5]), min_size=len(xyz), max_size=len(xyz)))
    got = ops.cluster_points(torch.from_numpy(xyz).to(device), torch.tensor(semantic, dtype=torch.int64, device=device),
                             radius, min_size, cap, offsets)
    assert got.tolist() == ref_cluster_points(xyz, semantic, radius, min_size, cap, offsets)


@pytest.mark.parametrize("device", DEVICES)
def test_cluster_points_separates_touching_objects_of_different_class(device):
    # Two touching 10-point rods: one class each -> two clusters; a lone point of the first
    # class is dropped by min_size.
    rod = np.stack([np.arange(10) * 0.02, np.zeros(10), np.zeros(10)], 1)
    xyz = np.concatenate([rod, rod + [0.2, 0, 0], [[5.0, 5, 5]]]).astype(np.float32)
    semantic = torch.tensor([4] * 10 + [7] * 10 + [4], device=device)
    got = ops.cluster_points(torch.from_numpy(xyz).to(device), semantic, 0.03, 3, 16)
    assert got.tolist() == [0] * 10 + [1] * 10 + [-1]


def ref_merged_cluster_points(xyz, semantic, radius, min_size, cap, offsets, merge_size):
    """Merge same-(batch, class) points per cell into their mean, cluster the means like
    ref_cluster_points (nodes in order of first point), count points for min_size."""
    n = len(xyz)
    batch = np.zeros(n, dtype=int)
    for b in range(len(offsets) - 1):
        batch[offsets[b]:offsets[b + 1]] = b
    keys, node_of = {}, np.full(n, -1)
    order = sorted((i for i in range(n) if semantic[i] >= 0), key=lambda i: (batch[i], semantic[i], i))
    for i in order:
        key = (batch[i], semantic[i], *np.floor(xyz[i] / merge_size).astype(int))
        node_of[i] = keys.setdefault(key, len(keys))
    members = [[i for i in order if node_of[i] == v] for v in range(len(keys))]
    nodes = np.array([xyz[m].astype(np.float64).mean(0) for m in members], np.float32).reshape(-1, 3)
    node_key = [(batch[m[0]], semantic[m[0]]) for m in members]
    r2 = np.float32(radius) * np.float32(radius)
    rows = [[w for w in range(len(nodes)) if node_key[w] == node_key[v]
             and dist2_f32(nodes[v], nodes[w]) < r2][:cap] for v in range(len(nodes))]
    node_cluster = ref_components(rows, [0] * len(nodes), 1)
    cluster = [node_cluster[node_of[i]] if node_of[i] >= 0 else -1 for i in range(n)]
    sizes = {c: cluster.count(c) for c in set(cluster) if c >= 0}
    cluster = [c if c >= 0 and sizes[c] >= min_size else -1 for c in cluster]
    first = {}
    for i, c in enumerate(cluster):
        if c >= 0:
            first.setdefault(c, len(first))
    return [first[c] if c >= 0 else -1 for c in cluster]


@pytest.mark.parametrize("device", DEVICES)
@PROPERTY
@given(cloud=batched_clouds(), classes=st.data(), radius=st.sampled_from([0.06, 0.1, 0.2]),
       cap=st.integers(1, 6), min_size=st.integers(1, 4), merge_size=st.sampled_from([0.03, 0.05, 0.1]))
def test_merged_cluster_points_matches_reference(device, cloud, classes, radius, cap, min_size,
                                                 merge_size):
    xyz, offsets = cloud
    semantic = classes.draw(st.lists(st.sampled_from([-100, 2, 5]), min_size=len(xyz), max_size=len(xyz)))
    got = ops.cluster_points(torch.from_numpy(xyz).to(device), torch.tensor(semantic, dtype=torch.int64, device=device),
                             radius, min_size, cap, offsets, merge_size=merge_size)
    assert got.tolist() == ref_merged_cluster_points(xyz, semantic, radius, min_size, cap, offsets,
                                                     merge_size)


def test_merged_cluster_points_keeps_collapsed_instances_cheap_and_counts_points():
    # Offsets of a trained model pull each instance onto (almost) one point: 20k points in two
    # piles would be 200M neighbour pairs per point search; merged they are two nodes.
    rng = np.random.default_rng(0)
    piles = np.concatenate([rng.normal(0, 0.002, (10_000, 3)), rng.normal(1, 0.002, (10_000, 3)),
                            [[5.0, 5.0, 5.0]] * 3]).astype(np.float32)
    semantic = torch.full((len(piles),), 4)
    got = ops.cluster_points(torch.from_numpy(piles), semantic, 0.04, 3, 300, merge_size=0.02)
    assert got[:10_000].unique().tolist() == [0]
    assert got[10_000:20_000].unique().tolist() == [1]
    assert got[20_000:].tolist() == [2, 2, 2]  # one node of 3 points passes min_size=3
    with pytest.raises(ValueError, match="merge_size"):
        ops.cluster_points(torch.from_numpy(piles), semantic, 0.04, 3, 300, merge_size=-1.0)


# ----------------------------------------------------------------------------- farthest_point_sample
@pytest.mark.parametrize("device", DEVICES)
@PROPERTY
@given(cloud=batched_clouds(max_points=30), data=st.data())
def test_fps_matches_reference(device, cloud, data):
    xyz, offsets = cloud
    sizes = np.diff(offsets)
    counts = [data.draw(st.integers(0, int(s))) for s in sizes]
    starts = [data.draw(st.integers(0, max(int(s) - 1, 0))) for s in sizes]
    got = ops.farthest_point_sample(torch.from_numpy(xyz).to(device), counts, offsets, starts)
    assert got.tolist() == ref_fps(xyz, counts, offsets, starts)
    assert got.device.type == device


@pytest.mark.parametrize("device", DEVICES)
def test_fps_spreads_samples(device):
    # Corners of a cube plus its centre region: 8 samples from the start corner must be the 8 corners.
    rng = np.random.default_rng(0)
    inner = rng.uniform(0.3, 0.7, (200, 3))
    corners = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], dtype=float)
    xyz = torch.tensor(np.concatenate([corners, inner]), dtype=torch.float32, device=device)
    got = ops.farthest_point_sample(xyz, 8)
    assert sorted(got.tolist()) == list(range(8))


def test_fps_rejects_too_many_samples():
    with pytest.raises(ValueError, match="batch item 1 has 2 points but 3"):
        ops.farthest_point_sample(torch.zeros((5, 3)), 3, batch_offsets=[0, 3, 5])
    with pytest.raises(ValueError, match="start_idx 4 is outside"):
        ops.farthest_point_sample(torch.zeros((3, 3)), 2, start_idx=4)


# ----------------------------------------------------------------------------- voxelize_points
def ref_voxelize(coords: list[tuple[int, ...]]):
    first: dict[tuple[int, ...], int] = {}
    for c in coords:
        first.setdefault(c, len(first))
    point_to_voxel = [first[c] for c in coords]
    members = [[i for i, v in enumerate(point_to_voxel) if v == m] for m in range(len(first))]
    return list(first), point_to_voxel, members


@pytest.mark.parametrize("device", DEVICES)
@PROPERTY
@given(coords=st.lists(st.tuples(st.integers(0, 2), *[st.integers(-3, 3)] * 3), max_size=60),
       dtype=st.sampled_from([torch.int32, torch.int64]))
def test_voxelize_points_matches_reference(device, coords, dtype):
    tensor = torch.tensor(coords, dtype=dtype, device=device).reshape(-1, 4)
    maps = ops.voxelize_points(tensor)
    voxels, point_to_voxel, members = ref_voxelize(coords)
    assert [tuple(v) for v in maps.voxel_coords.tolist()] == voxels
    assert maps.voxel_coords.dtype == dtype
    assert maps.point_to_voxel.tolist() == point_to_voxel
    assert csr_lists(maps.voxel_points, maps.voxel_ptr) == members


@pytest.mark.parametrize("device", DEVICES)
def test_voxelize_points_handles_huge_extents(device):
    # Extents whose product overflows one int64 key take the row-comparison path.
    big = 2**40
    coords = torch.tensor([[0, big, -big, 7], [0, -big, big, 7], [0, big, -big, 7]], device=device)
    maps = ops.voxelize_points(coords)
    assert maps.point_to_voxel.tolist() == [0, 1, 0]
    assert maps.voxel_coords.tolist() == coords[:2].tolist()


def test_voxelize_points_agrees_with_voxelize_module():
    from ros2_inst3d.voxelize import voxelize

    rng = np.random.default_rng(5)
    xyz = rng.uniform(-1.0, 2.0, (3000, 3)).astype(np.float32)
    grid = voxelize(xyz, 0.1)
    per_point = grid.coords[grid.point_to_voxel].astype(np.int64)
    coords = torch.from_numpy(np.concatenate([np.zeros((len(xyz), 1), np.int64), per_point], 1))
    maps = ops.voxelize_points(coords)
    assert np.array_equal(maps.voxel_coords[:, 1:].numpy(), grid.coords)
    assert np.array_equal(maps.point_to_voxel.numpy(), grid.point_to_voxel)
    ptr, idx = grid.voxel_to_points()
    assert np.array_equal(maps.voxel_ptr.numpy(), ptr) and np.array_equal(maps.voxel_points.numpy(), idx)


# ----------------------------------------------------------------------------- segment_reduce
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("reduce", ["sum", "mean", "max", "min"])
def test_segment_reduce_matches_loop(device, reduce):
    rng = np.random.default_rng(1)
    values = rng.normal(size=(50, 3)).astype(np.float32)
    ids = rng.integers(-1, 6, 50)  # -1 = ignored; segment 6 stays empty
    got = ops.segment_reduce(torch.from_numpy(values).to(device), torch.from_numpy(ids).to(device), 7, reduce)
    fn = {"sum": np.sum, "mean": np.mean, "max": np.max, "min": np.min}[reduce]
    expected = np.zeros((7, 3), np.float32)
    for s in range(7):
        rows = values[ids == s]
        if len(rows):
            expected[s] = fn(rows, axis=0)
    np.testing.assert_allclose(got.cpu().numpy(), expected, rtol=1e-6, atol=1e-6)
    one_column = ops.segment_reduce(torch.from_numpy(values[:, 0]).to(device), torch.from_numpy(ids).to(device),
                                    7, reduce)
    np.testing.assert_allclose(one_column.cpu().numpy(), expected[:, 0], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_segment_reduce_mean_gradient(device):
    values = torch.arange(6, dtype=torch.float32, device=device).reshape(6, 1).requires_grad_()
    ids = torch.tensor([0, 0, 0, 1, -1, 1], device=device)
    ops.segment_reduce(values, ids, 2, "mean").sum().backward()
    assert values.grad.flatten().tolist() == pytest.approx([1 / 3] * 3 + [0.5, 0.0, 0.5])


def test_segment_reduce_rejects_bad_input():
    with pytest.raises(ValueError, match="num_segments is 2"):
        ops.segment_reduce(torch.ones(3), torch.tensor([0, 1, 2]), 2)
    with pytest.raises(TypeError, match="floating-point"):
        ops.segment_reduce(torch.ones(3, dtype=torch.int64), torch.tensor([0, 1, 1]), 2, "mean")
    with pytest.raises(ValueError, match="reduce must be"):
        ops.segment_reduce(torch.ones(3), torch.tensor([0, 1, 1]), 2, "median")


# ----------------------------------------------------------------------------- mask_iou / mask_nms
mask_sets = st.lists(st.sets(st.integers(0, 24), max_size=12), max_size=8)


@pytest.mark.parametrize("device", DEVICES)
@PROPERTY
@given(a=mask_sets, b=mask_sets, form=st.sampled_from(["dense", "sparse", "mixed"]),
       chunk=st.sampled_from([None, 1, 4, 7]))
def test_mask_iou_matches_sets(device, a, b, form, chunk):
    n = 25
    masks_a = dense_masks(a, n).to(device) if form in ("dense", "mixed") else sparse_masks(a, device)
    masks_b = dense_masks(b, n).to(device) if form == "dense" else sparse_masks(b, device)
    got = ops.mask_iou(masks_a, masks_b, num_points=n, chunk_size=chunk)
    expected = [[ref_iou(x, y) for y in b] for x in a]
    assert got.shape == (len(a), len(b)) and got.device.type == device
    np.testing.assert_allclose(got.cpu().numpy().reshape(len(a), len(b)),
                               np.asarray(expected, dtype=np.float64).reshape(len(a), len(b)), rtol=1e-6)
    self_iou = ops.mask_iou(masks_a, chunk_size=chunk)
    np.testing.assert_allclose(self_iou.cpu().numpy().reshape(len(a), len(a)),
                               np.asarray([[ref_iou(x, y) for y in a] for x in a]).reshape(len(a), len(a)),
                               rtol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_mask_iou_pair_counting_in_small_chunks(device, monkeypatch):
    from ros2_inst3d.ops import masks as masks_module

    monkeypatch.setattr(masks_module, "_PAIR_CHUNK", 5)  # split the shared-point pairs many times
    rng = np.random.default_rng(2)
    a = [set(rng.choice(40, rng.integers(0, 15), replace=False).tolist()) for _ in range(9)]
    b = [set(rng.choice(40, rng.integers(0, 15), replace=False).tolist()) for _ in range(6)]
    got = ops.mask_iou(sparse_masks(a, device), dense_masks(b, 40).to(device))
    np.testing.assert_allclose(got.cpu().numpy(), [[ref_iou(x, y) for y in b] for x in a], rtol=1e-6)


def ref_nms(sets, scores, threshold, labels=None):
    order = sorted(range(len(sets)), key=lambda k: (-scores[k], k))
    keep = []
    for k in order:
        if all(ref_iou(sets[k], sets[j]) <= threshold or (labels is not None and labels[j] != labels[k])
               for j in keep):
            keep.append(k)
    return keep


@pytest.mark.parametrize("device", DEVICES)
@PROPERTY
@given(sets=mask_sets, data=st.data(), threshold=st.sampled_from([0.0, 0.25, 0.3, 0.5, 1.0]),
       use_labels=st.booleans(), sparse=st.booleans())
def test_mask_nms_matches_greedy_reference(device, sets, data, threshold, use_labels, sparse):
    scores = data.draw(st.lists(st.sampled_from([0.1, 0.5, 0.9]), min_size=len(sets), max_size=len(sets)))
    labels = data.draw(st.lists(st.integers(0, 1), min_size=len(sets), max_size=len(sets)))
    masks = sparse_masks(sets, device) if sparse else dense_masks(sets, 25).to(device)
    got = ops.mask_nms(masks, torch.tensor(scores, dtype=torch.float32, device=device), threshold,
                       labels=torch.tensor(labels, dtype=torch.int64, device=device) if use_labels else None)
    assert got.tolist() == ref_nms(sets, scores, threshold, labels if use_labels else None)


def test_mask_ops_reject_bad_input():
    with pytest.raises(TypeError, match="bool mask"):
        ops.mask_iou(torch.ones((2, 3)))
    with pytest.raises(ValueError, match="num_masks=1"):
        ops.mask_iou(ops.SparseMasks(torch.tensor([0, 1]), torch.tensor([0, 0]), 1))
    with pytest.raises(ValueError, match="finite"):
        ops.mask_nms(torch.ones((1, 3), dtype=torch.bool), torch.tensor([float("nan")]), 0.5)


# ----------------------------------------------------------------------------- back end
@pytest.fixture
def fresh_backend():
    _backend._reset_for_tests()
    yield
    _backend._reset_for_tests()


def test_backend_without_cuda_is_cpu_and_warns_once(fresh_backend, monkeypatch):
    if torch.cuda.is_available():  # make this host look like a CPU-only one
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert ops.backend() == "cpu"
        assert ops.backend() == "cpu"
        assert ops.backend("cuda") == "cpu"
    backend_warnings = [w for w in caught if issubclass(w.category, ops.OpsBackendWarning)]
    assert len(backend_warnings) == 1
    message = str(backend_warnings[0].message)
    assert "CPU path because" in message and ("without CUDA" in message or "no CUDA device" in message)


def test_backend_cpu_device_never_warns(fresh_backend):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ops.backend("cpu") == "cpu"
        ops.ball_query(torch.zeros((2, 3)), 0.1, 2)


@pytest.mark.parametrize("device", DEVICES)
def test_forced_cpu_path_gives_results_on_the_callers_device(fresh_backend, monkeypatch, device):
    monkeypatch.setenv("ROS2_INST3D_OPS_CPU", "1")
    xyz = torch.tensor([[0.0, 0, 0], [0.05, 0, 0], [1, 0, 0]], device=device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert ops.backend() == "cpu"
        index, ptr = ops.ball_query(xyz, 0.1, 4)
    assert any("ROS2_INST3D_OPS_CPU" in str(w.message) for w in caught)
    assert index.device.type == device and csr_lists(index, ptr) == [[0, 1], [0, 1], [2]]
    clusters = ops.connected_components(index, ptr)
    assert clusters.device.type == device and clusters.tolist() == [0, 0, 1]


def test_import_does_not_build_anything():
    code = ("import sys, ros2_inst3d.ops as o; from ros2_inst3d.ops import _backend as b; "
            "print(b._resolved, 'torch.utils.cpp_extension' in sys.modules)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")])))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    resolved, cpp_extension_loaded = out.stdout.split()
    assert resolved == "False"
    assert cpp_extension_loaded == "False"


def test_cuda_sources_are_shipped():
    csrc = _backend._CSRC
    for name in _backend._SOURCES:
        assert (csrc / name).is_file(), name
    assert "PYBIND11_MODULE" in (csrc / "ops.cpp").read_text()


# ----------------------------------------------------------------------------- docstring examples
@pytest.mark.parametrize("module", ["neighbors", "clustering", "sampling", "voxel_maps", "segment_reduce",
                                    "masks", "_backend", "bench"])
def test_docstring_examples_run(module):
    result = doctest.testmod(importlib.import_module(f"ros2_inst3d.ops.{module}"))
    assert result.attempted > 0 and result.failed == 0
