"""Stage benchmarks behind ``ros2-inst3d bench``: each times a stage against a baseline measured
in the same process, so the ratio means the same on any machine.

Times are CPU seconds of the calling thread (``time.thread_time``), medians over repeats, with
the stage and its baseline interleaved: on a shared machine, wall time mostly measures how long
other processes held the core (a 3 ms decode read 3 to 15 ms on a loaded 2-core box). Wall-time
medians are reported beside them.

Importing this module stays light (numpy only); a stage imports what it needs when it runs.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def compare(stage: Callable[[], Any], baseline: Callable[[], Any], repeats: int) -> dict:
    """Median thread-CPU and wall seconds of ``stage`` and ``baseline``, called alternately
    ``repeats`` times each after one untimed warm-up call of both."""
    stage(), baseline()
    samples: dict[str, list[float]] = {"stage": [], "baseline": [], "stage_wall": [],
                                       "baseline_wall": []}
    for _ in range(repeats):
        for name, run in (("stage", stage), ("baseline", baseline)):
            wall, cpu = time.perf_counter(), time.thread_time()
            run()
            samples[name].append(time.thread_time() - cpu)
            samples[f"{name}_wall"].append(time.perf_counter() - wall)
    return {name: statistics.median(values) for name, values in samples.items()}


def benchmark_cloud(num_points: int, point_step: int = 20) -> Any:
    """A rosbags ``sensor_msgs/msg/PointCloud2`` with x, y, z, rgb, intensity (FLOAT32 each, at
    offsets 0, 4, 8, 12, 16) and ``point_step`` bytes per point: 20 is the compact layout
    :func:`~ros2_inst3d.cloud.encode_xyz` writes, 32 pads each point like PCL's 16-byte-aligned
    point types. Random coordinates in a 40 m cube, all finite."""
    from .cloud import encode_xyz, ns_to_stamp
    from .msgs import MessageFactory, make_typestore

    if point_step < 20:
        raise ValueError(f"point_step must be at least 20 (5 FLOAT32 fields), got {point_step}")
    factory = MessageFactory.for_rosbags(make_typestore("humble"))
    rng = np.random.default_rng(0)
    xyz = rng.uniform(-20.0, 20.0, (num_points, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (num_points, 3), dtype=np.uint8)
    intensity = rng.uniform(0.0, 255.0, num_points).astype(np.float32)
    header = factory("std_msgs/msg/Header", stamp=ns_to_stamp(factory, 0), frame_id="lidar")
    msg = encode_xyz(factory, header, xyz, rgb, intensity)
    if point_step > msg.point_step:
        padded = np.zeros((num_points, point_step), np.uint8)
        padded[:, :msg.point_step] = np.asarray(msg.data).reshape(num_points, msg.point_step)
        msg.point_step, msg.row_step = point_step, point_step * num_points
        msg.data = factory.byte_data(padded)
    return msg


def bench_decode(num_points: int = 1_000_000, repeats: int = 5, point_step: int = 20) -> dict:
    """Time :func:`ros2_inst3d.cloud.decode` of :func:`benchmark_cloud` against one copy of its
    data buffer (``np.frombuffer(data, np.uint8).copy()``).

    Returns ``{'points', 'point_step', 'bytes', 'decode_s', 'copy_s', 'ratio', 'points_per_s',
    'decode_wall_s', 'copy_wall_s'}``: medians over ``repeats`` (thread CPU seconds unless
    ``_wall``), ``ratio = decode_s / copy_s``.
    """
    from .cloud import decode

    msg = benchmark_cloud(num_points, point_step)
    times = compare(lambda: decode(msg), lambda: np.frombuffer(msg.data, np.uint8).copy(), repeats)
    return {
        "points": num_points,
        "point_step": point_step,
        "bytes": len(msg.data),
        "decode_s": times["stage"],
        "copy_s": times["baseline"],
        "ratio": times["stage"] / times["baseline"],
        "points_per_s": num_points / times["stage"],
        "decode_wall_s": times["stage_wall"],
        "copy_wall_s": times["baseline_wall"],
    }


def run_benchmarks(args: Any) -> dict:
    """The ``bench`` command: run the stage benchmarks, print a table, return the report.

    ``args``: ``points`` (cloud sizes for decode), ``repeats``, ``decode`` (decode only).
    """
    report: dict[str, Any] = {"decode": []}
    print("decode: PointCloud2 (x y z rgb intensity) -> Scan, vs one copy of msg.data "
          "(median thread CPU time)")
    print(f"{'points':>10} {'bytes/pt':>8} {'decode ms':>10} {'copy ms':>8} {'ratio':>6} "
          f"{'Mpoints/s':>10}")
    for point_step in (20, 32):
        for num_points in args.points:
            row = bench_decode(num_points, args.repeats, point_step)
            report["decode"].append(row)
            print(f"{row['points']:>10} {row['point_step']:>8} {row['decode_s'] * 1e3:>10.2f} "
                  f"{row['copy_s'] * 1e3:>8.2f} {row['ratio']:>6.2f} "
                  f"{row['points_per_s'] / 1e6:>10.1f}")
    return report
