"""Stage benchmarks behind ``ros2-inst3d bench``: each times a stage against a baseline measured
in the same process, so the ratio means the same on any machine.

Importing this module stays light (numpy only); a stage imports what it needs when it runs.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import numpy as np


def median_seconds(run: Callable[[], Any], repeats: int) -> float:
    """Median wall time of ``repeats`` calls of ``run``, after one untimed warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_decode(num_points: int = 1_000_000, repeats: int = 5) -> dict:
    """Time :func:`ros2_inst3d.cloud.decode` of an x, y, z, rgb, intensity cloud (FLOAT32 each,
    point_step 20, as :func:`~ros2_inst3d.cloud.encode_xyz` writes it) against one copy of its
    data buffer (``np.frombuffer(data, np.uint8).copy()``).

    Returns ``{'points', 'bytes', 'decode_s', 'copy_s', 'ratio', 'points_per_s'}`` where times
    are medians over ``repeats`` and ``ratio = decode_s / copy_s``.
    """
    from .cloud import decode, encode_xyz, ns_to_stamp
    from .msgs import MessageFactory, make_typestore

    factory = MessageFactory.for_rosbags(make_typestore("humble"))
    rng = np.random.default_rng(0)
    xyz = rng.uniform(-20.0, 20.0, (num_points, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (num_points, 3), dtype=np.uint8)
    intensity = rng.uniform(0.0, 255.0, num_points).astype(np.float32)
    header = factory("std_msgs/msg/Header", stamp=ns_to_stamp(factory, 0), frame_id="lidar")
    msg = encode_xyz(factory, header, xyz, rgb, intensity)

    decode_s = median_seconds(lambda: decode(msg), repeats)
    copy_s = median_seconds(lambda: np.frombuffer(msg.data, np.uint8).copy(), repeats)
    return {
        "points": num_points,
        "bytes": len(msg.data),
        "decode_s": decode_s,
        "copy_s": copy_s,
        "ratio": decode_s / copy_s,
        "points_per_s": num_points / decode_s,
    }


def run_benchmarks(args: Any) -> dict:
    """The ``bench`` command: run the stage benchmarks, print a table, return the report.

    ``args``: ``points`` (cloud sizes for decode), ``repeats``, ``decode`` (decode only).
    """
    report: dict[str, Any] = {"decode": []}
    print("decode: PointCloud2 (x y z rgb intensity) -> Scan, vs one copy of msg.data")
    print(f"{'points':>10} {'decode ms':>10} {'copy ms':>9} {'ratio':>6} {'Mpoints/s':>10}")
    for num_points in args.points:
        row = bench_decode(num_points, args.repeats)
        report["decode"].append(row)
        print(f"{row['points']:>10} {row['decode_s'] * 1e3:>10.2f} {row['copy_s'] * 1e3:>9.2f} "
              f"{row['ratio']:>6.2f} {row['points_per_s'] / 1e6:>10.1f}")
    return report
