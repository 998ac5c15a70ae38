"""Plane fitting (``structure_mask``) and the whole geometric baseline before and after a change, in one run.

    python3 benchmarks/bench_planes.py --baseline-tree /path/to/checkout/before [--scenes 4]

Loads ``ros2_inst3d/model/geometric.py`` of the baseline checkout beside this tree's, then on the
pipeline benchmark's room (seed ``BENCH_SCENE_SEED``) and ``--scenes`` more generated rooms
(seeds 0..) times both versions interleaved (process CPU time, which counts BLAS threads, and
wall time; medians over ``--repeats``) and checks that they mark the same points as structure;
then the whole segmentation (``GeometricModel.predict_points``: planes, voxel clustering, filters)
the same way, checking that the instances are the same. Prints one row per scene and the
speed-ups; ``--json`` writes the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ros2_inst3d.bench import BENCH_SCENE_SEED, load_baseline_module  # noqa: E402
from ros2_inst3d.config import Config  # noqa: E402
from ros2_inst3d.synthetic.scene import generate_scene  # noqa: E402
from ros2_inst3d.model import geometric  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-tree", type=Path, required=True)
    parser.add_argument("--scenes", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    try:
        before = load_baseline_module(args.baseline_tree, "ros2_inst3d/model/geometric.py")
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cfg = Config().geometric
    rows = []
    print("| scene | points | structure points before / after | same mask | planes process CPU "
          "ms before / after | planes wall ms before / after | instances before / after | same "
          "instances | segmentation process CPU ms before / after |\n|---|---|---|---|---|---|---|"
          "---|---|")
    for seed in [BENCH_SCENE_SEED, *range(args.scenes)]:
        xyz = generate_scene(seed, threads=1).xyz.astype(np.float32)
        masks, cpu, wall = _interleaved(
            {name: (lambda m=module: m.structure_mask(xyz, cfg))
             for name, module in (("before", before), ("after", geometric))}, args.repeats)
        found, seg_cpu, _ = _interleaved(
            {name: (lambda m=module: m.GeometricModel(cfg).predict_points(xyz))
             for name, module in (("before", before), ("after", geometric))}, args.repeats)
        row = {"seed": seed, "points": len(xyz),
               "structure_before": int(masks["before"].sum()),
               "structure_after": int(masks["after"].sum()),
               "same_mask": bool(np.array_equal(masks["before"], masks["after"])),
               "instances_before": len(found["before"].indices),
               "instances_after": len(found["after"].indices),
               "same_instances": _same_instances(found["before"], found["after"]),
               **{f"cpu_ms_{k}": v for k, v in cpu.items()},
               **{f"wall_ms_{k}": v for k, v in wall.items()},
               **{f"segment_cpu_ms_{k}": v for k, v in seg_cpu.items()}}
        rows.append(row)
        print(f"| {seed} | {row['points']} | {row['structure_before']} / {row['structure_after']}"
              f" | {row['same_mask']} | {row['cpu_ms_before']:.0f} / {row['cpu_ms_after']:.0f} | "
              f"{row['wall_ms_before']:.0f} / {row['wall_ms_after']:.0f} | "
              f"{row['instances_before']} / {row['instances_after']} | {row['same_instances']} | "
              f"{row['segment_cpu_ms_before']:.0f} / {row['segment_cpu_ms_after']:.0f} |",
              flush=True)
    summary = {f"{what}_speedup": statistics.median(r[f"{what}_before"] / r[f"{what}_after"]
                                                    for r in rows)
               for what in ("cpu_ms", "wall_ms", "segment_cpu_ms")}
    print(f"median speed-up: planes process CPU {summary['cpu_ms_speedup']:.2f}x, wall "
          f"{summary['wall_ms_speedup']:.2f}x, whole segmentation process CPU "
          f"{summary['segment_cpu_ms_speedup']:.2f}x; identical masks on "
          f"{sum(r['same_mask'] for r in rows)}/{len(rows)} scenes, identical instances on "
          f"{sum(r['same_instances'] for r in rows)}/{len(rows)}; load average "
          f"{os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, **summary,
                                         "load_average": os.getloadavg()[0]}, indent=1))
    return 0 if all(r["same_mask"] for r in rows) else 1


def _interleaved(runs: dict, repeats: int) -> tuple[dict, dict, dict]:
    """Run every ``runs[name]()`` ``repeats + 1`` times, interleaved (the first turn warms up):
    (last answer, median process CPU ms, median wall ms) by name."""
    answers, cpu, wall = {}, {name: [] for name in runs}, {name: [] for name in runs}
    for turn in range(repeats + 1):
        for name, run in runs.items():
            w, c = time.perf_counter(), time.process_time()
            answers[name] = run()
            if turn:
                cpu[name].append(time.process_time() - c)
                wall[name].append(time.perf_counter() - w)
    return (answers, {k: statistics.median(v) * 1e3 for k, v in cpu.items()},
            {k: statistics.median(v) * 1e3 for k, v in wall.items()})


def _same_instances(a, b) -> bool:
    """Whether two ``Proposals`` hold the same point sets in the same order."""
    return len(a.indices) == len(b.indices) and all(
        np.array_equal(x, y) for x, y in zip(a.indices, b.indices))


if __name__ == "__main__":
    sys.exit(main())
