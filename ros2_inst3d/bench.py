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
    if not getattr(args, "decode", False):
        report["pipeline"] = bench_pipeline(repeats=args.repeats)
        print_pipeline(report["pipeline"])
        from .ops.bench import bench_ops, format_bench

        report["ops"] = bench_ops()
        print("\ngrouping ops (CPU path, 100k points):")
        print(format_bench(report["ops"]))
    return report


def bench_pipeline(seed: int = 200_003, repeats: int = 3, model: str = "geometric") -> dict:
    """Per-stage time of the node's path on one generated ~130k-point room, as one scan.

    Stages: decode (PointCloud2 → Scan), accumulate (add + cloud() with dedupe), segment
    (crop, the model's own stages, fusion) and encode (labelled PointCloud2 + InstanceArray).
    Each stage's share of the total is the ratio reported; medians of wall time over repeats.
    """
    from .cloud import decode, encode_xyz, ns_to_stamp
    from .config import Config
    from .data.synthetic import generate_scene
    from .msgs import MessageFactory, make_typestore
    from .outputs import instance_array, labelled_cloud
    from .pipeline import StreamPipeline
    from .segmenter import Segmenter

    scene = generate_scene(seed)
    factory = MessageFactory.for_rosbags(make_typestore("humble"))
    header = factory("std_msgs/msg/Header", stamp=ns_to_stamp(factory, 1), frame_id="map")
    msg = encode_xyz(factory, header, scene.xyz, scene.rgb)
    cfg = Config().replace(**{"model.name": model})
    segmenter = Segmenter(cfg)
    stages: dict[str, list[float]] = {}

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        out = fn()
        stages.setdefault(name, []).append((time.perf_counter() - t0) * 1e3)
        return out

    for _ in range(repeats):
        pipe = StreamPipeline(cfg, segmenter)
        scan = timed("decode", lambda: decode(msg))
        cloud = timed("accumulate", lambda: (pipe.accumulator.add(scan.xyz, scan.rgb, None, 1),
                                             pipe.accumulator.cloud())[1])
        inst = segmenter.segment(cloud.xyz, cloud.rgb)
        for name, ms in inst.timing_ms.items():
            if name != "total":
                stages.setdefault(f"segment.{name}", []).append(ms)
        timed("encode", lambda: (labelled_cloud(factory, inst, header),
                                 instance_array(factory, inst, header, 1, model)))
    medians = {name: statistics.median(v) for name, v in stages.items()}
    total = sum(medians.values())
    return {"model": model, "points": int(len(scene.xyz)), "accumulated_points": int(len(cloud.xyz)),
            "instances": int(inst.num_instances), "total_ms": total,
            "stages": {name: {"ms": ms, "share": ms / total} for name, ms in medians.items()}}


def print_pipeline(report: dict) -> None:
    print(f"\npipeline ({report['model']}): one {report['points']}-point generated room "
          f"({report['accumulated_points']} after dedupe), {report['instances']} instances")
    print(f"{'stage':<22}{'ms':>9}{'share':>8}")
    for name, row in report["stages"].items():
        print(f"{name:<22}{row['ms']:>9.1f}{row['share']:>8.1%}")
    print(f"{'total':<22}{report['total_ms']:>9.1f}{1:>8.0%}")
