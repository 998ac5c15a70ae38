"""Calibrate MTML's post-processing on labelled scenes without rerunning its network.

    python3 benchmarks/mtml_calibrate.py --data /work/gen/val --limit 20 \\
        --set split_radius=0.3 --set "split_radius=0.3,min_points=300" \\
        --set "bandwidths=1.0 1.5"

Runs the shipped MTML (or ``--checkpoint``) once per scene through the same ``Segmenter`` path
as ``ros2-inst3d eval`` (no score filter), keeps each scene's network outputs, and then reruns
only the post-processing (mean-shift, splits, scoring, NMS) with the checkpoint's settings and
with each ``--set`` applied to them alone, printing class-aware and class-agnostic AP per
setting at each ``--score-thresholds`` (default 0 and the deployment 0.2; lower scores dropped
afterwards, as ``eval --sweep-scores`` does). Mean-shift still runs per setting; the U-Net does
not. Settings are attributes of ``model/mtml.py``'s MTML (``bandwidths``, ``split_radius``,
``min_points``, ``nms_iou``, ``score_thresh``, ``xyz_weight``); ``export-weights
--model-config`` writes the chosen ones into a weights file. Choose on validation scenes (50:
on 20, settings that differ by 0.04 class-agnostic AP50 swapped places on 50) and report on
others.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch

from ros2_inst3d.config import load_config
from ros2_inst3d.data.datasets import find_scene_files, read_scene
from ros2_inst3d.evaluation import Prediction, evaluate
from ros2_inst3d.segmenter import Segmenter

SETTINGS = {"bandwidths": lambda v: [float(x) for x in v.split()], "split_radius": float,
            "min_points": int, "nms_iou": float, "score_thresh": float,
            "xyz_weight": float}


def parse_setting(text: str) -> dict[str, Any]:
    """``key=value[,key=value...]`` of :data:`SETTINGS` (bandwidths: space-separated)."""
    setting = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in SETTINGS:
            raise argparse.ArgumentTypeError(
                f"expected one of {', '.join(SETTINGS)}=<value>, got {item!r}")
        try:
            setting[key] = SETTINGS[key](value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{item!r}: {exc}") from None
    return setting


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="labelled scene folder (validation)")
    parser.add_argument("--limit", type=int, default=20, help="first N scenes")
    parser.add_argument("--checkpoint", help="MTML weights (default: the shipped ones)")
    parser.add_argument("--set", dest="settings", type=parse_setting, action="append",
                        default=[], help="key=value[,key=value] tried against the checkpoint's")
    parser.add_argument("--score-thresholds", type=float, nargs="+", default=[0.0, 0.2],
                        metavar="T", help="segment.score_threshold values to report")
    args = parser.parse_args()
    torch.set_num_threads(1)
    overrides = {"model.name": "mtml", "model.device": "cpu", "segment.score_threshold": 0.0}
    if args.checkpoint:
        overrides["model.checkpoint"] = args.checkpoint
    segmenter = Segmenter(load_config(None, overrides))
    network = segmenter.model.network
    network_heads = network.voxel_heads
    outputs: dict[int, Any] = {}
    current = {"scene": 0}

    def cached_heads(batch: dict[str, Any]) -> Any:
        if current["scene"] not in outputs:
            outputs[current["scene"]] = network_heads(batch)
        return outputs[current["scene"]]

    network.voxel_heads = cached_heads
    scenes = [read_scene(path) for path in find_scene_files(args.data)[:args.limit]]
    trained = {key: getattr(network, key) for key in SETTINGS}
    print(f"mtml on {len(scenes)} scenes of {args.data}; checkpoint settings {trained}")
    print("| setting | score_threshold | AP | AP50 | AP25 | agnostic AP | agnostic AP50 "
          "| agnostic AP25 | predictions |")
    print("|---|---|---|---|---|---|---|---|---|")
    for setting in [{}] + args.settings:
        for key, value in {**trained, **setting}.items():
            setattr(network, key, value)
        preds = []
        for current["scene"], scene in enumerate(scenes):
            inst = segmenter.segment(scene.xyz, scene.rgb)
            preds.append(Prediction.from_indices(inst.indices, inst.class_ids, inst.scores,
                                                 scene.num_points))
        name = ", ".join(f"{k}={v}" for k, v in setting.items()) or "checkpoint"
        for threshold in args.score_thresholds:
            kept = [p.keep(p.scores >= threshold) for p in preds]
            rows = [evaluate(((s.semantic, s.instance, p) for s, p in zip(scenes, kept)),
                             class_names=segmenter.class_names, class_agnostic=agnostic)
                    for agnostic in (False, True)]
            cells = " | ".join(f"{x:.3f}" for r in rows for x in (r.AP, r.AP50, r.AP25))
            print(f"| {name} | {threshold:g} | {cells} | {sum(p.num_masks for p in kept)} |",
                  flush=True)


if __name__ == "__main__":
    main()
