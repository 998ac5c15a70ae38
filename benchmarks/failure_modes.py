"""Why a learned model misses ground-truth objects: every thing instance of the labelled rooms,
sorted into one failure mode (README: Accuracy on generated scenes, session 12).

    python3 benchmarks/failure_modes.py /work/gen/val [--limit 50] [--model softgroup]
        [--checkpoint CKPT] [--score-threshold 0.2]

An instance is *found* when a proposal of its class at or above the score threshold overlaps it
at IoU >= 0.5. Otherwise, in this order: *semantic wrong* (under half its points are predicted
as its class); *fragmented / not proposed* (no proposal of any score or class holds half its
points); else, for the proposal holding most of it: *merged with same-class neighbours* (>= 30 %
of that proposal are other objects of the same class), *merged with other objects* (>= 30 %
other points), *low score or wrong class*, or *mask IoU < 0.5*.
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

import numpy as np
import torch

from ros2_inst3d.classes import SCANNET20_CLASSES, STUFF_CLASSES
from ros2_inst3d.config import Config
from ros2_inst3d.data.datasets import find_scene_files, read_scene
from ros2_inst3d.segmenter import build_point_model

MODES = ("found", "merged with same-class neighbours", "semantic wrong",
         "fragmented / not proposed", "merged with other objects", "low score or wrong class",
         "mask IoU < 0.5")


def iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.intersect1d(a, b, assume_unique=True).size
    return inter / (a.size + b.size - inter)


def failure_mode(gt: np.ndarray, cls: int, proposals, point_class: np.ndarray,
                 instance: np.ndarray, semantic: np.ndarray, threshold: float) -> str:
    if any(c == cls and s >= threshold and iou(gt, ix) >= 0.5 for ix, c, s in proposals):
        return "found"
    if np.mean(point_class[gt] == cls) < 0.5:
        return "semantic wrong"
    cover = [(np.intersect1d(gt, ix, assume_unique=True).size / gt.size, ix, c, s)
             for ix, c, s in proposals]
    share, ix, c, s = max(cover, key=lambda t: t[0], default=(0.0, None, None, None))
    if share < 0.5:
        return "fragmented / not proposed"
    others = instance[ix] != instance[gt[0]]
    same_class = others & (instance[ix] >= 0) & (semantic[ix] == cls)
    if same_class.mean() >= 0.3:
        return "merged with same-class neighbours"
    if (others & ~same_class).mean() >= 0.3:
        return "merged with other objects"
    if s < threshold or c != cls:
        return "low score or wrong class"
    return "mask IoU < 0.5"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="folder of labelled rooms")
    parser.add_argument("--limit", type=int, default=50, help="first N rooms (default 50)")
    parser.add_argument("--model", default="softgroup")
    parser.add_argument("--checkpoint", help="weights (default: the shipped ones)")
    parser.add_argument("--score-threshold", type=float, default=0.2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    overrides = {"model.name": args.model, "model.device": "cpu"}
    if args.checkpoint:
        overrides["model.checkpoint"] = args.checkpoint
    model = build_point_model(Config().replace(**overrides))
    counts: collections.Counter = collections.Counter()
    per_class: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for path in find_scene_files(args.data)[:args.limit]:
        room = read_scene(path)
        pred = model.predict_points(room.xyz, room.rgb)
        proposals = list(zip(pred.indices, pred.class_ids, pred.scores))
        for inst in np.unique(room.instance[room.instance >= 0]):
            gt = np.flatnonzero(room.instance == inst)
            cls = int(np.bincount(room.semantic[gt]).argmax())
            if cls in STUFF_CLASSES:
                continue
            mode = failure_mode(gt, cls, proposals, pred.point_class, room.instance,
                                room.semantic, args.score_threshold)
            counts[mode] += 1
            per_class[SCANNET20_CLASSES[cls]][mode] += 1
    total = sum(counts.values())
    print(f"| failure mode | objects | share |\n|---|---|---|")
    for mode in MODES:
        print(f"| {mode} | {counts[mode]} | {counts[mode] / max(total, 1):.1%} |")
    print(f"| all | {total} | |\n")
    for cls, c in sorted(per_class.items(), key=lambda t: -sum(t[1].values())):
        print(f"{cls:15s} " + ", ".join(f"{m}: {c[m]}" for m in MODES if c[m]))


if __name__ == "__main__":
    main()
