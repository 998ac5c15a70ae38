"""``ros2-inst3d``: the offline front end (files, bags, data, training, evaluation, benchmarks).

Each command parses its arguments here and calls one function of the core library; nothing else
lives in this file. Imports are lazy so ``ros2-inst3d --help`` is instant.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from .data.inputs import VIEW_COUNTS
from .model.registry import BENCHMARK_METHODS, METHOD_NAMES

log = logging.getLogger("ros2_inst3d")

# Errors the user can fix: printed as one line, exit code 2, no traceback.
_USER_ERRORS: tuple[type[BaseException], ...] = (FileNotFoundError, IsADirectoryError,
                                                  NotADirectoryError, FileExistsError,
                                                  PermissionError)


def _user_errors() -> tuple[type[BaseException], ...]:
    from .config import ConfigError

    errors = [*_USER_ERRORS, ConfigError, ValueError]
    try:
        from .io import CloudFileError

        errors.append(CloudFileError)
    except ImportError:  # pragma: no cover - io imports open3d lazily; kept for robustness
        pass
    from .bag import BagError
    from .segmenter import SegmentationError

    errors += [SegmentationError, BagError]
    return tuple(errors)


def _load_config(args: argparse.Namespace):
    from .config import load_config

    overrides = {}
    if getattr(args, "model", None):
        overrides["model.name"] = args.model
    if getattr(args, "checkpoint", None):
        overrides["model.checkpoint"] = str(args.checkpoint)
    if getattr(args, "device", None):
        overrides["model.device"] = args.device
    if getattr(args, "model_config", None):
        overrides["model.config"] = str(args.model_config)
    if getattr(args, "views", None):
        overrides["model.augmented_views"] = args.views
    return load_config(args.config, overrides)


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", type=Path,
                   help="pipeline config YAML (see `ros2-inst3d params`; a path, or a name in "
                   "the package's config/, e.g. segment); default: the built-in defaults")
    p.add_argument("--model", choices=METHOD_NAMES,
                   help="model.name override (default: softgroup, or the config's)")
    p.add_argument("--model-config", metavar="MODEL_YAML",
                   help="model.config override: the model YAML (a path, or a name in the "
                   "package's config/models/, e.g. softgroup_scannet); default: the one in "
                   "the checkpoint")
    p.add_argument("--checkpoint", type=Path,
                   help="model.checkpoint override (default: the shipped weights of the method)")
    p.add_argument("--device", help="model.device override: auto, cpu, cuda, cuda:N "
                   "(default: auto)")
    p.add_argument("--views", type=int, choices=VIEW_COUNTS,
                   help="model.augmented_views override: test-time views of softgroup and "
                   "pointgroup (default: the config's, 1; demo: 4)")


def count_noun(count: int, noun: str) -> str:
    """``1 instance``, ``0 instances``, ``3 instances``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def print_instance_table(inst) -> None:
    """A human-readable table of one result (stdout)."""
    print(f"{count_noun(inst.num_instances, 'instance')} in {len(inst.xyz)} points")
    print(f"{'id':>4}  {'class':<16}{'score':>6}{'points':>8}  centroid (m)            size (m)")
    for k in range(inst.num_instances):
        box = inst.obb(k)
        c = inst.centroid(k)
        name = inst.class_name(k)
        print(f"{int(inst.ids[k]):>4}  {name:<16}{float(inst.scores[k]):>6.2f}"
              f"{len(inst.indices[k]):>8}  ({c[0]:6.2f},{c[1]:6.2f},{c[2]:5.2f})  "
              f"{box.size[0]:4.2f} x {box.size[1]:4.2f} x {box.size[2]:4.2f}")
    timing = ", ".join(f"{k} {v:.1f}" for k, v in inst.timing_ms.items())
    print(f"timing (ms): {timing}")


def cloud_fields(cloud) -> dict:
    """The per-point fields of a read cloud that models may use (intensity, ring/channel)."""
    from .cloud import RING_FIELDS

    fields = {} if cloud.intensity is None else {"intensity": cloud.intensity}
    fields.update({k: v for k, v in cloud.extra.items() if k in RING_FIELDS and v.ndim == 1})
    return fields


def gravity_from_args(args: argparse.Namespace, xyz):
    """The --transform/--up/--level matrix for ``xyz`` (None without those options); logged."""
    from .gravity import gravity_transform

    matrix = gravity_transform(xyz, transform=getattr(args, "transform", None),
                               up=getattr(args, "up", None), level=getattr(args, "level", False))
    if matrix is not None:
        rows = "; ".join(" ".join(f"{v:.4f}" for v in row) for row in matrix)
        log.info("cloud transformed to z up by [%s]", rows)
    return matrix


def segment_file(input_path: Path, cfg, outdir: Path, render: bool = False,
                 args: argparse.Namespace | None = None) -> dict:
    """Segment one cloud file and write the result files; returns their paths.

    ``args`` may carry --up/--transform/--level: the cloud is rotated to z up first and the
    results (PLY, boxes, PNG) are in that frame.
    """
    import time

    from .io import read_cloud, write_results
    from .segmenter import Segmenter
    from .transforms import apply_transform

    t0 = time.perf_counter()
    cloud = read_cloud(input_path)
    read_ms = (time.perf_counter() - t0) * 1e3
    if cloud.dropped_non_finite:
        log.warning("%s: dropped %d points with non-finite coordinates", input_path,
                    cloud.dropped_non_finite)
    xyz = cloud.xyz
    if args is not None:
        matrix = gravity_from_args(args, xyz)
        if matrix is not None:
            xyz = apply_transform(matrix, xyz)
    segmenter = Segmenter(cfg)
    inst = segmenter.segment(xyz, cloud.rgb, fields=cloud_fields(cloud))
    inst.timing_ms = {"read": read_ms, **inst.timing_ms}
    stem = input_path.name.split(".")[0]
    paths = write_results(outdir, stem, inst, inst.timing_ms, model_name=segmenter.model_name,
                          source=cloud)
    if render:
        from .atomic import atomic_file
        from .outputs import instance_colors
        from .render import render_instances_png

        # point_instance holds instance ids (-1 = none), as write_results colours them.
        colors = instance_colors(inst.point_instance)
        png = outdir / f"{stem}.instances.png"
        with atomic_file(png) as tmp:
            render_instances_png(
                tmp, inst.xyz, colors,
                f"{stem}: {count_noun(inst.num_instances, 'instance')} ({segmenter.model_name})",
                boxes=[inst.obb(k) for k in range(inst.num_instances)],
                box_colors=instance_colors(inst.ids))
        paths["png"] = png
    print_instance_table(inst)
    for kind, path in paths.items():
        print(f"wrote {kind}: {path}")
    return paths


def cmd_segment(args: argparse.Namespace) -> int:
    cfg = _load_config(args)
    segment_file(args.input, cfg, args.outdir, render=args.png, args=args)
    return 0


# The demo is offline, where the test-time views are worth their cost (README: Accuracy on
# generated scenes, session 13: the demo room 13 -> 14 of 19 objects found).
DEMO_VIEWS = 4


def cmd_demo(args: argparse.Namespace) -> int:
    from .model.registry import averages_views
    from .resources import data_file

    cfg = _load_config(args)
    with_views = averages_views(cfg.model.name)
    if args.views is None and with_views:
        cfg = cfg.replace(**{"model.augmented_views": DEMO_VIEWS})
    scene = data_file("samples", "demo_room.npz")
    views = cfg.model.augmented_views
    print(f"demo: segmenting the bundled scene {scene.name} with model '{cfg.model.name}'"
          + (f" ({views} test-time views)" if views > 1 and with_views else ""))
    segment_file(scene, cfg, args.outdir, render=True)
    return 0


def cmd_params(args: argparse.Namespace) -> int:
    from .config import markdown_table, ros_parameter_yaml, schema

    if args.markdown:
        print(markdown_table())
    elif args.yaml:
        print(ros_parameter_yaml(), end="")
    else:
        for leaf in schema():
            print(f"{leaf.name} = {leaf.default!r}  # {leaf.doc}")
    return 0


def run_benchmarks(args: argparse.Namespace) -> dict:
    """The ``bench`` command: run the stage benchmarks, print tables, return the report.

    ``args``: ``points`` (cloud sizes for decode), ``repeats``, ``decode`` (decode only),
    ``pipeline`` (pipeline only), ``models`` and ``devices`` of the pipeline benchmark (default
    :data:`bench.PIPELINE_MODELS` and :func:`bench.default_devices`), ``seed`` (its generated room).
    """
    from .bench import (BENCH_SCENE_SEED, PIPELINE_MODELS, bench_decode, bench_methods,
                        default_devices, print_pipeline)

    report: dict[str, Any] = {}
    if getattr(args, "tracking", False):
        from .tracking_eval import TRACKING_MODELS, bench_tracking, format_tracking

        report["tracking"] = bench_tracking(
            models=getattr(args, "models", None) or TRACKING_MODELS,
            sensors=getattr(args, "sensors", None) or ("rgbd", "lidar"),
            num_sequences=getattr(args, "sequences", 3), progress=True)
        print(format_tracking(report["tracking"]))
        return report
    if getattr(args, "stream", False):
        from .bench_stream import run_stream_benchmarks

        report["stream"] = run_stream_benchmarks(args)
        return report
    if getattr(args, "seed", None) is not None and getattr(args, "scene", None) is not None:
        raise ValueError("--seed picks a generated room and --scene a saved one: give one")
    if any(n < 1 for n in getattr(args, "cpu_threads", None) or ()):
        raise ValueError(f"--cpu-threads takes thread counts >= 1, got {args.cpu_threads}")
    pipeline_only = getattr(args, "pipeline", False)
    if not pipeline_only:
        report["decode"] = []
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
        print()
        report["pipeline"] = bench_methods(
            models=getattr(args, "models", None) or PIPELINE_MODELS,
            devices=getattr(args, "devices", None) or default_devices(),
            repeats=args.repeats,
            seed=BENCH_SCENE_SEED if getattr(args, "seed", None) is None else args.seed,
            progress=True, cpu_threads=getattr(args, "cpu_threads", None),
            scene_file=getattr(args, "scene", None),
            augmented_views=getattr(args, "augmented_views", None))
        print_pipeline(report["pipeline"])
    if not (getattr(args, "decode", False) or pipeline_only):
        from .ops.bench import bench_ops, format_bench

        report["ops"] = bench_ops()
        print("\ngrouping ops (CPU path, 100k points):")
        print(format_bench(report["ops"]))
    return report


def cmd_bench(args: argparse.Namespace) -> int:
    import json

    report = run_benchmarks(args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
        print(f"wrote {args.json}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """``ros2-inst3d eval``: ``--pred PRED_DIR --gt GT_DIR`` scores prediction files, ``--data``
    runs the configured model; prints the table, writes ``--json`` and the PR-curve PNG
    (``--plot``, default beside the JSON as ``<stem>_pr.png``)."""
    from .evaluation import evaluate_dirs, evaluate_model, report

    plot = args.plot
    if plot is None and args.json is not None:
        plot = args.json.with_name(args.json.stem + "_pr.png")
    if args.pred is not None or args.gt is not None:
        if args.pred is None or args.gt is None:
            raise FileNotFoundError("give both --pred PRED_DIR and --gt GT_DIR (or -c/--data)")
        result = evaluate_dirs(args.pred, args.gt, args.class_agnostic, return_result=True)
        report(result, json_out=args.json, plot_out=plot)
        return 0
    if args.data is None:
        raise FileNotFoundError("give --data DIR (scene .npz files) or --pred/--gt directories")
    cfg = _load_config(args)
    from functools import partial

    gravity = partial(gravity_from_args, args)
    if args.sweep_scores:
        return _sweep_scores(cfg, args, gravity)
    result = evaluate_model(cfg, args.data, class_agnostic=args.class_agnostic, limit=args.limit,
                            gravity=gravity, no_color=args.no_color)
    report(result, json_out=args.json, plot_out=plot)
    return 0


def _sweep_scores(cfg, args: argparse.Namespace, gravity=None) -> int:
    """``eval --data DIR --sweep-scores 0.05,0.1,...``: one row per score threshold."""
    import json

    from .evaluation import sweep_score_thresholds

    try:
        thresholds = [float(t) for t in args.sweep_scores.split(",") if t.strip()]
    except ValueError:
        raise ValueError(f"--sweep-scores takes numbers separated by commas, got "
                         f"{args.sweep_scores!r}") from None
    if not thresholds or not all(0.0 <= t <= 1.0 for t in thresholds):
        raise ValueError(f"--sweep-scores needs thresholds in [0, 1], got {args.sweep_scores!r}")
    rows = sweep_score_thresholds(cfg, args.data, thresholds, limit=args.limit, gravity=gravity,
                                  no_color=args.no_color)
    keys = ("score_threshold", "AP", "AP50", "AP25", "agnostic_AP", "agnostic_AP50",
            "agnostic_AP25", "mPrec50", "mRec50", "F1_50", "num_pred")
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(f"{row[k]:.3f}" if isinstance(row[k], float) else str(row[k])
                                for k in keys) + " |")
    best = max(rows, key=lambda r: r["F1_50"])
    print(f"best class-agnostic F1 at IoU 0.5: {best['F1_50']:.3f} at score_threshold "
          f"{best['score_threshold']:g}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


def cmd_bag(args: argparse.Namespace) -> int:
    """``ros2-inst3d bag IN OUT``: segment the bag, print the account; exit 1 (one line on
    stderr) when nothing was segmented or the input is corrupt. The output bag and its
    summary.json are written either way: they say what happened to every scan."""
    from .bag import DEFAULT_TF_WAIT_S, format_summary, segment_bag

    summary = segment_bag(
        args.input, args.output, _load_config(args), topics=args.topics,
        fixed_frame=args.fixed_frame, distro=args.distro, storage=args.storage, limit=args.limit,
        tf_wait_s=DEFAULT_TF_WAIT_S if args.tf_wait is None else args.tf_wait,
        progress=not args.no_progress)
    print(format_summary(summary))
    scans = summary["scans"]
    problem = None
    if summary.get("read_error"):
        problem = f"the input bag is corrupt: {summary['read_error']}"
    elif scans["processed"] == 0:
        reasons = ", ".join(f"{r} {n}" for r, n in scans["skipped_by_reason"].items())
        problem = (f"no scan was segmented ({scans['total']} read"
                   + (f"; skipped: {reasons}" if reasons else "") + ")")
    if problem is None:
        return 0
    print(f"ros2-inst3d bag: error: {problem}", file=sys.stderr)
    return 1


def cmd_check_checkpoint(args: argparse.Namespace) -> int:
    """``ros2-inst3d check-checkpoint CKPT -c MODEL_YAML``: print the key report; 0 if the
    checkpoint fits, else 1. The model is built on the meta device (no weights allocated)."""
    from .config import ConfigError
    from .model.checkpoint import CheckpointError, check_checkpoint
    from .model.registry import build_network, load_model_config
    from .resources import config_path

    try:
        model = build_network(load_model_config(config_path(args.config, "models")),
                            device="meta")
        report = check_checkpoint(args.checkpoint_file, model, trust_pickle=args.trust_pickle)
    except (CheckpointError, ConfigError) as err:
        print(f"check-checkpoint: {err}", file=sys.stderr)
        return 1
    print(report.format())
    return 0 if report.ok else 1


def add_gen_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``ros2-inst3d gen-data``."""
    from .synthetic.layout import ROOM_KINDS
    from .synthetic.scene import SPLITS, SceneParams
    from .synthetic.street import STREET_SENSORS, STREET_TERRAINS

    parser.add_argument("outdir", type=Path, help="output folder (created if missing)")
    parser.add_argument("--scenes", type=int, default=10, help="number of scenes (default 10)")
    parser.add_argument("--seed", type=int, default=0,
                        help="first seed; with --split, the first index within the split")
    parser.add_argument("--split", choices=SPLITS,
                        help="seed range: train 0..99999, val 100000.., test 200000..")
    parser.add_argument("--sequence", action="store_true",
                        help="also write <stem>.sequence.npz (raw per-pose scans, poses, stamps)")
    parser.add_argument("--bag", action="store_true",
                        help="also write <stem>_bag/, a rosbag2 (mcap) of the raw scans with "
                        "/tf, ready for `ros2-inst3d bag` (fixed frame map)")
    parser.add_argument("--preview", action="store_true",
                        help="also write <stem>.preview.png coloured by instance")
    parser.add_argument("--lidar", action="store_true",
                        help="scan with a spinning 32-beam LiDAR instead of the RGB-D camera")
    parser.add_argument("--street", action="store_true",
                        help="outdoor street scans instead of rooms: one revolution of a ray-cast "
                        "HDL-64 each, written as SemanticKITTI street_<seed>.bin / .label (for "
                        "tuning and checking the lidar method: benchmarks/lidar_street.py)")
    parser.add_argument("--street-sensor", choices=tuple(STREET_SENSORS), default="hdl64",
                        help="with --street: the HDL-64E pattern (default), or the same sensor "
                        "pitched 0.6 deg with coarser azimuth, more noise and dropout (a second "
                        "sensor to check what was tuned on the first)")
    parser.add_argument("--street-terrain", choices=STREET_TERRAINS, default="flat",
                        help="with --street: level lots beyond the sidewalks (default), or "
                        "'terraced': the same streets with lots that step up 0.8-2.5 m, so the "
                        "top beam cuts far walls nearer their base (as in SemanticKITTI 000000)")
    parser.add_argument("--voxel-size", type=float, default=None,
                        help=f"output resolution in metres (default {SceneParams.voxel_size})")
    parser.add_argument("--small", action="store_true",
                        help="cheap small scenes (3-5 m rooms, coarse camera) for smoke tests")
    parser.add_argument("--room-kind", choices=ROOM_KINDS, default=None,
                        help="every room of this kind (default: drawn from the room's size); "
                        "rare classes (toilet, bathtub, sink, counter, refrigerator) live in "
                        "bathrooms and kitchens")
    parser.add_argument("--room-size", type=float, nargs=2, metavar=("MIN", "MAX"), default=None,
                        help="side lengths of the room's bounding rectangle, metres (default "
                        f"{SceneParams.room_size[0]:g} {SceneParams.room_size[1]:g})")
    parser.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def cmd_gen_data(args: argparse.Namespace) -> int:
    """``ros2-inst3d gen-data``: ``synthetic.scene.generate_dataset`` from the arguments of
    ``add_gen_data_arguments``; prints a summary line."""
    import dataclasses
    import time

    from .synthetic.scene import SceneParams, generate_dataset

    if args.scenes < 1:
        raise ValueError(f"--scenes must be >= 1, got {args.scenes}")
    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    if args.street:
        from .synthetic.scene import split_seed

        room_only = [flag for flag, value in (
            ("--lidar", args.lidar), ("--sequence", args.sequence), ("--bag", args.bag),
            ("--preview", args.preview), ("--small", args.small), ("--workers", args.workers != 1),
            ("--room-kind", args.room_kind), ("--room-size", args.room_size),
            ("--voxel-size", args.voxel_size)) if value]
        if room_only:
            raise ValueError(f"--street makes LiDAR street scans; {', '.join(room_only)} only "
                             "apply to rooms")
        from .synthetic.street import generate_streets

        first = split_seed(args.split, args.seed) if args.split else args.seed
        t0 = time.perf_counter()
        paths = generate_streets(args.outdir, args.scenes, first, progress=not args.quiet,
                                 sensor=args.street_sensor, terrain=args.street_terrain)
        dt = time.perf_counter() - t0
        print(f"wrote {len(paths)} street scans to {args.outdir} in {dt:.1f} s")
        return 0
    street_only = [flag for flag, given in (("--street-sensor", args.street_sensor != "hdl64"),
                                            ("--street-terrain", args.street_terrain != "flat"))
                   if given]
    if street_only:
        raise ValueError(f"{', '.join(street_only)} only apply to --street")
    params = SceneParams.small() if args.small else SceneParams()
    changes: dict = {}
    if args.lidar:
        changes["sensor"] = "lidar"
    if args.voxel_size is not None:
        changes["voxel_size"] = float(args.voxel_size)
    if args.room_kind is not None:
        changes["room_kind"] = args.room_kind
    if args.room_size is not None:
        changes["room_size"] = tuple(float(v) for v in args.room_size)
    if changes:
        params = dataclasses.replace(params, **changes)
    t0 = time.perf_counter()
    paths = generate_dataset(args.outdir, args.scenes, args.seed, split=args.split,
                             sequence=args.sequence, preview=args.preview, bag=args.bag,
                             progress=not args.quiet, params=params, workers=args.workers)
    dt = time.perf_counter() - t0
    print(f"wrote {len(paths)} scenes to {args.outdir} in {dt:.1f} s "
          f"({dt / max(len(paths), 1):.2f} s/scene)")
    return 0


def add_fuzz_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``ros2-inst3d fuzz``: cases per group, seed, JSON output."""
    from .fuzz import DEFAULT_COUNTS

    for group, default in DEFAULT_COUNTS.items():
        p.add_argument(f"--{group}", type=int, default=default,
                       help=f"number of {group} cases (default {default}; 0 skips the group)")
    p.add_argument("--seed", type=int, default=0, help="campaign seed (default 0)")
    p.add_argument("--json", type=Path, help="also write the table and failures as JSON")


def cmd_fuzz(args: argparse.Namespace) -> int:
    """``ros2-inst3d fuzz``: print the table and every failure; exit 1 if any case failed."""
    import json

    from .fuzz import GROUPS, format_table, run_campaign

    counts = {g: getattr(args, g) for g in GROUPS}
    results = run_campaign(counts, seed=args.seed, cli_main=main)
    print(format_table(results))
    for r in results:
        for failure in r.failures:
            print(f"FAIL {r.name}: {failure}")
    if args.json:
        args.json.write_text(json.dumps({"seed": args.seed, "counts": counts,
                                         "groups": [r.row() for r in results],
                                         "failures": {r.name: r.failures for r in results}},
                                        indent=1))
    return 1 if any(r.tracebacks for r in results) else 0


def cmd_train(args: argparse.Namespace) -> int:
    """``ros2-inst3d train CONFIG``: the training YAML with the flags' overrides → ``train``
    (or ``--nproc`` data-parallel processes)."""
    from .config import ConfigError
    from .train import LOG_NAME, load_train_config, train

    overrides: dict = {}
    if args.work_dir is not None:
        overrides["work_dir"] = str(args.work_dir)
    if args.epochs is not None and args.max_iters is not None:
        raise ConfigError("give --epochs or --max-iters, not both")
    if args.epochs is not None:
        overrides.update({"train.epochs": args.epochs, "train.max_iters": None})
    if args.max_iters is not None:
        overrides.update({"train.max_iters": args.max_iters, "train.epochs": None})
    if args.data_train is not None:
        overrides["data.train"] = [str(folder) for folder in args.data_train]
    if args.data_val is not None:
        overrides["data.val"] = [str(folder) for folder in args.data_val]
    cfg = load_train_config(args.config, overrides)
    if args.nproc > 1:
        from .parallel import spawn

        spawn(_train_process, args.nproc, cfg, args.resume, args.device, args.quiet)
        print(f"trained {cfg.model['name']} with {args.nproc} processes; see "
              f"{Path(cfg.work_dir) / LOG_NAME}")
        return 0
    result = train(cfg, resume=args.resume, device=args.device, quiet=args.quiet)
    best = result.metrics.get("best")
    print(f"trained {cfg.model['name']}: {result.epoch} epochs, {result.iteration} iterations; "
          f"latest {result.latest}" + (f", best {result.best} (score {best['score']:.4f} after "
                                        f"epoch {best['epoch']})" if best and result.best else ""))
    return 0


def _train_process(cfg, resume: Path | None, device: str | None, quiet: bool) -> None:
    """One data-parallel trainer of ``train --nproc`` (module level: spawn pickles it)."""
    import os

    from .train import train

    logging.basicConfig(level=logging.INFO if os.environ.get("RANK") == "0" else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    train(cfg, resume=resume, device=device, quiet=quiet)


def cmd_export_weights(args: argparse.Namespace) -> int:
    """``ros2-inst3d export-weights CKPT OUT [--half] [--model-config YAML]``."""
    from .train import export_weights

    out = export_weights(args.checkpoint_file, args.out, half=args.half,
                         model_config=args.model_config)
    size = out.stat().st_size / 2**20
    print(f"wrote {out} ({size:.2f} MiB, {'float16' if args.half else 'float32'} weights)")
    return 0


def cmd_widen_weights(args: argparse.Namespace) -> int:
    """``ros2-inst3d widen-weights CKPT OUT [--seed N]``."""
    from .train import widen_weights

    out = widen_weights(args.checkpoint_file, args.out, args.channels, seed=args.seed)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.2f} MiB, {args.channels} channels)")
    return 0


def cmd_train_clusters(args: argparse.Namespace) -> int:
    """``ros2-inst3d train-clusters TRAIN.. --out FILE [--val DIR]..``: fit the ``lidar``
    method's junk classifier on labelled scans, and with ``--val`` choose its threshold."""
    import numpy as np

    from .config import load_config
    from .model.cluster_classifier import train_cluster_classifier
    from .model.cluster_samples import (choose_threshold, labelled_scans,
                                        street_cluster_samples)
    from .model.lidar import CLUSTER_FEATURES

    cfg = load_config(args.config).lidar
    progress = not args.quiet
    train_scans = labelled_scans(args.train)
    samples = street_cluster_samples(train_scans, cfg, progress)
    print(f"train: {len(samples.is_object)} clusters ({int(samples.is_object.sum())} objects) "
          f"from {len(train_scans)} scans")
    meta = {"train": [str(t) for t in args.train], "train_scans": len(train_scans),
            "config": str(args.config)}
    clf = train_cluster_classifier(samples.features, samples.is_object, CLUSTER_FEATURES,
                                   hidden=args.hidden,
                                   epochs=args.epochs, feature_noise=args.feature_noise,
                                   members=args.members, seed=args.seed, meta=meta,
                                   sample_weight=np.where(samples.matches_object,
                                                          args.matched_weight, 1.0))
    clf.meta["matched_weight"] = args.matched_weight
    if args.val:
        val = [street_cluster_samples(labelled_scans([v]), cfg, progress) for v in args.val]
        threshold, rows = choose_threshold([clf.object_probability(v.features) for v in val],
                                           val, args.max_matched_loss)
        names = [str(v) for v in args.val]
        for base, name in zip(val, names):
            junk = int((~base.is_object).sum())
            print(f"{name}: without the test {int(base.matches_object.sum())}/{base.objects} "
                  f"objects matched, {len(base.is_object)} clusters, junk {junk} "
                  f"({junk / max(1, len(base.is_object)):.1%})")
        for row in rows:
            cells = "; ".join(f"{c['matched']} matched, {c['clusters']} clusters, junk "
                              f"{c['junk'] / max(1, c['clusters']):.1%}" for c in row["sets"])
            mark = "  <- chosen" if row["threshold"] == threshold else ""
            print(f"  score_threshold {row['threshold']:.2f}: {cells}{mark}")
        clf.meta.update({"val": names, "max_matched_loss": args.max_matched_loss,
                         "score_threshold": threshold})
        print(f"chosen segment.score_threshold: {threshold:.2f} (the most junk removed "
              f"with at most {args.max_matched_loss:.0%} of the matched objects lost in every "
              "--val set)")
    out = clf.save(args.out)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB)")
    return 0


def add_train_commands(sub) -> None:
    """Register ``train``, ``train-clusters``, ``export-weights`` and ``widen-weights`` on the
    CLI's sub-parsers."""
    p = sub.add_parser(
        "train", help="train SoftGroup / PointGroup from a training YAML (config/train/*.yaml)",
        description="Train a model on labelled scenes; writes WORK_DIR/log.jsonl, latest.pth, "
        "best.pth (by validation AP) and optionally epoch_XXX.pth. Example: ros2-inst3d gen-data "
        "data/synthetic/train --split train --scenes 240 && ros2-inst3d gen-data "
        "data/synthetic/val --split val --scenes 50 && ros2-inst3d train "
        "config/train/softgroup_synthetic.yaml")
    p.add_argument("config", type=Path, metavar="CONFIG", help="training YAML")
    p.add_argument("--work-dir", type=Path, help="work_dir override")
    p.add_argument("--resume", type=Path, metavar="CKPT",
                   help="continue from a checkpoint of this config (latest.pth, epoch_XXX.pth)")
    p.add_argument("--device", help="train.device override (auto, cpu, cuda, cuda:N)")
    p.add_argument("--epochs", type=int, help="train.epochs override (clears train.max_iters)")
    p.add_argument("--max-iters", type=int,
                   help="train.max_iters override (clears train.epochs)")
    p.add_argument("--data-train", type=Path, nargs="+", metavar="FOLDER",
                   help="data.train override: one folder of training scenes, or several whose "
                   "scenes are pooled")
    p.add_argument("--data-val", type=Path, nargs="+", metavar="FOLDER",
                   help="data.val override: one folder of validation scenes, or several")
    p.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="data-parallel training processes on this machine (one per core on CPU, "
                   "one per GPU; the batch becomes N x data.scenes_per_batch; default 1). For "
                   "several machines start this command under torchrun instead")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "train-clusters", help="train the lidar method's junk classifier on labelled scans",
        description="Fit lidar.classifier (model/cluster_classifier.py) on the clusters that "
        "pass the lidar filters of --config in SemanticKITTI-format scans (.bin + .label), and "
        "with --val choose segment.score_threshold (the score is the object probability): the "
        "most junk removed with at most "
        "--max-matched-loss of the matched objects lost in every --val folder. Example: "
        "ros2-inst3d gen-data data/street_train --street --split train --scenes 600 && "
        "ros2-inst3d gen-data data/street_val --street --split val --scenes 100 && ros2-inst3d "
        "train-clusters data/street_train --val data/street_val --out my_clusters.json")
    p.add_argument("train", type=Path, nargs="+", metavar="TRAIN_DIR",
                   help="folders of labelled scans to train on")
    p.add_argument("--out", type=Path, required=True, help="classifier file to write (.json)")
    p.add_argument("--val", type=Path, action="append", default=[], metavar="DIR",
                   help="folder of labelled scans to choose the threshold on (repeatable)")
    p.add_argument("--config", type=Path, default=Path("lidar_outdoor"),
                   help="the preset whose filters run before the classifier (default: "
                   "lidar_outdoor)")
    p.add_argument("--hidden", type=int, nargs="*", default=[32, 32],
                   help="hidden layer widths (default 32 32)")
    p.add_argument("--epochs", type=int, default=300, help="full-batch Adam steps (default 300)")
    p.add_argument("--feature-noise", type=float, default=0.8,
                   help="training noise on the standardized features (default 0.8)")
    p.add_argument("--matched-weight", type=float, default=3.0,
                   help="loss weight of the clusters that match a labelled thing, against 1 "
                   "for the rest: losing a car costs more than keeping a hedge (default 3)")
    p.add_argument("--members", type=int, default=5, help="ensemble size (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first member (default 0)")
    p.add_argument("--max-matched-loss", type=float, default=0.02,
                   help="threshold rule: largest share of matched objects lost (default 0.02)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train_clusters)

    p = sub.add_parser(
        "export-weights", help="slim copy of a training checkpoint for shipping (no optimizer)",
        description="Write net (float32, or float16 with --half), config, class_names, epoch, "
        "iteration and metrics of a `train` checkpoint; segment/the node load it as any "
        "{'net': ...} checkpoint.")
    p.add_argument("checkpoint_file", type=Path, metavar="CKPT", help="best.pth or latest.pth")
    p.add_argument("out", type=Path, metavar="OUT", help="e.g. models/softgroup_synthetic.pth")
    p.add_argument("--half", action="store_true", help="store float16 weights (half the size)")
    p.add_argument("--model-config", type=Path, metavar="YAML",
                   help="embed this model YAML instead of the trained config: post-processing "
                   "settings calibrated after training (the network must be the same)")
    p.set_defaults(func=cmd_export_weights)

    p = sub.add_parser(
        "widen-weights", help="widen a trained network's channels, same function (Net2Net)",
        description="Write CKPT's network with model.channels raised to --channels, computing the "
        "same outputs (each channel becomes a run of copies; input weights split unevenly over the "
        "run so training separates them), with the wide config embedded. Use it as train.pretrain "
        "of a run whose model YAML has those channels: the wide run starts where the narrow one "
        "stopped. Every U-Net level must be a multiple of the base width (the package's U-Nets are).")
    p.add_argument("checkpoint_file", type=Path, metavar="CKPT",
                   help="a `train` checkpoint or exported weights of this package")
    p.add_argument("out", type=Path, metavar="OUT", help="e.g. work_dirs/wide/pretrain.pth")
    p.add_argument("--channels", type=int, required=True,
                   help="the wide model.channels (e.g. 24 for a 16-channel model)")
    p.add_argument("--seed", type=int, default=0, help="seed of the weight split (default 0)")
    p.set_defaults(func=cmd_widen_weights)


def build_parser() -> argparse.ArgumentParser:
    from .gravity import add_gravity_arguments

    parser = argparse.ArgumentParser(
        prog="ros2-inst3d", description="3D instance segmentation of point clouds, offline and in ROS 2.")
    from . import __version__

    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="segment the bundled sample scene; writes files and a PNG")
    _add_model_args(p)
    p.add_argument("-o", "--outdir", type=Path, default=Path("demo_output"),
                   help="output directory (default: demo_output)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("segment", help="segment a cloud file (.ply .pcd .npy .npz .bin)")
    p.add_argument("input", type=Path)
    _add_model_args(p)
    p.add_argument("-o", "--outdir", type=Path, default=Path("."),
                   help="output directory (default: the current directory)")
    p.add_argument("--png", action="store_true", help="also render <stem>.instances.png")
    add_gravity_arguments(p)
    p.set_defaults(func=cmd_segment)

    p = sub.add_parser("params", help="list every configuration parameter with its documentation")
    p.add_argument("--markdown", action="store_true", help="as the README's markdown table")
    p.add_argument("--yaml", action="store_true", help="as a ROS 2 parameter file (config/segment.yaml)")
    p.set_defaults(func=cmd_params)

    p = sub.add_parser("bench", help="benchmark the pipeline stages (see README: Performance)")
    p.add_argument("--decode", action="store_true", help="only the PointCloud2 decode benchmark")
    p.add_argument("--points", type=int, nargs="+", default=[100_000, 1_000_000],
                   help="cloud sizes for the decode benchmark")
    p.add_argument("--pipeline", action="store_true",
                   help="only the per-stage pipeline benchmark (no decode, no ops)")
    p.add_argument("--models", nargs="+", choices=METHOD_NAMES,
                   help="methods of the pipeline and tracking benchmarks (default: "
                   f"{', '.join(BENCHMARK_METHODS)})")
    p.add_argument("--devices", nargs="+", choices=["cpu", "cuda"],
                   help="devices of the learned models (default: cpu, and cuda when available)")
    p.add_argument("--seed", type=int,
                   help="generated room of the pipeline benchmark (default: a ~100k-point one)")
    p.add_argument("--scene", type=Path,
                   help="a saved room for the pipeline benchmark instead of a generated one (e.g. "
                   "samples/demo_room.npz; needs no open3d)")
    p.add_argument("--repeats", type=int, default=5,
                   help="timed runs per measurement (default 5)")
    p.add_argument("--cpu-threads", type=int, nargs="+", metavar="N",
                   help="time each learned model on CPU with each of these torch thread counts "
                   "(model.cpu_threads; default: the config's)")
    p.add_argument("--augmented-views", type=int, nargs="+", metavar="N", choices=VIEW_COUNTS,
                   help="time softgroup and pointgroup with each of these test-time view counts "
                   "(model.augmented_views; default: the config's)")
    p.add_argument("--tracking", action="store_true",
                   help="only the tracking benchmark: ID switches, MOTA, IDF1 on generated "
                   "sequences (README: Tracking)")
    p.add_argument("--sequences", type=int, default=3,
                   help="generated sequences per sensor of the tracking benchmark")
    p.add_argument("--sensors", nargs="+", choices=["rgbd", "lidar"], default=["rgbd", "lidar"],
                   help="sensors of the tracking benchmark's sequences")
    p.add_argument("--stream", action="store_true",
                   help="only the ingest and streaming benchmarks: per-scan ingest, decode of "
                   "common layouts, 10 Hz of 100k-point scans in real time (README: Streaming)")
    p.add_argument("--duration", type=float, default=10.0,
                   help="seconds of streaming per method (--stream)")
    p.add_argument("--baseline-tree", type=Path,
                   help="with --stream: a checkout of the code before a change; its ingest and "
                   "decode are timed interleaved with this tree's (before/after ratios)")
    p.add_argument("--json", type=Path, help="also write the report as JSON")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("eval", help="ScanNet-protocol instance AP (and S3DIS metrics)",
                       description="Score prediction files against scene files (--pred/--gt), or "
                       "run a model on labelled scenes and score it (-c/--checkpoint/--data).")
    p.add_argument("--pred", type=Path, help="directory of <stem>.labels.npz predictions")
    p.add_argument("--gt", type=Path, help="directory of ground-truth scene .npz files")
    p.add_argument("--data", type=Path, help="labelled scenes to run the model on")
    _add_model_args(p)
    p.add_argument("--limit", type=int, help="evaluate only the first N scenes")
    p.add_argument("--class-agnostic", action="store_true",
                   help="merge every thing class into one (compares with the geometric baseline)")
    p.add_argument("--no-color", action="store_true",
                   help="with --data: drop the scenes' rgb, as a LiDAR delivers them (the default "
                   "learned model then runs its shipped xyz-only weights)")
    p.add_argument("--json", type=Path, help="write the metrics as JSON")
    p.add_argument("--plot", type=Path, help="precision-recall PNG (default: beside --json)")
    p.add_argument("--sweep-scores", metavar="T1,T2,...",
                   help="with --data: class-aware and class-agnostic AP, mPrec50/mRec50 and their "
                   "F1 at each segment.score_threshold, from one pass (calibrates the threshold)")
    add_gravity_arguments(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("bag", help="segment a rosbag2 (mcap/sqlite3) into a new rosbag2 with the results",
                       description="Runs the node's pipeline in bag time (TF from /tf and /tf_static) "
                       "and writes the input topics plus every output topic; prints and writes "
                       "OUT/summary.json with the fate of every input scan.")
    p.add_argument("input", type=Path, help="input bag directory (or .mcap/.db3 file)")
    p.add_argument("output", type=Path, help="output bag directory (must not exist)")
    _add_model_args(p)
    p.add_argument("--topics", nargs="+", help="PointCloud2 topics (default: all of them)")
    p.add_argument("--fixed-frame", help="input.fixed_frame override")
    p.add_argument("--distro", choices=["humble", "jazzy"],
                   help="message definitions to write (default: the input bag's)")
    p.add_argument("--storage", choices=["sqlite3", "mcap"], help="output storage (default: input's)")
    p.add_argument("--limit", type=int, help="process only the first N scans")
    p.add_argument("--tf-wait", type=float, help="bag seconds a scan waits for TF (default 0.5)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_bag)

    p = sub.add_parser("check-checkpoint",
                       help="report missing/unexpected/mismatched keys of a checkpoint vs a model config")
    p.add_argument("checkpoint_file", type=Path, metavar="CKPT")
    p.add_argument("-c", "--config", type=Path, required=True,
                   help="model YAML: a path, or a name in the package's config/models/ "
                   "(e.g. softgroup_scannet)")
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow full pickle loading (only for files from a source you trust)")
    p.set_defaults(func=cmd_check_checkpoint)

    p = sub.add_parser("gen-data", help="generate scanned synthetic indoor scenes (.npz)")
    add_gen_data_arguments(p)
    p.set_defaults(func=cmd_gen_data)

    p = sub.add_parser("fuzz", help="fuzzing campaign: random/corrupt clouds, files, configs, "
                       "checkpoints and bags against every entry point",
                       description="Prints cases, clean errors, accepted inputs and tracebacks "
                       "per group (see ros2_inst3d/fuzz.py); exits 1 if any case escaped as a "
                       "traceback or broke the scan account.")
    add_fuzz_arguments(p)
    p.set_defaults(func=cmd_fuzz)

    add_train_commands(sub)  # `train` and `export-weights`
    return parser


def _join_dash_values(argv: list[str]) -> list[str]:
    """``--up -y`` → ``--up=-y`` (argparse would take ``-y`` for an option; likewise a
    ``--transform`` starting with a minus sign)."""
    out: list[str] = []
    it = iter(argv)
    for arg in it:
        if arg in ("--up", "--transform"):
            value = next(it, None)
            out.append(arg if value is None else f"{arg}={value}")
        else:
            out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_join_dash_values(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    user_errors = _user_errors()
    try:
        return int(args.func(args) or 0)
    except user_errors as exc:
        if args.verbose:
            raise
        print(f"ros2-inst3d {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `ros2-inst3d params | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, exit 1
        if args.verbose:
            raise
        message = " ".join(str(exc).split())[:300]
        print(f"ros2-inst3d {args.command}: internal error: {type(exc).__name__}: {message} "
              "(a bug: please report it with the output of -v)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
