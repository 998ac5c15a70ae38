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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .model.registry import BENCHMARK_METHODS


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


def load_baseline_module(tree: str | Path, relative: str) -> Any:
    """``relative`` (e.g. ``ros2_inst3d/model/geometric.py``) of the checkout ``tree`` loaded
    as a private module of this package, so the before/after benchmarks time both versions in
    one process; its relative imports resolve to this tree's modules."""
    import importlib.util
    import sys

    path = Path(tree) / relative
    if not path.is_file():
        raise FileNotFoundError(f"{tree} holds no {relative}")
    dotted = relative.removesuffix(".py").replace("/", ".")
    package, _, leaf = dotted.rpartition(".")
    spec = importlib.util.spec_from_file_location(f"{package}._{leaf}_baseline", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


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


PIPELINE_MODELS = BENCHMARK_METHODS
"""Default methods of the pipeline benchmark (``registry.METHODS`` entries with ``benchmark``)."""
BENCH_SCENE_SEED = 200_010
"""Generated room of the pipeline benchmark: 112,780 points (default ``SceneParams``), 107,901
after the accumulator's 2 cm dedupe, 21 instances; deterministic from the seed."""

PIPELINE_STAGES = ("decode", "accumulate", "crop", "voxelize", "planes", "backbone", "grouping",
                   "refinement", "fusion", "encode")
"""Row order of the pipeline table. ``voxelize`` is the learned models' input stage (centring,
features, voxels, copy to the device; ``LearnedModel`` reports it as ``input``); ``planes`` is the
geometric baseline's RANSAC floor/wall removal; ``crop`` the ROI crop and point cap."""

STAGE_DESCRIPTIONS = {
    "decode": "PointCloud2 -> Scan",
    "accumulate": "add + dedupe",
    "crop": "ROI crop, point cap",
    "voxelize": "centre, features, voxels",
    "planes": "RANSAC floor/walls",
    "backbone": "sparse U-Net + heads",
    "grouping": "clusters / proposals",
    "refinement": "proposal scoring",
    "fusion": "filters, paste by score",
    "encode": "cloud + InstanceArray",
}
def default_devices() -> list[str]:
    """``cpu``, plus ``cuda`` when torch sees a GPU and spconv is a CUDA build."""
    from .model.backbone import cuda_usable

    return ["cpu"] + (["cuda"] if cuda_usable() else [])


def bench_point_model(name: str, device: str = "cpu", cpu_threads: int | None = None,
                      augmented_views: int | None = None) -> tuple[Any, str]:
    """The model ``name`` for the pipeline benchmark and a description of its weights.

    cpu_threads / augmented_views: ``model.cpu_threads`` / ``model.augmented_views`` (default:
    the config defaults, as the node runs).
    A model-free method needs none. A learned model uses its shipped demo weights when this installation
    has them (``models/<name>_synthetic.pth``), else weights freshly initialised (torch seed 0)
    from ``config/models/<name>_synthetic.yaml``: the same network and cost per point, but its
    proposals, and so the grouping and refinement work, are not those of a trained model.
    """
    from .config import Config, ModelConfig
    from .model.registry import method

    if not method(name).needs_weights:
        from .segmenter import build_point_model

        return build_point_model(Config().replace(**{"model.name": name})), "none needed"
    from .classes import SCANNET20_CLASSES
    from .model.backbone import resolve_device
    from .model.inference import (LearnedModel, apply_cpu_threads, shipped_model_config,
                                  shipped_weights)

    settings = {key: value for key, value in (("cpu_threads", cpu_threads),
                                              ("augmented_views", augmented_views))
                if value is not None}
    model_cfg = ModelConfig(name=name, device=device, **settings)
    weights = shipped_weights(name)
    if weights is not None:
        return LearnedModel.from_config(model_cfg), f"shipped {weights.name}"
    import torch

    from .model.registry import build_network, load_model_config

    apply_cpu_threads(model_cfg.cpu_threads)
    yaml_path = shipped_model_config(name)
    torch.manual_seed(0)
    network = build_network(load_model_config(yaml_path))
    classes = (SCANNET20_CLASSES if network.semantic_classes == len(SCANNET20_CLASSES)
               else tuple(f"class{i}" for i in range(network.semantic_classes)))
    model = LearnedModel(network, classes, resolve_device(device), source="random init",
                         augmented_views=model_cfg.augmented_views)
    return model, (f"random init from {yaml_path.name} (timing only: no {name} weights are "
                   "shipped, and an untrained network's proposals, hence the grouping and "
                   "refinement work, differ from a trained one's)")


def bench_pipeline(seed: int = BENCH_SCENE_SEED, repeats: int = 3, model: str = "geometric",
                   device: str = "cpu", scene: Any = None, cpu_threads: int | None = None,
                   augmented_views: int | None = None) -> dict:
    """Per-stage time of the node's path on one generated room, as one scan.

    Stages (:data:`PIPELINE_STAGES`): decode (PointCloud2 → Scan), accumulate (add + cloud()
    with dedupe), the segmenter's own (crop, the model's stages, fusion) and encode (labelled
    PointCloud2 + InstanceArray). One untimed warm-up run, then medians of wall time over
    ``repeats`` runs; each stage's share is its median over the sum of the medians. ``cpu_ms``
    is the median CPU time of the whole process (all its threads) per run: threads that wait
    for a core they share with other processes show there.

    scene: a generated ``Scene`` to reuse (default ``generate_scene(seed)``). cpu_threads: the
    learned model's ``model.cpu_threads`` (default: the config default). augmented_views: its
    ``model.augmented_views`` (default: the config default). Returns ``{model, device,
    cpu_threads, augmented_views, weights, points, accumulated_points, instances, total_ms,
    cpu_ms, stages: {name: {ms, share}}}`` with only the stages the model has, in table order.
    """
    from .cloud import decode, encode_xyz, ns_to_stamp
    from .config import Config
    from .synthetic.scene import generate_scene
    from .msgs import MessageFactory, make_typestore
    from .outputs import instance_array, labelled_cloud
    from .pipeline import StreamPipeline
    from .segmenter import Segmenter

    scene = scene if scene is not None else generate_scene(seed)
    factory = MessageFactory.for_rosbags(make_typestore("humble"))
    header = factory("std_msgs/msg/Header", stamp=ns_to_stamp(factory, 1), frame_id="map")
    msg = encode_xyz(factory, header, scene.xyz, scene.rgb)
    cfg = Config().replace(**{"model.name": model, "model.device": device})
    if cpu_threads is not None:
        cfg = cfg.replace(**{"model.cpu_threads": int(cpu_threads)})
    if augmented_views is not None:
        cfg = cfg.replace(**{"model.augmented_views": int(augmented_views)})
    point_model, weights = bench_point_model(model, device, cfg.model.cpu_threads,
                                             cfg.model.augmented_views)
    segmenter = Segmenter(cfg, point_model)
    stages: dict[str, list[float]] = {}

    def record(name: str, since: float) -> float:
        now = time.perf_counter()
        stages.setdefault(name, []).append((now - since) * 1e3)
        return now

    cpu_ms: list[float] = []
    for _ in range(repeats + 1):
        pipe = StreamPipeline(cfg, segmenter)
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        scan = decode(msg)
        t0 = record("decode", t0)
        pipe.accumulator.add(scan.xyz, scan.rgb, None, 1)
        cloud = pipe.accumulator.cloud()
        record("accumulate", t0)
        inst = segmenter.segment(cloud.xyz, cloud.rgb)
        for name, ms in inst.timing_ms.items():
            if name != "total":
                stages.setdefault(name, []).append(ms)
        t0 = time.perf_counter()
        labelled_cloud(factory, inst, header)
        instance_array(factory, inst, header, 1, model)
        record("encode", t0)
        cpu_ms.append((time.process_time() - cpu0) * 1e3)
    # The first run (lazy imports, allocator and kernel warm-up) is not timed.
    medians = {name: statistics.median(v[1:]) for name, v in stages.items()}
    order = [s for s in PIPELINE_STAGES if s in medians] + sorted(set(medians) - set(PIPELINE_STAGES))
    total = sum(medians.values())
    return {"model": model, "device": device if model != "geometric" else "cpu",
            "cpu_threads": int(cfg.model.cpu_threads),
            "augmented_views": int(cfg.model.augmented_views),
            "weights": weights, "points": len(scene.xyz),
            "accumulated_points": len(cloud.xyz), "instances": int(inst.num_instances),
            "total_ms": total, "cpu_ms": statistics.median(cpu_ms[1:]),
            "stages": {name: {"ms": medians[name], "share": medians[name] / total}
                       for name in order}}


def bench_methods(models: Sequence[str] = PIPELINE_MODELS, devices: Sequence[str] = ("cpu",),
                  repeats: int = 3, seed: int = BENCH_SCENE_SEED, progress: bool = False,
                  cpu_threads: Sequence[int] | None = None,
                  scene_file: str | Path | None = None,
                  augmented_views: Sequence[int] | None = None) -> dict:
    """:func:`bench_pipeline` of every model on every device, on one generated room.

    The geometric baseline is numpy-only and runs once (on CPU) whatever ``devices`` says.
    cpu_threads: torch CPU thread counts to time each learned model on (``model.cpu_threads``;
    default: the config default only). augmented_views: view counts to time each model that
    averages test-time views on (``model.augmented_views``; default: the config's).
    scene_file: a saved room (any file ``read_scene`` reads, e.g. ``samples/demo_room.npz``)
    instead of generating one: generating needs open3d, which a GPU host may lack. Returns
    ``{scene: {seed, file, points}, stages: PIPELINE_STAGES, runs: [bench_pipeline ...]}``
    (seed None with a file, file None without).
    """
    if scene_file is not None:
        from .data.datasets import read_scene

        scene = read_scene(scene_file)
        if scene.rgb is None:
            raise ValueError(f"{scene_file}: the pipeline benchmark needs a room with colour")
    else:
        from .synthetic.scene import generate_scene

        scene = generate_scene(seed)
    from .model.registry import averages_views

    runs = []
    thread_counts = list(cpu_threads) if cpu_threads else [None]
    for model in models:
        view_counts = (list(augmented_views) if augmented_views and averages_views(model)
                       else [None])
        for device in (["cpu"] if model == "geometric" else devices):
            for threads in ([None] if model == "geometric" or device != "cpu"
                            else thread_counts):
                for views in view_counts:
                    if progress:
                        extra = "" if threads is None else f" with {threads} torch thread(s)"
                        extra += "" if views is None else f", {views} view(s)"
                        print(f"pipeline: {model} on {device}{extra} ...", flush=True)
                    runs.append(bench_pipeline(seed, repeats, model, device, scene=scene,
                                               cpu_threads=threads, augmented_views=views))
    return {"scene": {"seed": None if scene_file is not None else int(seed),
                      "file": None if scene_file is None else str(scene_file),
                      "points": len(scene.xyz)},
            "stages": list(PIPELINE_STAGES), "repeats": int(repeats), "runs": runs}


def format_pipeline(report: dict) -> str:
    """The pipeline report as a table: one row per stage, ms and share per model/device ('-'
    where a method has no such stage), then the total and each run's weights."""
    runs = report["runs"]
    learned = [r for r in runs if r["model"] != "geometric"]
    several_threads = len({r["cpu_threads"] for r in learned}) > 1
    several_views = len({r.get("augmented_views", 1) for r in learned}) > 1

    def head(run: dict) -> str:
        name = f"{run['model']}/{run['device']}"
        if run["model"] == "geometric":
            return name
        return (name + (f"/{run['cpu_threads']}t" if several_threads else "")
                + (f"/{run.get('augmented_views', 1)}v" if several_views else ""))

    heads = [head(r) for r in runs]
    width = max([16, *(len(h) + 2 for h in heads)])
    desc = max(len(d) for d in STAGE_DESCRIPTIONS.values())
    first = runs[0] if runs else {"points": report["scene"]["points"], "accumulated_points": 0}
    origin = (f"room {report['scene']['file']}" if report["scene"].get("file")
              else f"generated room (seed {report['scene']['seed']})")
    lines = [(f"pipeline: one {first['points']}-point {origin}, "
              f"{first['accumulated_points']} points after dedupe, "
              f"median wall time of {report['repeats']} runs after a warm-up")]
    lines.append(f"{'stage':<12}{'':<{desc + 2}}" + "".join(f"{h:>{width}}" for h in heads))
    lines.append(f"{'':<12}{'':<{desc + 2}}" + "".join(f"{'ms    share':>{width}}" for _ in heads))
    names = [s for s in report["stages"]]
    names += sorted({n for r in runs for n in r["stages"]} - set(names))
    for name in names:
        if not any(name in r["stages"] for r in runs):
            continue
        cells = []
        for r in runs:
            row = r["stages"].get(name)
            cells.append(f"{'-':>{width - 8}}{'':8}" if row is None
                         else f"{row['ms']:>{width - 8}.1f}{row['share']:>8.1%}")
        lines.append(f"{name:<12}{STAGE_DESCRIPTIONS.get(name, ''):<{desc + 2}}" + "".join(cells))
    lines.append(f"{'total':<12}{'':<{desc + 2}}"
                 + "".join(f"{r['total_ms']:>{width - 8}.1f}{1:>8.0%}" for r in runs))
    lines.append(f"{'cpu':<12}{'process CPU time per run':<{desc + 2}}"
                 + "".join(f"{r['cpu_ms']:>{width - 8}.1f}{'':8}" for r in runs))
    lines.append(f"{'instances':<12}{'':<{desc + 2}}"
                 + "".join(f"{r['instances']:>{width}}" for r in runs))
    lines += [f"weights of {h}: {r['weights']}" for h, r in zip(heads, runs)]
    return "\n".join(lines)


def print_pipeline(report: dict) -> None:
    print(format_pipeline(report))
