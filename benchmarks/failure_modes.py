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
from ros2_inst3d.model import proposal_ops
from ros2_inst3d.ops import SparseMasks, mask_iou
from ros2_inst3d.segmenter import build_point_model

MODES = ("found", "merged with same-class neighbours", "semantic wrong",
         "fragmented / not proposed", "merged with other objects", "low score or wrong class",
         "mask IoU < 0.5")


def overlaps(instance: np.ndarray, indices) -> tuple[np.ndarray, np.ndarray]:
    """(I, K) IoU and (I, K) share of each ground-truth instance 0..I-1 of ``instance`` (per point,
    -1 none) held by each proposal of ``indices`` (K point-index arrays), from ``ops.mask_iou``
    (intersection = IoU (|a| + |b|) / (1 + IoU), rounded: it counts points)."""
    gt = proposal_ops.clusters_to_masks(torch.from_numpy(instance.astype(np.int64)))
    sizes = [len(ix) for ix in indices]
    pred = SparseMasks(torch.repeat_interleave(torch.arange(len(indices)), torch.tensor(sizes)),
                       torch.from_numpy(np.concatenate(indices).astype(np.int64)) if indices
                       else torch.zeros(0, dtype=torch.int64), len(indices))
    iou = mask_iou(gt, pred).double().numpy()
    gt_size = np.bincount(instance[instance >= 0], minlength=iou.shape[0])[:, None]
    inter = np.rint(iou * (gt_size + np.asarray(sizes)[None, :]) / (1 + iou))
    return iou, inter / np.maximum(gt_size, 1)


def failure_mode(gt: np.ndarray, cls: int, proposals, iou: np.ndarray, share: np.ndarray,
                 point_class: np.ndarray, instance: np.ndarray, semantic: np.ndarray,
                 threshold: float) -> str:
    """The failure mode of the instance at points ``gt`` of class ``cls``, given ``proposals``
    ((indices, class, score) each) and its (K,) ``iou`` with them and ``share`` held by them."""
    if any(c == cls and s >= threshold and o >= 0.5 for (_, c, s), o in zip(proposals, iou)):
        return "found"
    if np.mean(point_class[gt] == cls) < 0.5:
        return "semantic wrong"
    if not proposals or share.max() < 0.5:
        return "fragmented / not proposed"
    ix, c, s = proposals[int(share.argmax())]
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
        iou, share = overlaps(room.instance, list(pred.indices))
        for inst in np.unique(room.instance[room.instance >= 0]):
            gt = np.flatnonzero(room.instance == inst)
            cls = int(np.bincount(room.semantic[gt]).argmax())
            if cls in STUFF_CLASSES:
                continue
            mode = failure_mode(gt, cls, proposals, iou[inst], share[inst], pred.point_class,
                                room.instance, room.semantic, args.score_threshold)
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
