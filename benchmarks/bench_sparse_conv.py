"""The sparse U-Net forward with spconv (1 thread) against the torch backend
(``model.cpu_sparse_conv: torch``, 1 and 2 threads) on the same generated room, in the same run.

    python3 benchmarks/bench_sparse_conv.py [--repeats N] [--seed S] [--model softgroup]

Prints :func:`ros2_inst3d.bench.format_sparse_conv`'s table (README: "Sparse convolution on
CPU"): medians of wall and process CPU time and their ratios against spconv.
"""

from __future__ import annotations

import argparse

from ros2_inst3d.bench import BENCH_SCENE_SEED, bench_sparse_conv, format_sparse_conv

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=BENCH_SCENE_SEED)
    parser.add_argument("--model", default="softgroup")
    args = parser.parse_args()
    print(format_sparse_conv(bench_sparse_conv(args.seed, args.repeats, args.model)), flush=True)
