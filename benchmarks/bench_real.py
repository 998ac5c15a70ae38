"""Segmentation of real sensor clouds, measured: SemanticKITTI 000000, mOSD table tops, nebula frames.

    python3 benchmarks/bench_real.py [--data ../shared/data/real] [--out bench_real_out] [--json r.json]
        [--set KEY=VALUE ...]

Reads what exists under ``--data`` and skips the rest (SemanticKITTI and mOSD may not be copied into
this repository; see that folder's README for their licences):

* ``semantickitti/000000.{bin,label}`` with ``config/lidar_outdoor.yaml``, for both ground methods
  (Patchwork++ when installed, and the grid fit), and with the learned default (``softgroup``,
  which runs its shipped xyz-only weights on this colourless cloud) in the same ROI: ground precision/recall against the labels
  (road, parking, sidewalk, other-ground, lane marking, terrain), the labelled things (car, bicycle,
  person, bicyclist and their moving ids) of >= 50 points matched at IoU >= 0.5, the instances
  returned and how many of them are mostly ground, building, fence or vegetation (semantic ids 40,
  44, 48, 49, 50, 51, 70, 72), and the per-stage time (best of ``--repeats`` runs); and the
  per-point accuracy and per-class IoU of the semantic junk test's street network in the
  ``classes.STREET_CLASSES`` table.
* ``mosd/test*.pcd`` (camera optical frame) with ``config/tabletop.yaml`` after ``--up -y
  --level``: class-agnostic AP / AP50 / AP25 by the project's evaluator, against the objects
  (``label // 10``) and against the object parts (raw labels >= 20); the table (labels 1-9) is
  stuff, invalid points (0) are ignored.
* ``nebula/*.pcd``: instance counts and timing with ``lidar_indoor`` / ``lidar_outdoor`` presets and a
  PNG each in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ros2_inst3d.cli import cloud_fields  # noqa: E402
from ros2_inst3d.config import load_config, parse_override  # noqa: E402
from ros2_inst3d.evaluation import KITTI_GROUND, kitti_object_scores  # noqa: E402
from ros2_inst3d.gravity import gravity_transform  # noqa: E402
from ros2_inst3d.io import read_cloud  # noqa: E402
from ros2_inst3d.segmenter import Segmenter  # noqa: E402
from ros2_inst3d.transforms import apply_transform  # noqa: E402

NEBULA_PRESETS = {"velodyne_vls128": "lidar_outdoor.yaml"}  # the other frames are indoors


def default_data_dir() -> Path:
    import os

    env = os.environ.get("ROS2_INST3D_REAL_DATA")
    return Path(env) if env else ROOT.parent / "shared" / "data" / "real"


def _best_timing(segmenter: Segmenter, xyz, rgb, fields, repeats: int):
    """Per-stage wall times (ms), the best of ``repeats`` runs per stage (timeit's rule: other
    load only ever adds time), plus ``total_cpu``: the median process CPU time of one
    segmentation (all threads)."""
    runs = []
    for _ in range(max(1, repeats)):
        c0 = time.process_time()
        inst = segmenter.segment(xyz, rgb, fields=fields)
        runs.append({**inst.timing_ms, "total_cpu": (time.process_time() - c0) * 1e3})
    timing = {k: float(np.min([r[k] for r in runs])) for k in runs[0]}
    timing["total_cpu"] = float(np.median([r["total_cpu"] for r in runs]))
    return inst, timing


def bench_kitti(data: Path, out: Path, repeats: int,
                methods: tuple[str, ...] = ("lidar", "softgroup"),
                overrides: dict | None = None) -> list[dict]:
    """The ``lidar`` method with each ground method, and the learned default (``softgroup``:
    the cloud has no colour, so its shipped xyz-only weights) in the same preset's ROI;
    ``overrides`` (``--set``) apply on top of the preset."""
    overrides = overrides or {}
    from ros2_inst3d.model.lidar import patchworkpp_available

    scan, labels = data / "semantickitti" / "000000.bin", data / "semantickitti" / "000000.label"
    if not (scan.is_file() and labels.is_file()):
        print(f"skip SemanticKITTI: {scan.parent} not found")
        return []
    cloud = read_cloud(scan)
    label = np.fromfile(labels, dtype="<u4")
    ground_truth = np.isin(label & 0xFFFF, KITTI_GROUND)
    rows = []
    if "softgroup" in methods:
        cfg = load_config(ROOT / "config" / "lidar_outdoor.yaml",
                          {**overrides, "model.name": "softgroup"})
        inst, timing = _best_timing(Segmenter(cfg), cloud.xyz, None, None, repeats)
        row = {"method": "softgroup (xyz-only weights)", "points": len(cloud.xyz),
               **kitti_object_scores(inst.indices, label), "timing_ms": {k: round(v, 1) for k, v in timing.items()}}
        rows.append(row)
        print(f"SemanticKITTI 000000 {row['method']}: matched {row['matched']}/{row['objects']}, "
              f"{row['instances']} instances, junk {row['junk']} ({row['junk_fraction']:.0%}), "
              f"timing {row['timing_ms']}")
        _png(out / "kitti_000000_softgroup.png", inst, "SemanticKITTI 000000 (softgroup, xyz)")
    if "street-network" in methods:
        rows.append(_street_network_scores(cloud.xyz, label, overrides))
    grounds = (["patchworkpp"] if patchworkpp_available() else []) + ["grid"]
    for ground in grounds if "lidar" in methods else []:
        cfg = load_config(ROOT / "config" / "lidar_outdoor.yaml",
                          {**overrides, "lidar.ground": ground})
        segmenter = Segmenter(cfg)
        inst, timing = _best_timing(segmenter, cloud.xyz, None, cloud_fields(cloud), repeats)
        from ros2_inst3d.model.lidar import grid_ground, patchworkpp_ground

        rel = cloud.xyz.astype(np.float64)
        ground_cpu = []
        for _ in range(3):  # the ground stage alone, in thread CPU time (load-independent-ish)
            c0 = time.thread_time()
            found = (patchworkpp_ground(rel, cloud.intensity, cfg.lidar)
                     if ground == "patchworkpp" else grid_ground(rel, cfg.lidar)[0])
            ground_cpu.append((time.thread_time() - c0) * 1e3)
        timing["ground_cpu"] = float(np.median(ground_cpu))
        tp = int((found & ground_truth).sum())
        row = {"method": "lidar", "ground": ground, "points": len(cloud.xyz),
               "ground_precision": round(tp / max(1, found.sum()), 3),
               "ground_recall": round(tp / max(1, ground_truth.sum()), 3),
               **kitti_object_scores(inst.indices, label), "timing_ms": {k: round(v, 1) for k, v in timing.items()}}
        rows.append(row)
        print(f"SemanticKITTI 000000 ground={ground}: matched {row['matched']}/{row['objects']}, "
              f"{row['instances']} instances, junk {row['junk']} ({row['junk_fraction']:.0%}), "
              f"ground P/R {row['ground_precision']:.3f}/{row['ground_recall']:.3f}, "
              f"timing {row['timing_ms']}")
        _png(out / f"kitti_000000_{ground}.png", inst, f"SemanticKITTI 000000 ({ground})")
    return rows


def _street_network_scores(xyz: np.ndarray, label: np.ndarray, overrides: dict) -> dict:
    """Point-wise quality of the semantic junk test's street network (``lidar.semantic_model``,
    default the shipped one) against the frame's labels in the STREET_CLASSES table: how far
    the generated streets it learnt from carry over to a real one."""
    from ros2_inst3d.classes import street_labels
    from ros2_inst3d.model.lidar import StreetSemantics
    from ros2_inst3d.train import PointwiseMeter

    cfg = load_config(ROOT / "config" / "lidar_outdoor.yaml",
                      {"lidar.semantic_model": "softgroup_street.pth", **overrides})
    network = StreetSemantics(cfg.lidar.semantic_model, cfg.model)
    meter = PointwiseMeter(len(network.class_names))
    meter.add(network.point_classes(xyz), street_labels(label)[0])
    summary = meter.summary()
    row = {"method": "street network (per point)", "weights": cfg.lidar.semantic_model,
           "semantic_accuracy": round(summary["semantic_accuracy"], 3),
           "mIoU": round(summary["mIoU"], 3),
           "class_iou": {name: None if np.isnan(iou) else round(float(iou), 3)
                         for name, iou in zip(network.class_names, meter.class_iou())}}
    print(f"SemanticKITTI 000000 street network {row['weights']}: accuracy "
          f"{row['semantic_accuracy']:.3f}, mIoU {row['mIoU']:.3f} over the labelled classes; "
          "IoU " + ", ".join(f"{k} {v:.2f}" for k, v in row["class_iou"].items() if v is not None))
    return row


def _png(path: Path, inst, title: str) -> None:
    from ros2_inst3d.outputs import instance_colors
    from ros2_inst3d.render import render_instances_png

    path.parent.mkdir(parents=True, exist_ok=True)
    point_ids = np.where(inst.point_instance >= 0, inst.ids[inst.point_instance], -1)
    render_instances_png(path, inst.xyz, instance_colors(point_ids),
                         f"{title}: {inst.num_instances} instances",
                         boxes=[inst.obb(k) for k in range(inst.num_instances)])


def bench_mosd(data: Path, out: Path, overrides: dict | None = None) -> dict:
    from ros2_inst3d.classes import IGNORE_LABEL, OTHERFURNITURE, SCANNET20_CLASSES
    from ros2_inst3d.evaluation import Prediction, evaluate

    files = sorted((data / "mosd").glob("test*.pcd"))
    if not files:
        print(f"skip mOSD: no {data / 'mosd'}/test*.pcd")
        return {}
    cfg = load_config(ROOT / "config" / "tabletop.yaml", overrides)
    segmenter = Segmenter(cfg)
    pairs: dict[str, list] = {"objects": [], "parts": []}
    per_scene = []
    for path in files:
        cloud = read_cloud(path)
        raw = cloud.extra["label"].astype(np.int64)
        matrix = gravity_transform(cloud.xyz, up="-y", level=True)
        xyz = apply_transform(matrix, cloud.xyz)
        inst = segmenter.segment(xyz, cloud.rgb)
        pred = Prediction.from_indices(inst.indices, inst.class_ids, inst.scores, len(xyz))
        semantic = np.where(raw >= 20, OTHERFURNITURE, np.where(raw >= 1, 1, IGNORE_LABEL))
        pairs["objects"].append((semantic, np.where(raw >= 20, raw // 10, IGNORE_LABEL), pred))
        pairs["parts"].append((semantic, np.where(raw >= 20, raw, IGNORE_LABEL), pred))
        per_scene.append({"scene": path.stem, "instances": inst.num_instances,
                          "objects": int(np.unique(raw[raw >= 20] // 10).size),
                          "total_ms": round(inst.timing_ms["total"], 1)})
        _png(out / f"mosd_{path.stem}.png", inst, f"mOSD {path.stem}")
    result = {"scenes": per_scene}
    for gt_kind, scene_pairs in pairs.items():
        res = evaluate(scene_pairs, class_names=SCANNET20_CLASSES, class_agnostic=True)
        result[gt_kind] = {"AP": round(res.AP, 3), "AP50": round(res.AP50, 3),
                           "AP25": round(res.AP25, 3)}
    print(f"mOSD ({len(files)} scenes, tabletop preset): objects {result['objects']}, "
          f"parts {result['parts']}; per scene {per_scene}")
    return result


def bench_nebula(data: Path, out: Path, repeats: int,
                 overrides: dict | None = None) -> list[dict]:
    files = sorted((data / "nebula").glob("*.pcd"))
    if not files:
        print(f"skip nebula: no {data / 'nebula'}/*.pcd")
        return []
    rows = []
    for path in files:
        preset = next((p for k, p in NEBULA_PRESETS.items() if path.name.startswith(k)),
                      "lidar_indoor.yaml")
        segmenter = Segmenter(load_config(ROOT / "config" / preset, overrides))
        cloud = read_cloud(path)
        inst, timing = _best_timing(segmenter, cloud.xyz, None, cloud_fields(cloud), repeats)
        sensor = "_".join(path.stem.split("_")[:2])
        rows.append({"frame": sensor, "preset": preset, "points": len(cloud.xyz),
                     "instances": inst.num_instances,
                     "timing_ms": {k: round(v, 1) for k, v in timing.items()}})
        print(f"nebula {sensor} ({preset}): {len(cloud.xyz)} points, {inst.num_instances} "
              f"instances, timing {rows[-1]['timing_ms']}")
        _png(out / f"nebula_{sensor}.png", inst, f"{sensor} ({preset.removesuffix('.yaml')})")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=default_data_dir(),
                        help="real-data folder (default: $ROS2_INST3D_REAL_DATA, else "
                        "../shared/data/real beside the repository)")
    parser.add_argument("--out", type=Path, default=Path("bench_real_out"))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--only", nargs="+", choices=["kitti", "mosd", "nebula"])
    parser.add_argument("--kitti-methods", nargs="+",
                        choices=["lidar", "softgroup", "street-network"],
                        default=["lidar", "softgroup", "street-network"],
                        help="methods run on SemanticKITTI (softgroup: the learned default, "
                        "which runs its xyz-only weights on this colourless cloud; "
                        "street-network: per-point accuracy and IoU of lidar.semantic_model, "
                        "default models/softgroup_street.pth)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override on top of every preset, repeatable (e.g. "
                        "lidar.classifier=lidar_street_clusters.json)")
    args = parser.parse_args(argv)
    overrides = dict(parse_override(item) for item in args.set)
    only = set(args.only or ["kitti", "mosd", "nebula"])
    t0 = time.perf_counter()
    report = {
        "kitti": (bench_kitti(args.data, args.out, args.repeats, tuple(args.kitti_methods),
                              overrides) if "kitti" in only else []),
        "mosd": bench_mosd(args.data, args.out, overrides) if "mosd" in only else {},
        "nebula": (bench_nebula(args.data, args.out, args.repeats, overrides)
                   if "nebula" in only else []),
    }
    print(f"done in {time.perf_counter() - t0:.1f} s")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=lambda o: o.item()))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
