"""Soak: the streaming pipeline at 10 Hz with ~100k-point scans for minutes; RSS each minute.

    python3 benchmarks/soak.py --minutes 20 [--model geometric] [--points 100000] [--json F]

Runs what the node's threads run, in one thread and in wall time: every 1/rate s a new
PointCloud2 (one of 10 pre-built scans of a generated LiDAR room, re-stamped, moving sensor)
is decoded, transformed and accumulated; the ``segment.rate_hz`` trigger (1 Hz) segments and
builds every output message. A tick that falls due while the previous work still runs is
counted as ``superseded`` (the node's mailbox drops it the same way). Prints one row per
sample: elapsed minutes, resident memory (MB, /proc/self/statm), scans received / accumulated
/ skipped, segmentations, and the scan account check. Memory must stay flat: the window,
TF-free lookups and message pools are all bounded.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from ros2_inst3d.cloud import encode_xyz, ns_to_stamp
from ros2_inst3d.config import Config
from ros2_inst3d.msgs import MessageFactory, make_typestore
from ros2_inst3d.pipeline import StreamPipeline
from ros2_inst3d.segmenter import Segmenter
from ros2_inst3d.transforms import quaternion_from_euler, transform_to_matrix

SEC = 1_000_000_000


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def scan_pool(points: int, count: int = 10, seed: int = 0) -> list[np.ndarray]:
    """``count`` scans of about ``points`` points: a generated room scanned by the LiDAR."""
    from dataclasses import replace

    from ros2_inst3d.synthetic.scene import SceneParams, generate_scene

    scene = generate_scene(seed, replace(SceneParams.small(), sensor="lidar"),
                           keep_sequence=True)
    xyz = scene.xyz.astype(np.float32)
    rng = np.random.default_rng(seed)
    pool = []
    for _ in range(count):
        pick = rng.integers(0, len(xyz), points)
        pool.append(xyz[pick] + rng.normal(0, 0.005, (points, 3)).astype(np.float32))
    return pool


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=20.0)
    p.add_argument("--rate", type=float, default=10.0, help="scans per second (default 10)")
    p.add_argument("--points", type=int, default=100_000)
    p.add_argument("--model", default="geometric")
    p.add_argument("--sample-s", type=float, default=60.0, help="RSS sample period (default 60)")
    p.add_argument("--json", type=Path)
    args = p.parse_args()

    factory = MessageFactory.for_rosbags(make_typestore("humble"))
    cfg = Config().replace(**{"model.name": args.model, "input.fixed_frame": "map"})
    pipe = StreamPipeline(cfg, Segmenter(cfg))
    pool = scan_pool(args.points)
    t0_ns = 1_700_000_000 * SEC

    def lookup(target: str, source: str, stamp_ns: int) -> np.ndarray:
        s = (stamp_ns - t0_ns) / SEC   # the sensor drives a slow circle
        return transform_to_matrix([0.5 * np.cos(0.05 * s), 0.5 * np.sin(0.05 * s), 0.0],
                                   quaternion_from_euler(0.0, 0.0, 0.05 * s))

    period = 1.0 / args.rate
    start = time.monotonic()
    next_tick, next_sample, k = start, start, 0
    rows = []
    print(f"soak: {args.points} points/scan at {args.rate:g} Hz, model {args.model}, "
          f"{args.minutes:g} min")
    print(f"{'min':>6} {'RSS MB':>8} {'received':>9} {'accum.':>7} {'skipped':>8} "
          f"{'segm.':>6}  account")
    while True:
        now = time.monotonic()
        if now >= next_sample:
            s = pipe.stats
            skipped = sum(s.scans_skipped.values())
            pending = s.scans_received - skipped - s.scans_accumulated
            row = {"minutes": round((now - start) / 60, 2), "rss_mb": round(rss_mb(), 1),
                   "received": s.scans_received, "accumulated": s.scans_accumulated,
                   "skipped": dict(s.scans_skipped), "segmentations": s.segmentations}
            rows.append(row)
            print(f"{row['minutes']:>6.2f} {row['rss_mb']:>8.1f} {s.scans_received:>9} "
                  f"{s.scans_accumulated:>7} {skipped:>8} {s.segmentations:>6}  "
                  f"{'ok' if pending == 0 else f'{pending} unaccounted'}", flush=True)
            next_sample += args.sample_s
        if now - start >= args.minutes * 60:
            break
        if now < next_tick:
            time.sleep(min(next_tick, next_sample) - now)
            continue
        missed = int((now - next_tick) // period)
        for _ in range(missed):     # ticks that fell due while we were busy
            pipe.count_superseded("points")
        next_tick += (missed + 1) * period
        stamp = t0_ns + round((next_tick - period - start) * SEC)
        header = factory("std_msgs/msg/Header", stamp=ns_to_stamp(factory, stamp),
                         frame_id="lidar")
        pipe.ingest("points", encode_xyz(factory, header, pool[k % len(pool)]), lookup)
        k += 1
        if pipe.trigger.poll(time.monotonic()):
            result = pipe.segment()
            if result is not None:
                pipe.output_messages(factory, result)
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)},
                                         "samples": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
