"""pytest-benchmark timings of ros2_inst3d.ops on a synthetic room (100k points).

Run: ``python -m pytest benchmarks/bench_ops.py --benchmark-enable`` (add ``--benchmark-only`` to
skip nothing else; ``-k cuda`` / ``-k cpu`` picks a device). Each op's ``extra_info`` carries
``x_baseline``: its median over the median of ``torch.sort`` of N int64 keys on the same device,
measured in the same run (the ``baseline`` benchmark), so numbers compare across machines.
The same measurements without pytest: ``ros2_inst3d.ops.bench.bench_ops()``.
"""

from __future__ import annotations

import statistics
import timeit

import pytest
import torch

from ros2_inst3d import ops
from ros2_inst3d.ops import bench as settings
from ros2_inst3d.ops.bench import synthetic_scene

NUM_POINTS = 100_000
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


@pytest.fixture(scope="module", params=DEVICES)
def scene(request):
    device = request.param
    xyz, semantic = synthetic_scene(NUM_POINTS)
    xyz, semantic = xyz.to(device), semantic.to(device)
    keys = torch.randint(0, 2**62, (NUM_POINTS,), generator=torch.Generator().manual_seed(0)).to(device)

    def sort_once():
        torch.sort(keys)
        _sync(device)

    sort_once()
    baseline_s = statistics.median(timeit.repeat(sort_once, number=1, repeat=7))
    things = torch.where(semantic >= 2, semantic, torch.full_like(semantic, -1))
    return {"device": device, "xyz": xyz, "things": things, "keys": keys, "baseline_s": baseline_s}


def _run(benchmark, scene, fn, *args, **kwargs):
    device = scene["device"]

    def call():
        out = fn(*args, **kwargs)
        _sync(device)
        return out

    result = benchmark.pedantic(call, rounds=3, warmup_rounds=1)
    benchmark.extra_info["device"] = device
    if benchmark.stats is not None:  # None under --benchmark-disable (a plain run-once test)
        benchmark.extra_info["x_baseline"] = benchmark.stats.stats.median / scene["baseline_s"]
    return result


def test_baseline_sort(benchmark, scene):
    _run(benchmark, scene, torch.sort, scene["keys"])


def test_ball_query(benchmark, scene):
    index, ptr = _run(benchmark, scene, ops.ball_query, scene["xyz"], settings.RADIUS, settings.MAX_NEIGHBORS)
    assert ptr.numel() == NUM_POINTS + 1 and index.numel() >= NUM_POINTS  # every point finds itself


def test_connected_components(benchmark, scene):
    index, ptr = ops.ball_query(scene["xyz"], settings.RADIUS, settings.MAX_NEIGHBORS)
    clusters = _run(benchmark, scene, ops.connected_components, index, ptr, NUM_POINTS,
                    labels=scene["things"], min_size=settings.MIN_SIZE)
    assert int(clusters.max()) >= 0


def test_cluster_points(benchmark, scene):
    clusters = _run(benchmark, scene, ops.cluster_points, scene["xyz"], scene["things"], settings.RADIUS,
                    settings.MIN_SIZE, settings.MAX_NEIGHBORS)
    assert int(clusters.max()) >= 0


def test_farthest_point_sample(benchmark, scene):
    picked = _run(benchmark, scene, ops.farthest_point_sample, scene["xyz"], settings.FPS_SAMPLES)
    assert torch.unique(picked).numel() == settings.FPS_SAMPLES


def test_voxelize_points(benchmark, scene):
    xyz = scene["xyz"]
    coords = torch.cat([torch.zeros((NUM_POINTS, 1), dtype=torch.int64, device=xyz.device),
                        torch.floor((xyz - xyz.min(0).values) / settings.VOXEL).long()], dim=1)
    maps = _run(benchmark, scene, ops.voxelize_points, coords)
    assert maps.point_to_voxel.numel() == NUM_POINTS


def test_segment_reduce(benchmark, scene):
    xyz = scene["xyz"]
    ids = torch.randint(0, NUM_POINTS // 2, (NUM_POINTS,), device=xyz.device)
    values = torch.randn((NUM_POINTS, 6), device=xyz.device)
    out = _run(benchmark, scene, ops.segment_reduce, values, ids, NUM_POINTS // 2, "mean")
    assert out.shape == (NUM_POINTS // 2, 6)


@pytest.fixture(scope="module")
def proposals(scene):
    xyz = scene["xyz"]
    centres = xyz[torch.randperm(NUM_POINTS, generator=torch.Generator().manual_seed(0))[:settings.MASKS]
                  .to(xyz.device)]
    members, ptr = ops.ball_query(xyz, settings.MASK_RADIUS, NUM_POINTS, query=centres)
    mask_idx = torch.repeat_interleave(torch.arange(settings.MASKS, device=xyz.device), ptr.diff())
    return ops.SparseMasks(mask_idx, members, settings.MASKS)


def test_mask_iou(benchmark, scene, proposals):
    iou = _run(benchmark, scene, ops.mask_iou, proposals)
    assert torch.allclose(iou.diagonal(), torch.ones(settings.MASKS, device=iou.device))


def test_mask_nms(benchmark, scene, proposals):
    scores = torch.rand(settings.MASKS, generator=torch.Generator().manual_seed(0)).to(scene["device"])
    keep = _run(benchmark, scene, ops.mask_nms, proposals, scores, 0.3)
    assert 0 < keep.numel() <= settings.MASKS
