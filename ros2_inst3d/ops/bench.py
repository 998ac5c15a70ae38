"""Timings of the grouping ops on a synthetic room-sized cloud (for ``ros2-inst3d bench`` and
``benchmarks/bench_ops.py``).

Absolute times depend on the machine, so every op is also reported as a ratio to a baseline
measured in the same run: ``torch.sort`` of N random int64 keys on the same device (a memory-bound
primitive every op here is built from; a ratio of 5 means "costs about five sorts").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ._backend import backend
from .clustering import cluster_points, connected_components
from .masks import SparseMasks, mask_iou, mask_nms
from .neighbors import ball_query
from .sampling import farthest_point_sample
from .segment_reduce import segment_reduce
from .voxel_maps import voxelize_points

__all__ = ["bench_ops", "format_bench", "synthetic_scene"]

# SoftGroup's ScanNet grouping settings (docs/official-models.md §2.4).
RADIUS = 0.04
MAX_NEIGHBORS = 300
MIN_SIZE = 50
VOXEL = 0.02
FPS_SAMPLES = 1024
MASKS = 500
MASK_RADIUS = 0.3
POINTS_PER_M2 = 2500.0  # ~2 cm spacing, the density the indoor models were trained at


def synthetic_scene(num_points: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A room (floor + 4 walls) with box-shaped furniture, surfaces sampled at ~2500 points/m²
    (2 cm spacing; 100k points make a ~3 m square room).

    Returns ``xyz (N, 3) float32`` metres and ``semantic (N,) int64`` (0 wall, 1 floor, 2..19 one
    class per piece of furniture, cycling), deterministic from ``seed``.
    """
    rng = np.random.default_rng(seed)
    wall_height = 1.5  # scans of rooms rarely reach the ceiling
    # Surface of a square room of side L with one piece of furniture per ~1.5 m² of floor
    # (~3 m² of box surface each): (1 + 2) L² + 4 h L = N / density.
    area = num_points / POINTS_PER_M2
    side = max(1.0, (-4 * wall_height + np.sqrt(16 * wall_height**2 + 12 * area)) / 6)
    faces: list[tuple[np.ndarray, np.ndarray, np.ndarray, int]] = []  # origin, u, v, class
    faces.append((np.zeros(3), np.array([side, 0, 0]), np.array([0, side, 0]), 1))
    for o, u in ((np.zeros(3), [side, 0, 0]), (np.zeros(3), [0, side, 0]),
                 (np.array([side, 0, 0]), [0, side, 0]), (np.array([0, side, 0]), [side, 0, 0])):
        faces.append((o, np.array(u, float), np.array([0, 0, wall_height]), 0))
    for k in range(max(1, round(side * side / 1.5))):
        size = rng.uniform([0.3, 0.3, 0.3], [1.0, 1.0, 0.9])
        low = np.append(rng.uniform(0, np.maximum(side - size[:2], 1e-3)), 0.0)
        ex, ey, ez = np.diag(size)
        for o, u, v in ((low, ex, ey), (low + ez, ex, ey), (low, ex, ez), (low + ey, ex, ez),
                        (low, ey, ez), (low + ex, ey, ez)):
            faces.append((o, u, v, 2 + k % 18))
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


def _synchronised(fn: Callable[[], Any], device: torch.device) -> Callable[[], Any]:
    if device.type != "cuda":
        return fn

    def run() -> Any:
        out = fn()
        torch.cuda.synchronize(device)
        return out
    return run


def bench_ops(num_points: int = 100_000, device: str | torch.device | None = None, repeats: int = 3,
              seed: int = 0) -> dict[str, Any]:
    """Time every op on :func:`synthetic_scene` against a baseline measured in the same run.

    Each op and the baseline (``torch.sort`` of N int64 keys on the same device) are called
    alternately ``repeats`` times after a warm-up (:func:`ros2_inst3d.bench.compare`). On the CPU
    the ops run with one torch thread and the clock is the calling thread's CPU time, which
    other processes on a shared machine do not inflate; on CUDA it is wall time after
    ``torch.cuda.synchronize``.

    Returns a dict: ``num_points``, ``device``, ``backend`` (``'cuda'`` kernels or ``'cpu'``),
    ``clock``, ``baseline`` (its name) and ``ops``: op name -> ``{'ms', 'wall_ms', 'baseline_ms',
    'x_baseline', 'setting'}`` (``ms`` on ``clock``; ``x_baseline = ms / baseline_ms``).

    >>> report = bench_ops(num_points=2000, repeats=1)
    >>> sorted(report["ops"]) == sorted(['ball_query', 'connected_components', 'cluster_points',
    ...     'farthest_point_sample', 'voxelize_points', 'segment_reduce', 'mask_iou', 'mask_nms'])
    True
    """
    from ..bench import compare  # the project's one stage-vs-baseline timer

    dev = torch.device(device) if device is not None else torch.device(
        "cuda" if torch.cuda.is_available() else "cpu")
    on_gpu = dev.type == "cuda"
    threads = torch.get_num_threads()
    if not on_gpu:
        torch.set_num_threads(1)  # thread CPU time then covers all of the work
    try:
        return _bench(num_points, dev, repeats, seed, compare, on_gpu)
    finally:
        torch.set_num_threads(threads)


def _bench(num_points: int, dev: torch.device, repeats: int, seed: int, compare: Callable[..., dict],
           on_gpu: bool) -> dict[str, Any]:
    xyz, semantic = synthetic_scene(num_points, seed)
    xyz, semantic = xyz.to(dev), semantic.to(dev)
    generator = torch.Generator().manual_seed(seed)
    keys = torch.randint(0, 2**62, (num_points,), generator=generator).to(dev)
    baseline = _synchronised(lambda: torch.sort(keys), dev)
    report: dict[str, Any] = {
        "num_points": num_points, "device": str(dev), "backend": backend(dev),
        "clock": "wall time (synchronised)" if on_gpu else "thread CPU time, 1 torch thread",
        "baseline": f"torch.sort of {num_points} int64 keys", "ops": {}}

    def record(name: str, setting: str, fn: Callable[[], Any]) -> None:
        times = compare(_synchronised(fn, dev), baseline, repeats)
        ms, base_ms = ((times["stage_wall"], times["baseline_wall"]) if on_gpu
                       else (times["stage"], times["baseline"]))
        report["ops"][name] = {"ms": ms * 1e3, "wall_ms": times["stage_wall"] * 1e3,
                               "baseline_ms": base_ms * 1e3, "x_baseline": ms / max(base_ms, 1e-9),
                               "setting": setting}

    things = torch.where(semantic >= 2, semantic, torch.full_like(semantic, -1))
    record("ball_query", f"r={RADIUS} m, cap {MAX_NEIGHBORS}", lambda: ball_query(xyz, RADIUS, MAX_NEIGHBORS))
    index, ptr = ball_query(xyz, RADIUS, MAX_NEIGHBORS)
    record("connected_components", f"class constraint, min_size {MIN_SIZE}",
           lambda: connected_components(index, ptr, num_points, labels=things, min_size=MIN_SIZE))
    record("cluster_points", f"r={RADIUS} m, per class, min_size {MIN_SIZE}",
           lambda: cluster_points(xyz, things, RADIUS, MIN_SIZE, MAX_NEIGHBORS))
    samples = min(FPS_SAMPLES, num_points)
    record("farthest_point_sample", f"{samples} samples", lambda: farthest_point_sample(xyz, samples))
    coords = torch.cat([torch.zeros((num_points, 1), dtype=torch.int64, device=dev),
                        torch.floor((xyz - xyz.min(0).values) / VOXEL).long()], dim=1)
    record("voxelize_points", f"{VOXEL} m voxels", lambda: voxelize_points(coords))
    maps = voxelize_points(coords)
    features = torch.randn((num_points, 6), generator=generator).to(dev)
    num_voxels = maps.voxel_coords.shape[0]
    record("segment_reduce", f"mean of (N, 6) over {num_voxels} voxels",
           lambda: segment_reduce(features, maps.point_to_voxel, num_voxels, "mean"))
    # SoftGroup-like overlapping proposals: the points within MASK_RADIUS of random centres.
    num_masks = min(MASKS, num_points)
    centres = xyz[torch.randperm(num_points, generator=generator)[:num_masks].to(dev)]
    members, rows = ball_query(xyz, MASK_RADIUS, num_points, query=centres)
    masks = SparseMasks(torch.repeat_interleave(torch.arange(num_masks, device=dev), rows.diff()), members,
                        num_masks)
    setting = f"{num_masks} masks of the points within {MASK_RADIUS} m of a centre"
    record("mask_iou", setting, lambda: mask_iou(masks))
    scores = torch.rand(num_masks, generator=generator).to(dev)
    record("mask_nms", setting + ", IoU > 0.3", lambda: mask_nms(masks, scores, 0.3))
    return report


def format_bench(report: dict[str, Any]) -> str:
    """Human-readable table of a :func:`bench_ops` report."""
    lines = [(f"ops on {report['num_points']} points, device {report['device']} (back end "
              f"{report['backend']}); {report['clock']}; baseline {report['baseline']}"),
             f"{'op':<24}{'ms':>9}{'wall ms':>9}{'baseline ms':>13}{'x baseline':>12}  setting"]
    for name, row in report["ops"].items():
        lines.append(f"{name:<24}{row['ms']:>9.1f}{row['wall_ms']:>9.1f}{row['baseline_ms']:>13.2f}"
                     f"{row['x_baseline']:>12.1f}  {row['setting']}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(format_bench(bench_ops()))
