"""Ingest and streaming benchmarks: ``ros2-inst3d bench --stream``.

* :func:`bench_ingest`: per-scan cost of the ingest path on one core (decode, TF into the
  fixed frame, accumulate with the 2 cm dedupe) for a 100k-point scan, thread CPU time, medians.
* :func:`bench_decode_layouts`: PointCloud2 decode of the common field layouts against one copy
  of the message's buffer (the ratio is the figure of merit, as in ``bench --decode``).
* :func:`bench_streaming`: the node's threading, without ROS: a sensor thread publishes a
  100k-point scan every 1/rate_hz seconds (wall clock) into a one-slot mailbox per topic, an
  ingest thread runs :meth:`StreamPipeline.ingest`, a segmentation thread segments at
  ``segment.rate_hz`` and builds the output messages. Reports per-scan ingest time, scans lost
  (superseded in the mailbox: the ingest thread fell behind), the segmentation rate reached and
  end-to-end latency (outputs built − newest scan stamp), per method.

``--baseline-tree PATH`` (a checkout of the code before a change) runs :func:`bench_ingest` and
the layout decode in a subprocess on that tree, interleaved with this tree's runs, so the
before/after ratios come from the same benchmark run.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

SCAN_POINTS = 100_000


def _cpu_ms(run: Any, repeats: int) -> float:
    """Median thread-CPU milliseconds of ``run()`` over ``repeats`` calls after one warm-up."""
    run()
    samples = []
    for _ in range(repeats):
        start = time.thread_time()
        run()
        samples.append(time.thread_time() - start)
    return statistics.median(samples) * 1e3


def _room_scans(num_points: int = SCAN_POINTS, num_scans: int = 8, seed: int = 0):
    """``num_scans`` scans of ``num_points`` points of a generated room, each in the frame of a
    sensor moving 0.1 m per scan: ((N, 3) float32 sensor frame, rgb (N, 3) uint8, pose (4, 4))."""
    from .bench import BENCH_SCENE_SEED
    from .synthetic.scene import generate_scene
    from .transforms import apply_transform

    scene = generate_scene(BENCH_SCENE_SEED, threads=1)
    rng = np.random.default_rng(seed)
    scans = []
    for k in range(num_scans):
        pick = rng.choice(len(scene.xyz), size=num_points, replace=len(scene.xyz) < num_points)
        pose = np.eye(4)
        c, s = np.cos(0.05 * k), np.sin(0.05 * k)
        pose[:3, :3] = [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]
        pose[:3, 3] = (0.1 * k, 0.0, 0.8)
        sensor = apply_transform(np.linalg.inv(pose), scene.xyz[pick])
        scans.append((sensor, scene.rgb[pick], pose))
    return scans


def _scan_message(factory: Any, xyz: np.ndarray, rgb: np.ndarray, stamp_ns: int) -> Any:
    """One benchmark scan as the PointCloud2 a sensor driver would publish: ``xyz`` (N, 3)
    float32 in the ``sensor`` frame, ``rgb`` (N, 3) uint8, stamped ``stamp_ns``."""
    from .cloud import encode_xyz, ns_to_stamp

    header = factory("std_msgs/msg/Header", stamp=ns_to_stamp(factory, stamp_ns),
                     frame_id="sensor")
    return encode_xyz(factory, header, xyz, rgb)


def bench_ingest(num_points: int = SCAN_POINTS, repeats: int = 15) -> dict:
    """Per-scan ingest stages on one core for ``num_points``-point x, y, z, rgb scans (20-byte
    records), ms of thread CPU time: decode, transform, accumulate (add with 2 cm dedupe into a
    window of 10 scans), and the pipeline's whole :meth:`ingest`; plus the window's
    ``cloud()`` (dedupe across scans, once per segmentation, not per scan) after one new scan
    in a 10-scan window and after three in the default 400k-point one (see
    :func:`_window_cloud_ms`)."""
    from .accumulate import ScanAccumulator
    from .cloud import decode
    from .config import Config
    from .msgs import MessageFactory, make_typestore
    from .pipeline import StreamPipeline
    from .transforms import apply_transform

    factory = MessageFactory.for_rosbags(make_typestore("humble"))
    scans = _room_scans(num_points)
    msgs = [_scan_message(factory, xyz, rgb, (k + 1) * 10**8)
            for k, (xyz, rgb, _) in enumerate(scans)]
    poses = {(k + 1) * 10**8: pose for k, (_, _, pose) in enumerate(scans)}
    decoded = decode(msgs[0])
    fixed = apply_transform(scans[0][2], decoded.xyz)
    acc = ScanAccumulator(2.0, 10, 2_000_000, 0.02)
    stamp = [0]

    def add() -> None:
        stamp[0] += 10**8
        acc.add(fixed, decoded.rgb, None, stamp[0])

    cfg = Config().replace(**{"input.fixed_frame": "map", "accumulate.max_points": 2_000_000})
    pipe = StreamPipeline(cfg, segmenter=None)
    turn = [0]

    def ingest() -> None:
        k = turn[0] % len(msgs)
        turn[0] += 1
        if k == 0:
            pipe.reset("bench")
        pipe.ingest("points", msgs[k], lambda target, source, ns: poses[ns])

    out = {"points": num_points,
           "decode_ms": _cpu_ms(lambda: decode(msgs[0]), repeats),
           "transform_ms": _cpu_ms(lambda: apply_transform(scans[0][2], decoded.xyz), repeats),
           "accumulate_ms": _cpu_ms(add, repeats)}
    moving = [apply_transform(pose, xyz) for xyz, _, pose in scans]
    for key, max_points, new_scans in (("cloud_ms", 2_000_000, 1), ("cloud_stream_ms", 400_000, 3)):
        window, points = _window_cloud_ms(moving, [rgb for _, rgb, _ in scans], max_points,
                                          new_scans, max(3, repeats // 3))
        out[key] = window
        out["window_points" if new_scans == 1 else "stream_window_points"] = points
    out["ingest_ms"] = _cpu_ms(ingest, repeats)
    out["tf_accumulate_ms"] = out["transform_ms"] + out["accumulate_ms"]
    return out


def _window_cloud_ms(fixed_scans: list, rgbs: list, max_points: int, new_scans: int,
                     repeats: int) -> tuple[float, int]:
    """Thread-CPU ms of the window's ``cloud()`` (dedupe across the stored scans, once per
    segmentation) after ``new_scans`` new scans, median over ``repeats``, in a window of the
    ``accumulate`` defaults but ``max_points`` (2M: ten 100k-point scans; 400k, the default: four);
    the scans (N, 3) fixed frame cycle through ``fixed_scans``. Also the points stored."""
    from .accumulate import ScanAccumulator

    acc = ScanAccumulator(2.0, 10, max_points, 0.02)
    turn = [0]

    def add() -> None:
        k = turn[0]
        turn[0] += 1
        acc.add(fixed_scans[k % len(fixed_scans)], rgbs[k % len(rgbs)], None, (k + 1) * 10**8)

    for _ in range(10):   # a full window first
        add()
    acc.cloud()
    samples = []
    for _ in range(repeats + 1):
        for _ in range(new_scans):
            add()
        start = time.thread_time()
        acc.cloud()
        samples.append(time.thread_time() - start)
    return statistics.median(samples[1:]) * 1e3, acc.num_points


# Common PointCloud2 layouts: (name, [(field, offset, datatype)], point_step). Datatypes:
# 2 UINT8, 4 UINT16, 6 UINT32, 7 FLOAT32.
LAYOUTS = (
    ("xyz (12 B)", [("x", 0, 7), ("y", 4, 7), ("z", 8, 7)], 12),
    ("PCL PointXYZ (16 B)", [("x", 0, 7), ("y", 4, 7), ("z", 8, 7)], 16),
    ("PCL PointXYZI (32 B)", [("x", 0, 7), ("y", 4, 7), ("z", 8, 7), ("intensity", 16, 7)], 32),
    ("xyz rgb (16 B)", [("x", 0, 7), ("y", 4, 7), ("z", 8, 7), ("rgb", 12, 7)], 16),
    ("xyz rgb intensity (20 B)",
     [("x", 0, 7), ("y", 4, 7), ("z", 8, 7), ("rgb", 12, 7), ("intensity", 16, 7)], 20),
    ("PCL PointXYZRGB (32 B)", [("x", 0, 7), ("y", 4, 7), ("z", 8, 7), ("rgb", 16, 7)], 32),
    ("Velodyne xyz i ring time (22 B)", [("x", 0, 7), ("y", 4, 7), ("z", 8, 7),
                                         ("intensity", 12, 7), ("ring", 16, 4),
                                         ("time", 18, 7)], 22),
    ("Ouster (48 B)", [("x", 0, 7), ("y", 4, 7), ("z", 8, 7), ("intensity", 16, 7),
                       ("t", 20, 6), ("reflectivity", 24, 4), ("ring", 26, 4),
                       ("ambient", 28, 4), ("range", 32, 6)], 48),
    ("xyz intensity (16 B)", [("x", 0, 7), ("y", 4, 7), ("z", 8, 7), ("intensity", 12, 7)], 16),
    ("xyz intensity rgb (20 B)",
     [("x", 0, 7), ("y", 4, 7), ("z", 8, 7), ("intensity", 12, 7), ("rgb", 16, 7)], 20),
    ("RealSense organised xyz rgb 640x480 (16 B)",
     [("x", 0, 7), ("y", 4, 7), ("z", 8, 7), ("rgb", 12, 7)], 16),
)


def layout_cloud(name: str, fields: list, point_step: int, num_points: int) -> Any:
    """A rosbags PointCloud2 of ``num_points`` random finite points in the given layout."""
    from .cloud import ns_to_stamp
    from .msgs import MessageFactory, make_typestore

    factory = MessageFactory.for_rosbags(make_typestore("humble"))
    rng = np.random.default_rng(0)
    organised = "organised" in name
    height, width = (480, 640) if organised else (1, num_points)
    n = height * width
    data = rng.integers(0, 256, size=(n, point_step), dtype=np.uint8)
    for fname, offset, datatype in fields:
        if datatype == 7 and fname in ("x", "y", "z", "intensity", "time"):
            data[:, offset:offset + 4] = rng.uniform(-20, 20, n).astype("<f4").view(
                np.uint8).reshape(n, 4)
    header = factory("std_msgs/msg/Header", stamp=ns_to_stamp(factory, 0), frame_id="sensor")
    msg_fields = [factory("sensor_msgs/msg/PointField", name=f, offset=o, datatype=d, count=1)
                  for f, o, d in fields]
    return factory("sensor_msgs/msg/PointCloud2", header=header, height=height, width=width,
                   fields=msg_fields, is_bigendian=False, point_step=point_step,
                   row_step=point_step * width, data=factory.byte_data(data), is_dense=True)


DECODE_SIZES = (SCAN_POINTS, 1_000_000)
"""Cloud sizes of the layout decode table: a 100k-point scan (its buffer fits the cache, so the
copy it is measured against runs at cache speed) and a 1M-point one."""


def bench_decode_layouts(sizes: Sequence[int] = DECODE_SIZES, repeats: int = 9) -> list[dict]:
    """Decode vs one buffer copy for every layout of :data:`LAYOUTS` at every size of ``sizes``
    (thread CPU, medians); the organised 640x480 layout has its own size and runs once."""
    from .bench import compare
    from .cloud import decode

    rows = []
    for num_points in sizes:
        for name, fields, step in LAYOUTS:
            if "organised" in name and num_points != sizes[0]:
                continue
            msg = layout_cloud(name, fields, step, num_points)
            times = compare(lambda: decode(msg),
                            lambda: np.frombuffer(msg.data, np.uint8).copy(),
                            repeats if num_points <= SCAN_POINTS else max(3, repeats // 2))
            rows.append({"layout": name, "points": int(msg.width * msg.height),
                         "decode_ms": times["stage"] * 1e3, "copy_ms": times["baseline"] * 1e3,
                         "ratio": times["stage"] / times["baseline"]})
    return rows


def bench_streaming(models: Sequence[str] = ("geometric", "softgroup"), duration_s: float = 10.0,
                    input_hz: float = 10.0, segment_hz: float = 10.0,
                    num_points: int = SCAN_POINTS) -> list[dict]:
    """Stream ``input_hz`` scans of ``num_points`` points through the pipeline in real time for
    ``duration_s`` per method, with the node's thread layout (module docstring)."""
    from .bench import bench_point_model
    from .config import Config
    from .msgs import MessageFactory, make_typestore
    from .pipeline import TOPIC_INSTANCES, StreamPipeline
    from .segmenter import Segmenter

    factory = MessageFactory.for_rosbags(make_typestore("humble"))
    scans = _room_scans(num_points)
    rows = []
    for model in models:
        cfg = Config().replace(**{"model.name": model, "model.device": "cpu",
                                  "input.fixed_frame": "map", "segment.rate_hz": segment_hz})
        point_model, weights = bench_point_model(model, "cpu")
        pipe = StreamPipeline(cfg, Segmenter(cfg, point_model))
        poses: dict[int, np.ndarray] = {}
        mailbox: dict[str, Any] = {}
        cv = threading.Condition()
        stop = threading.Event()
        request = threading.Event()
        ingest_ms: list[float] = []
        ingest_cpu_ms: list[float] = []
        segment_cpu_ms: list[float] = []
        latency_ms: list[float] = []
        results: list[float] = []
        superseded = [0]

        def ingest_loop() -> None:
            while not stop.is_set():
                with cv:
                    if not mailbox:
                        cv.wait(timeout=0.05)
                    batch = dict(mailbox)
                    mailbox.clear()
                for msg in batch.values():
                    start, cpu = time.perf_counter(), time.thread_time()
                    pipe.ingest("points", msg, lambda t, s, ns: poses[ns])
                    ingest_ms.append((time.perf_counter() - start) * 1e3)
                    ingest_cpu_ms.append((time.thread_time() - cpu) * 1e3)
                if pipe.poll(time.monotonic()):
                    request.set()

        def segment_loop() -> None:
            while not stop.is_set():
                if not request.wait(timeout=0.05):
                    continue
                request.clear()
                cpu = time.thread_time()
                result = pipe.segment()
                if result is None:
                    continue
                pipe.output_messages(factory, result, wanted={TOPIC_INSTANCES})
                now = time.time_ns()
                segment_cpu_ms.append((time.thread_time() - cpu) * 1e3)
                results.append(time.monotonic())
                latency_ms.append((now - result.newest_stamp_ns) / 1e6)

        threads = [threading.Thread(target=ingest_loop, daemon=True),
                   threading.Thread(target=segment_loop, daemon=True)]
        for t in threads:
            t.start()
        period = 1.0 / input_hz
        start = time.monotonic()
        sent = 0
        while time.monotonic() - start < duration_s:
            xyz, rgb, pose = scans[sent % len(scans)]
            stamp_ns = time.time_ns()
            poses[stamp_ns] = pose
            msg = _scan_message(factory, xyz, rgb, stamp_ns)
            with cv:
                if "points" in mailbox:
                    superseded[0] += 1
                mailbox["points"] = msg
                cv.notify()
            sent += 1
            time.sleep(max(0.0, start + sent * period - time.monotonic()))
        stop.set()
        for t in threads:
            t.join(timeout=30)
        span = (results[-1] - results[0]) if len(results) > 1 else float("nan")
        rows.append({
            "model": model, "weights": weights, "scans_sent": sent,
            "scans_lost": superseded[0], "scans_ingested": len(ingest_ms),
            "ingest_ms_median": statistics.median(ingest_ms) if ingest_ms else float("nan"),
            "ingest_ms_p95": float(np.percentile(ingest_ms, 95)) if ingest_ms else float("nan"),
            "ingest_cpu_ms_median": (statistics.median(ingest_cpu_ms) if ingest_cpu_ms
                                     else float("nan")),
            "segment_cpu_ms_median": (statistics.median(segment_cpu_ms) if segment_cpu_ms
                                      else float("nan")),
            "load_average": os.getloadavg()[0],
            "results": len(results),
            "result_hz": (len(results) - 1) / span if len(results) > 1 else float("nan"),
            "latency_ms_median": statistics.median(latency_ms) if latency_ms else float("nan"),
            "latency_ms_p95": float(np.percentile(latency_ms, 95)) if latency_ms else float("nan"),
            "segment_ms_last": pipe.stats.last_latency_ms.get("segment.total", float("nan")),
        })
    return rows


def bench_segment_cpu(models: Sequence[str] = ("geometric", "softgroup"), results: int = 6,
                      scans_per_result: int = 3, num_points: int = SCAN_POINTS) -> list[dict]:
    """CPU per result of the streaming path without real time: per result ``scans_per_result``
    scans are ingested (10 Hz stamps; about what a 3 Hz segmentation sees at 10 Hz input), then
    the window's ``cloud()``, :meth:`StreamPipeline.segment` and the ``instances`` output run on
    this thread. Thread CPU ms, medians over ``results`` results after two warm-up results, per
    method; so a figure that machine load does not move much, unlike ``bench_streaming``'s rates."""
    from .bench import bench_point_model
    from .config import Config
    from .msgs import MessageFactory, make_typestore
    from .pipeline import TOPIC_INSTANCES, StreamPipeline
    from .segmenter import Segmenter

    factory = MessageFactory.for_rosbags(make_typestore("humble"))
    scans = _room_scans(num_points)
    rows = []
    for model in models:
        cfg = Config().replace(**{"model.name": model, "model.device": "cpu",
                                  "input.fixed_frame": "map"})
        pipe = StreamPipeline(cfg, Segmenter(cfg, bench_point_model(model, "cpu")[0]))
        poses: dict[int, np.ndarray] = {}
        sent = 0
        window_ms, result_ms = [], []
        for turn in range(results + 2):
            for _ in range(scans_per_result):
                xyz, rgb, pose = scans[sent % len(scans)]
                sent += 1
                poses[sent * 10**8] = pose
                pipe.ingest("points", _scan_message(factory, xyz, rgb, sent * 10**8),
                            lambda t, f, ns: poses[ns])
            start = time.thread_time()
            with pipe._lock:
                pipe.accumulator.cloud()
            middle = time.thread_time()
            result = pipe.segment()
            pipe.output_messages(factory, result, wanted={TOPIC_INSTANCES})
            if turn >= 2:
                window_ms.append((middle - start) * 1e3)
                result_ms.append((time.thread_time() - start) * 1e3)
        rows.append({"model": model, "results": results, "scans_per_result": scans_per_result,
                     "cloud_ms": statistics.median(window_ms),
                     "result_cpu_ms": statistics.median(result_ms)})
    return rows


def _baseline_run(tree: str, what: str) -> Any:
    """Run ``what`` ("ingest", "layouts" or "segment") of this module's benchmarks on the code in ``tree``,
    in a subprocess; returns its JSON answer. This file is copied in (the tree may predate it)."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    code = (f"import sys, json, importlib.util; spec = importlib.util.spec_from_file_location("
            f"'ros2_inst3d._bench_stream_copy', {str(Path(__file__))!r}); "
            f"m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
            f"print(json.dumps({{'ingest': m.bench_ingest, 'layouts': m.bench_decode_layouts, "
            f"'segment': m.bench_segment_cpu}}[{what!r}]()))")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=str(tree), check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def before_after(tree: str, rounds: int = 3) -> dict:
    """This tree's ingest and layout-decode figures against those of ``tree``, interleaved
    ``rounds`` times (before, after, before, ...); medians per figure and after/before ratios."""
    before_ingest, after_ingest, before_dec, after_dec = [], [], [], []
    before_segment, after_segment = [], []
    for _ in range(rounds):
        before_ingest.append(_baseline_run(tree, "ingest"))
        after_ingest.append(bench_ingest())
        before_dec.append(_baseline_run(tree, "layouts"))
        after_dec.append(bench_decode_layouts())
        before_segment.append(_baseline_run(tree, "segment"))
        after_segment.append(bench_segment_cpu())
    keys = ("decode_ms", "transform_ms", "accumulate_ms", "tf_accumulate_ms", "cloud_ms",
            "cloud_stream_ms", "ingest_ms")
    ingest = {k: {"before": statistics.median(r[k] for r in before_ingest),
                  "after": statistics.median(r[k] for r in after_ingest)} for k in keys}
    for v in ingest.values():
        v["speedup"] = v["before"] / v["after"]
    layouts = []
    for i, row in enumerate(after_dec[0]):
        b = statistics.median(r[i]["ratio"] for r in before_dec)
        a = statistics.median(r[i]["ratio"] for r in after_dec)
        layouts.append({"layout": row["layout"], "points": row["points"],
                        "ratio_before": b, "ratio_after": a,
                        "decode_ms_before": statistics.median(r[i]["decode_ms"] for r in before_dec),
                        "decode_ms_after": statistics.median(r[i]["decode_ms"] for r in after_dec)})
    segment = []
    for i, row in enumerate(after_segment[0]):
        entry = {"model": row["model"]}
        for key in ("cloud_ms", "result_cpu_ms"):
            b = statistics.median(r[i][key] for r in before_segment)
            a = statistics.median(r[i][key] for r in after_segment)
            entry.update({f"{key}_before": b, f"{key}_after": a, f"{key}_speedup": b / a})
        segment.append(entry)
    return {"baseline_tree": str(tree), "rounds": rounds, "ingest": ingest, "layouts": layouts,
            "segment": segment}


def format_report(report: dict) -> str:
    lines = []
    if "ingest" in report:
        r = report["ingest"]
        lines.append(f"ingest of one {r['points']}-point scan, thread CPU ms (median): decode "
                     f"{r['decode_ms']:.2f}, transform {r['transform_ms']:.2f}, accumulate "
                     f"{r['accumulate_ms']:.2f} (TF + accumulate {r['tf_accumulate_ms']:.2f}), "
                     f"whole ingest {r['ingest_ms']:.2f}; window cloud() of "
                     f"{r['window_points']} stored points after 1 new scan {r['cloud_ms']:.1f}, "
                     f"of {r['stream_window_points']} after 3 {r['cloud_stream_ms']:.1f}")
    if "layouts" in report:
        lines.append("\n| layout | points | decode ms | copy ms | ratio |\n|---|---|---|---|---|")
        lines += [f"| {r['layout']} | {r['points']} | {r['decode_ms']:.2f} | {r['copy_ms']:.2f} | "
                  f"{r['ratio']:.2f} |" for r in report["layouts"]]
    if "before_after" in report:
        ba = report["before_after"]
        lines.append(f"\nbefore ({ba['baseline_tree']}) / after, {ba['rounds']} interleaved rounds:")
        lines.append("| stage | before ms | after ms | speed-up |\n|---|---|---|---|")
        lines += [f"| {k} | {v['before']:.2f} | {v['after']:.2f} | {v['speedup']:.2f}x |"
                  for k, v in ba["ingest"].items()]
        lines.append("\n| method | window cloud() ms before / after | CPU ms per result before / "
                     "after | speed-up |\n|---|---|---|---|")
        lines += [f"| {r['model']} | {r['cloud_ms_before']:.1f} / {r['cloud_ms_after']:.1f} | "
                  f"{r['result_cpu_ms_before']:.0f} / {r['result_cpu_ms_after']:.0f} | "
                  f"{r['result_cpu_ms_speedup']:.2f}x |" for r in ba["segment"]]
        lines.append("\n| layout | points | decode/copy before | after |\n|---|---|---|---|")
        lines += [f"| {r['layout']} | {r['points']} | {r['ratio_before']:.2f} | "
                  f"{r['ratio_after']:.2f} |" for r in ba["layouts"]]
    if "streaming" in report:
        lines.append("\n| method | scans sent | lost | ingest wall ms (median / p95) | ingest CPU "
                     "ms | results/s | latency ms (median / p95) | segment+outputs CPU ms | "
                     "load avg |\n|---|---|---|---|---|---|---|---|---|")
        lines += [f"| {r['model']} | {r['scans_sent']} | {r['scans_lost']} | "
                  f"{r['ingest_ms_median']:.1f} / {r['ingest_ms_p95']:.1f} | "
                  f"{r['ingest_cpu_ms_median']:.1f} | {r['result_hz']:.2f} | "
                  f"{r['latency_ms_median']:.0f} / {r['latency_ms_p95']:.0f} | "
                  f"{r['segment_cpu_ms_median']:.0f} | {r['load_average']:.1f} |"
                  for r in report["streaming"]]
    return "\n".join(lines)


def run_stream_benchmarks(args: Any) -> dict:
    """``bench --stream``: ingest stages, layout decode, optional before/after, streaming."""
    report: dict[str, Any] = {"ingest": bench_ingest(), "layouts": bench_decode_layouts()}
    baseline = getattr(args, "baseline_tree", None)
    if baseline:
        report["before_after"] = before_after(str(baseline))
    report["streaming"] = bench_streaming(
        models=getattr(args, "models", None) or ("geometric", "pointgroup", "softgroup"),
        duration_s=getattr(args, "duration", 10.0))
    print(format_report(report))
    return report
