"""The ``lidar`` method on generated street scans, scored like SemanticKITTI 000000.

    ros2-inst3d gen-data /tmp/street_val --street --split val --scenes 100
    python3 benchmarks/lidar_street.py /tmp/street_val [--config config/lidar_outdoor.yaml]
        [--set lidar.max_surface_variation=0.05] [--sweep lidar.max_surface_variation=0.04,0.06]

Each scan is segmented with the preset (plus ``--set`` overrides) and scored with
``evaluation.kitti_object_scores``: labelled things of >= 50 points matched at IoU >= 0.5, the
instances returned, and the junk among them (mostly ground, building, fence or vegetation). The
totals over all scans, the junk by majority class and the matched share per thing class are
printed; ``--sweep KEY=V1,V2,..`` repeats the run for each value. The filters of
``config/lidar_outdoor.yaml`` are chosen on the train split of these scans and checked on val;
SemanticKITTI 000000 (``bench_real.py``) is only ever the final check.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ros2_inst3d.config import load_config, parse_override  # noqa: E402
from ros2_inst3d.evaluation import KITTI_JUNK, kitti_object_scores  # noqa: E402
from ros2_inst3d.io import read_cloud  # noqa: E402
from ros2_inst3d.model.cluster_samples import labelled_scans  # noqa: E402
from ros2_inst3d.segmenter import Segmenter  # noqa: E402
from ros2_inst3d.synthetic.street import SEMANTIC  # noqa: E402

NAMES = {semantic_id: name for name, semantic_id in SEMANTIC.items()}


def score_dir(data: Path, config: Path, overrides: dict, limit: int | None = None,
              progress: bool = True) -> dict:
    """Totals of ``kitti_object_scores`` over the street scans in ``data``."""
    try:
        scans = labelled_scans([data])[:limit]
    except FileNotFoundError as exc:
        raise SystemExit(str(exc)) from None
    segmenter = Segmenter(load_config(config, overrides))
    total = Counter()
    junk_by_class: Counter = Counter()
    found_by_class: Counter = Counter()
    objects_by_class: Counter = Counter()
    for path in tqdm(scans, disable=not progress, unit="scan"):
        xyz = read_cloud(path).xyz
        label = np.fromfile(path.with_suffix(".label"), dtype="<u4")
        inst = segmenter.segment(xyz, None)
        row = kitti_object_scores(inst.indices, label)
        for key in ("objects", "matched", "instances", "junk"):
            total[key] += row[key]
        for sem, n in row["majority_semantic"].items():
            if int(sem) in KITTI_JUNK:
                junk_by_class[NAMES.get(int(sem), sem)] += n
        for obj in row["per_object"]:
            name = NAMES.get(obj["semantic"], str(obj["semantic"]))
            objects_by_class[name] += 1
            found_by_class[name] += obj["best_iou"] >= 0.5
    return {"scans": len(scans), **total,
            "recall": round(total["matched"] / max(1, total["objects"]), 3),
            "junk_fraction": round(total["junk"] / max(1, total["instances"]), 3),
            "junk_by_class": dict(junk_by_class.most_common()),
            "recall_by_class": {k: f"{found_by_class[k]}/{objects_by_class[k]}"
                                for k in sorted(objects_by_class)}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path, help="folder of street_*.bin / .label (gen-data --street)")
    ap.add_argument("--config", type=Path, default=ROOT / "config" / "lidar_outdoor.yaml")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="config override, repeatable")
    ap.add_argument("--sweep", default=None, metavar="KEY=V1,V2,..",
                    help="one run per value of KEY (on top of --set)")
    ap.add_argument("--limit", type=int, default=None, help="first N scans only")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    base = dict(parse_override(s) for s in args.set)
    runs = [base]
    if args.sweep:
        key, _, values = args.sweep.partition("=")
        runs = [{**base, **dict([parse_override(f"{key}={v}")])} for v in values.split(",")]
    results = []
    for overrides in runs:
        res = score_dir(args.data, args.config, overrides, args.limit, not args.quiet)
        results.append({"overrides": overrides, **res})
        print(f"{overrides or 'preset'}: matched {res['matched']}/{res['objects']} "
              f"({res['recall']:.1%}), {res['instances']} instances, junk {res['junk']} "
              f"({res['junk_fraction']:.1%}); junk {res['junk_by_class']}; "
              f"found {res['recall_by_class']}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
