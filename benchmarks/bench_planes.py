"""Plane fitting of the geometric baseline (``structure_mask``) before and after a change, in one run.

    python3 benchmarks/bench_planes.py --baseline-tree /path/to/checkout/before [--scenes 4]

Loads ``ros2_inst3d/model/geometric.py`` of the baseline checkout beside this tree's, then on the
pipeline benchmark's room (seed ``BENCH_SCENE_SEED``) and ``--scenes`` more generated rooms
(seeds 0..) times both versions interleaved (process CPU time, which counts BLAS threads, and
wall time; medians over ``--repeats``) and checks that they mark the same points as structure.
Prints one row per scene and the speed-up; ``--json`` writes the figures.
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
    print("| scene | points | structure points before / after | same mask | process CPU ms before"
          " / after | wall ms before / after |\n|---|---|---|---|---|---|")
    for seed in [BENCH_SCENE_SEED, *range(args.scenes)]:
        xyz = generate_scene(seed, threads=1).xyz.astype(np.float32)
        cpu: dict[str, list[float]] = {"before": [], "after": []}
        wall: dict[str, list[float]] = {"before": [], "after": []}
        masks = {}
        for turn in range(args.repeats + 1):  # the first turn warms up
            for name, module in (("before", before), ("after", geometric)):
                w, c = time.perf_counter(), time.process_time()
                masks[name] = module.structure_mask(xyz, cfg)
                if turn:
                    cpu[name].append(time.process_time() - c)
                    wall[name].append(time.perf_counter() - w)
        row = {"seed": seed, "points": len(xyz),
               "structure_before": int(masks["before"].sum()),
               "structure_after": int(masks["after"].sum()),
               "same_mask": bool(np.array_equal(masks["before"], masks["after"])),
               **{f"cpu_ms_{k}": statistics.median(v) * 1e3 for k, v in cpu.items()},
               **{f"wall_ms_{k}": statistics.median(v) * 1e3 for k, v in wall.items()}}
        rows.append(row)
        print(f"| {seed} | {row['points']} | {row['structure_before']} / {row['structure_after']}"
              f" | {row['same_mask']} | {row['cpu_ms_before']:.0f} / {row['cpu_ms_after']:.0f} | "
              f"{row['wall_ms_before']:.0f} / {row['wall_ms_after']:.0f} |", flush=True)
    cpu_ratio = statistics.median(r["cpu_ms_before"] / r["cpu_ms_after"] for r in rows)
    wall_ratio = statistics.median(r["wall_ms_before"] / r["wall_ms_after"] for r in rows)
    print(f"median speed-up: process CPU {cpu_ratio:.2f}x, wall {wall_ratio:.2f}x; identical "
          f"masks on {sum(r['same_mask'] for r in rows)}/{len(rows)} scenes; load average "
          f"{os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "cpu_speedup": cpu_ratio,
                                         "wall_speedup": wall_ratio,
                                         "load_average": os.getloadavg()[0]}, indent=1))
    return 0 if all(r["same_mask"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
