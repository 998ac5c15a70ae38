"""Synthetic scene generator speed against the bare ray casting of the same rays, in the same run.

    python -m pytest benchmarks/bench_synthetic.py --benchmark-enable
    python benchmarks/bench_synthetic.py [--scenes 5] [--seed 0] [--lidar]   # plain report

One core: ray casting runs on one thread (``threads=1``) and numpy is single-threaded here. Each
seed is one pytest-benchmark group holding ``generate_scene`` and its ``raycast`` baseline (the
same world, trajectory and rays, cast and nothing else), so the table's relative column is the
cost of everything around the ray casting. Goal: at most 2 s for a ~100k-point scene.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import pytest

from ros2_inst3d.synthetic.scene import (
    SceneParams,
    benchmark_generator,
    generate_scene,
    raycast_baseline,
)

SEEDS = [0, 1, 2]
PARAMS = {"rgbd": SceneParams(), "lidar": SceneParams(sensor="lidar")}


@pytest.fixture(scope="module", params=[(s, k) for k in PARAMS for s in SEEDS],
                ids=lambda p: f"{p[1]}-seed{p[0]}")
def case(request):
    seed, kind = request.param
    generate_scene(seed, PARAMS[kind], threads=1)  # warm-up: imports, meshes
    return seed, kind


def test_generate_scene(benchmark, case):
    seed, kind = case
    benchmark.group = f"synthetic scene {kind} seed {seed}"
    scene = benchmark.pedantic(generate_scene, args=(seed, PARAMS[kind]),
                               kwargs={"threads": 1}, rounds=3, iterations=1)
    benchmark.extra_info.update(points=scene.num_points, rays=scene.meta["num_rays"],
                                room=scene.meta["room"]["kind"])
    assert scene.num_points > 10_000


def test_raycast_baseline(benchmark, case):
    seed, kind = case
    benchmark.group = f"synthetic scene {kind} seed {seed}"
    cast = raycast_baseline(seed, PARAMS[kind], threads=1)
    hits = benchmark.pedantic(cast, rounds=3, iterations=1, warmup_rounds=1)
    assert hits["t_hit"].shape[0] > 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lidar", action="store_true")
    parser.add_argument("--voxel-size", type=float)
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    args = parser.parse_args()
    params = SceneParams(sensor="lidar" if args.lidar else "rgbd")
    if args.voxel_size:
        params = dataclasses.replace(params, voxel_size=args.voxel_size)
    result = benchmark_generator(args.scenes, args.seed, params, threads=1)
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(f"{'seed':>5} {'room':<11}{'points':>8}{'rays':>9}{'gen s':>7}{'cast s':>8}  stages (s)")
    for r in result["per_scene"]:
        print(f"{r['seed']:>5} {r['kind']:<11}{r['points']:>8}{r['rays']:>9}{r['seconds']:>7.2f}"
              f"{r['raycast_seconds']:>8.3f}  {r['stages']}")
    print(f"mean: {result['seconds_per_scene']:.2f} s/scene, "
          f"{result['points_per_scene']:.0f} points/scene, "
          f"{result['rays_per_scene']:.0f} rays/scene; ray casting alone "
          f"{result['raycast_seconds_per_scene']:.3f} s (generator / ray casting = "
          f"{result['ratio']:.1f}x)")


if __name__ == "__main__":
    main()
