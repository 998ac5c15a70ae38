"""Timings of the grouping ops on a synthetic room-sized cloud (for ``ros2-inst3d bench`` and
``benchmarks/bench_ops.py``).

Absolute times depend on the machine, so every op is also reported as a ratio to a baseline
measured in the same run: ``torch.sort`` of N random int64 keys on the same device (a memory-bound
primitive every op here is built from; a ratio of 5 means "costs about five sorts").
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import numpy as np
import torch

from ._backend import backend
from .clustering import cluster_points, connected_components
from .masks import SparseMasks, mask_iou, mask_nms
from .neighbors import ball_query
from .sampling import farthest_point_sample
from .segment import segment_reduce
from .voxel_maps import voxelize_points

__all__ = ["bench_ops", "format_bench", "synthetic_scene"]

# SoftGroup's ScanNet grouping settings (research/official-models.md §2.4).
RADIUS = 0.04
MAX_NEIGHBORS = 300
MIN_SIZE = 50
VOXEL = 0.02
FPS_SAMPLES = 1024
POINTS_PER_M2 = 2500.0  # ~2 cm spacing, the density the indoor models were trained at


def synthetic_scene(num_points: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A room (floor + 4 walls) with box-shaped furniture, surfaces sampled at ~2500 points/m².

    Returns ``xyz (N, 3) float32`` metres and ``semantic (N,) int64`` (0 wall, 1 floor, 2..19 one
    class per piece of furniture, cycling), deterministic from ``seed``.
    """
    rng = np.random.default_rng(seed)
    # Boxes as (center, size); the room grows with N so the density stays fixed.
    furniture = [(rng.uniform(0.1, 0.9, 2), rng.uniform(0.4, 1.6, 3) * [1, 1, 0.8]) for _ in range(24)]
    unit_area = 1.0 + 4 * 0.4  # floor + walls of a unit room 0.4 high, relative
    furniture_area = sum(2 * (s[0] * s[1] + s[0] * s[2] + s[1] * s[2]) for _, s in furniture)
    room = max(2.0, float(np.sqrt(max(num_points / POINTS_PER_M2 - furniture_area, 1.0) / unit_area)))
    faces: list[tuple[np.ndarray, np.ndarray, np.ndarray, int]] = []  # origin, u, v, class

    def box(center_xy, size, cls):
        lo = np.array([center_xy[0] * room - size[0] / 2, center_xy[1] * room - size[1] / 2, 0.0])
        ex, ey, ez = np.diag(size)
        for o, u, v in ((lo, ex, ey), (lo + ez, ex, ey), (lo, ex, ez), (lo + ey, ex, ez),
                        (lo, ey, ez), (lo + ex, ey, ez)):
            faces.append((o, u, v, cls))

    height = 0.4 * room
    faces.append((np.zeros(3), np.array([room, 0, 0]), np.array([0, room, 0]), 1))
    for o, u in ((np.zeros(3), [room, 0, 0]), (np.zeros(3), [0, room, 0]),
                 (np.array([room, 0, 0]), [0, room, 0]), (np.array([0, room, 0]), [room, 0, 0])):
        faces.append((o, np.array(u, float), np.array([0, 0, height]), 0))
    for k, (center, size) in enumerate(furniture):
        box(center, size, 2 + k % 18)
    areas = np.array([np.linalg.norm(np.cross(u, v)) for _, u, v, _ in faces])
    counts = rng.multinomial(num_points, areas / areas.sum())
    xyz, semantic = [], []
    for (o, u, v, cls), n in zip(faces, counts):
        st = rng.random((n, 2))
        xyz.append(o + st[:, :1] * u + st[:, 1:] * v)
        semantic.append(np.full(n, cls))
    order = rng.permutation(num_points)  # sensors do not deliver points sorted by object
    points = np.concatenate(xyz)[order] + rng.normal(0, 0.002, (num_points, 3))
    return (torch.from_numpy(points.astype(np.float32)),
            torch.from_numpy(np.concatenate(semantic)[order].astype(np.int64)))


def _timer(device: torch.device, repeats: int) -> Callable[[Callable[[], Any]], tuple[float, Any]]:
    def run(fn: Callable[[], Any]) -> tuple[float, Any]:
        result = fn()  # warm-up (and first-use costs such as building kernels)
        times = []
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            result = fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append((time.perf_counter() - start) * 1e3)
        return statistics.median(times), result
    return run


def bench_ops(num_points: int = 100_000, device: str | torch.device | None = None, repeats: int = 3,
              seed: int = 0) -> dict[str, Any]:
    """Time every op once per ``repeats`` (median, after a warm-up run) on :func:`synthetic_scene`.

    Returns a dict: ``num_points``, ``device``, ``backend`` (``'cuda'`` kernels or ``'cpu'``),
    ``torch_threads``, ``baseline`` ``{'name', 'ms'}`` and ``ops``: op name ->
    ``{'ms', 'x_baseline', 'setting'}``.

    >>> report = bench_ops(num_points=2000, repeats=1)
    >>> sorted(report["ops"]) == sorted(['ball_query', 'connected_components', 'cluster_points',
    ...     'farthest_point_sample', 'voxelize_points', 'segment_reduce', 'mask_iou', 'mask_nms'])
    True
    """
    dev = torch.device(device) if device is not None else torch.device(
        "cuda" if torch.cuda.is_available() else "cpu")
    xyz, semantic = synthetic_scene(num_points, seed)
    xyz, semantic = xyz.to(dev), semantic.to(dev)
    timed = _timer(dev, repeats)
    keys = torch.randint(0, 2**62, (num_points,), generator=torch.Generator().manual_seed(seed)).to(dev)
    baseline_ms, _ = timed(lambda: torch.sort(keys))
    report: dict[str, Any] = {
        "num_points": num_points, "device": str(dev), "backend": backend(dev),
        "torch_threads": torch.get_num_threads(),
        "baseline": {"name": f"torch.sort of {num_points} int64 keys", "ms": baseline_ms}, "ops": {}}

    def record(name: str, setting: str, fn: Callable[[], Any]) -> Any:
        ms, result = timed(fn)
        report["ops"][name] = {"ms": ms, "x_baseline": ms / max(baseline_ms, 1e-9), "setting": setting}
        return result

    things = torch.where(semantic >= 2, semantic, torch.full_like(semantic, -1))
    index, ptr = record("ball_query", f"r={RADIUS} m, cap {MAX_NEIGHBORS}",
                        lambda: ball_query(xyz, RADIUS, MAX_NEIGHBORS))
    record("connected_components", f"class constraint, min_size {MIN_SIZE}",
           lambda: connected_components(index, ptr, num_points, labels=things, min_size=MIN_SIZE))
    clusters = record("cluster_points", f"r={RADIUS} m, per class, min_size {MIN_SIZE}",
                      lambda: cluster_points(xyz, things, RADIUS, MIN_SIZE, MAX_NEIGHBORS))
    samples = min(FPS_SAMPLES, num_points)
    record("farthest_point_sample", f"{samples} samples",
           lambda: farthest_point_sample(xyz, samples))
    coords = torch.cat([torch.zeros((num_points, 1), dtype=torch.int64, device=dev),
                        torch.floor((xyz - xyz.min(0).values) / VOXEL).long()], dim=1)
    maps = record("voxelize_points", f"{VOXEL} m voxels", lambda: voxelize_points(coords))
    features = torch.randn((num_points, 6), device=dev, generator=None)
    num_voxels = maps.voxel_coords.shape[0]
    record("segment_reduce", f"mean of (N, 6) over {num_voxels} voxels",
           lambda: segment_reduce(features, maps.point_to_voxel, num_voxels, "mean"))
    member = clusters >= 0
    num_masks = int(clusters.max()) + 1 if bool(member.any()) else 0
    masks = SparseMasks(clusters[member], torch.nonzero(member).squeeze(1), num_masks)
    record("mask_iou", f"{num_masks} x {num_masks} sparse masks", lambda: mask_iou(masks))
    scores = torch.rand(num_masks, device=dev, generator=None)
    record("mask_nms", f"{num_masks} masks, IoU > 0.3", lambda: mask_nms(masks, scores, 0.3))
    return report


def format_bench(report: dict[str, Any]) -> str:
    """Human-readable table of a :func:`bench_ops` report."""
    lines = [f"ops on {report['num_points']} points, device {report['device']} "
             f"(back end {report['backend']}, {report['torch_threads']} torch threads); baseline "
             f"{report['baseline']['name']}: {report['baseline']['ms']:.1f} ms",
             f"{'op':<24}{'ms':>10}{'x baseline':>12}  setting"]
    for name, row in report["ops"].items():
        lines.append(f"{name:<24}{row['ms']:>10.1f}{row['x_baseline']:>12.1f}  {row['setting']}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(format_bench(bench_ops()))
