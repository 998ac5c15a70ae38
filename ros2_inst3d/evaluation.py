"""Instance-segmentation metrics: the ScanNet benchmark's AP and the S3DIS coverage metrics.

**ScanNet AP** (AP averaged over IoU 0.50:0.05:0.90, AP50, AP25, per class and mean) reproduces
``evaluate_semantic_instance.py`` of the ScanNet benchmark exactly as SoftGroup and ISBNet run it
in memory (``softgroup/evaluation/instance_eval.py:ScanNetEval``; research/official-models.md §8).
Every rule below is a rule of that script; the comments name the part of it they come from:

* thresholds ``np.append(np.arange(0.5, 0.95, 0.05), 0.25)``, ``min_region_sizes = [100]``,
  ``distance_threshes = [inf]`` (so the distance filters never fire and are left out);
* ground truth is ``semantic * 1000 + instance + 1`` with 0 for points whose instance is < 0 or
  whose class is not evaluated. Such points are *void*: stuff (wall, floor), ignore (-100) and
  unlabelled thing points. GT instances with fewer than 100 points are ignored;
* predictions with fewer than 100 points are dropped; a prediction only meets GT of its own class;
* matching at each threshold is greedy over GT instances (in id order) and, per GT, over the
  predictions that intersect it (in prediction order). A match needs ``iou > threshold``
  (strict). A prediction taken by an earlier GT is skipped. When a GT already has a match, the
  pair's lower confidence becomes a false positive and the GT keeps the higher one;
* a prediction matching no GT (small GT included) is a false positive unless
  ``(void points + points of small GT of its class) / its size > threshold``;
* AP integrates the precision-recall curve sampled at the unique confidences with the official
  ``np.dot(precision, np.convolve(recall, [-0.5, 0, 0.5], 'valid'))``;
* a class with GT but no prediction has AP 0; a class without GT has AP NaN (even when it has
  predictions) and is left out of the means (``np.nanmean``).

One case the official script does not survive: a class with GT and predictions where every
prediction is ignored (it indexes an empty array and raises). Here it scores AP 0, as a class
with GT and no predictions does.

**S3DIS metrics** (mCov, mWCov, mPrec50, mRec50) follow ISBNet's ``isbnet/evaluation/s3dis_eval.py``
(the ASIS protocol): overlapping predictions are first fused into one label per point, higher
confidence painted last; coverage is the mean over GT instances of the best same-class IoU,
averaged per scene and then over scenes; a prediction is a true positive when its best same-class
IoU is >= 0.5 (not one-to-one). ISBNet also counts the unpredicted points as one "ceiling"
prediction (its background id 0 is not skipped); that artefact is not reproduced.

**Class-agnostic mode** (``use_label=False`` in the official code) merges all evaluated classes
into one and evaluates every prediction whatever its class: the mode for comparing the geometric
baseline, which labels everything "otherfurniture".

**LiDAR objects on a street** (``kitti_object_scores``; SemanticKITTI's labels: semantic = low
16 bits, instance = high 16 bits) is the rule of issue #10 for the ``lidar`` method, which knows
no classes: labelled things (car, bicycle, person, bicyclist and their moving ids) with >= 50
points, each matched when some returned instance covers it at IoU >= 0.5, and the returned
instances whose points are mostly road, parking, sidewalk, other-ground, building, fence,
vegetation or terrain counted as junk (poles, trunks and signs are objects to a robot).

Files: ground truth is a scene file (internal ``.npz`` or a preprocessed ``.pth``), the prediction
of scene ``<stem>`` is ``<stem>.labels.npz`` as written by ``ros2-inst3d segment``.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .classes import S3DIS_CLASSES, SCANNET20_CLASSES, thing_classes
from .io import PREDICTION_SUFFIX

log = logging.getLogger(__name__)

# evaluate_semantic_instance.py: opt.overlaps. Built with the same expression so that the float
# values (0.6000000000000001, ...) and hence the strict ``iou > threshold`` tests agree bit for bit.
IOU_THRESHOLDS: np.ndarray = np.append(np.arange(0.5, 0.95, 0.05), 0.25)
MIN_REGION_SIZE = 100  # opt.min_region_sizes = [100] (points)
S3DIS_IOU_THRESHOLD = 0.5  # s3dis_eval.py: self.at, compared with >=
AGNOSTIC_NAME = "class_agnostic"


# --------------------------------------------------------------------------------------------
# Predictions
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Prediction:
    """Predicted instances of one scene; masks may overlap.

    The masks are stored in CSR form: the points of mask ``k`` are
    ``mask_points[mask_ptr[k]:mask_ptr[k + 1]]`` (ascending, unique).

    num_points: N, the number of points of the scene the masks index.
    classes: (K,) int64, class index of each mask (same table as the ground truth).
    scores: (K,) float64, confidence of each mask (higher = more confident).
    mask_ptr: (K + 1,) int64.
    mask_points: (nnz,) int64, point indices in [0, N).
    """

    num_points: int
    classes: np.ndarray
    scores: np.ndarray
    mask_ptr: np.ndarray
    mask_points: np.ndarray

    @property
    def num_masks(self) -> int:
        return int(self.classes.shape[0])

    def mask_sizes(self) -> np.ndarray:
        """(K,) int64 number of points of each mask."""
        return np.diff(self.mask_ptr)

    def mask_ids(self) -> np.ndarray:
        """(nnz,) int64 mask index of every entry of ``mask_points``."""
        return np.repeat(np.arange(self.num_masks, dtype=np.int64), self.mask_sizes())

    def mask(self, k: int) -> np.ndarray:
        """(n_k,) int64 point indices of mask ``k``."""
        return self.mask_points[self.mask_ptr[k]:self.mask_ptr[k + 1]]

    def keep(self, selected: np.ndarray) -> "Prediction":
        """The masks where ``selected`` ((K,) bool) is true, in their order."""
        selected = np.asarray(selected, dtype=bool)
        sizes = self.mask_sizes()[selected]
        ptr = np.zeros(sizes.size + 1, np.int64)
        np.cumsum(sizes, out=ptr[1:])
        return Prediction(self.num_points, self.classes[selected], self.scores[selected], ptr,
                          self.mask_points[np.repeat(selected, self.mask_sizes())])

    def dense(self) -> np.ndarray:
        """(K, N) bool masks."""
        out = np.zeros((self.num_masks, self.num_points), dtype=bool)
        out[self.mask_ids(), self.mask_points] = True
        return out

    @classmethod
    def empty(cls, num_points: int) -> "Prediction":
        return cls(int(num_points), np.zeros(0, np.int64), np.zeros(0, np.float64),
                   np.zeros(1, np.int64), np.zeros(0, np.int64))

    @classmethod
    def from_masks(cls, masks: np.ndarray, classes: Sequence[int] | np.ndarray,
                   scores: Sequence[float] | np.ndarray) -> "Prediction":
        """From dense masks: masks (K, N) bool (or 0/1), classes (K,), scores (K,)."""
        masks = np.asarray(masks)
        if masks.ndim != 2:
            raise ValueError(f"masks must be (K, N), got shape {masks.shape}")
        classes, scores = _check_mask_table(masks.shape[0], classes, scores)
        rows, cols = np.nonzero(masks)  # row-major: grouped by mask, points ascending
        ptr = np.zeros(masks.shape[0] + 1, np.int64)
        np.cumsum(np.bincount(rows, minlength=masks.shape[0]), out=ptr[1:])
        return cls(int(masks.shape[1]), classes, scores, ptr, cols.astype(np.int64))

    @classmethod
    def from_indices(cls, indices: Sequence[np.ndarray], classes: Sequence[int] | np.ndarray,
                     scores: Sequence[float] | np.ndarray, num_points: int) -> "Prediction":
        """From one point-index array per mask (e.g. ``Instances.indices``, ``class_ids``, ``scores``)."""
        classes, scores = _check_mask_table(len(indices), classes, scores)
        parts = [np.unique(np.asarray(ix, dtype=np.int64)) for ix in indices]
        for k, part in enumerate(parts):
            if part.size and (part[0] < 0 or part[-1] >= num_points):
                raise ValueError(f"mask {k} indexes points outside [0, {num_points}): "
                                 f"min {part[0]}, max {part[-1]}")
        ptr = np.zeros(len(parts) + 1, np.int64)
        np.cumsum([p.size for p in parts], out=ptr[1:])
        points = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        return cls(int(num_points), classes, scores, ptr, points)

    @classmethod
    def from_point_labels(cls, instance: np.ndarray, instance_class: Sequence[int] | np.ndarray,
                          instance_score: Sequence[float] | np.ndarray) -> "Prediction":
        """From one instance id per point (the ``segment`` output).

        instance: (N,) int, ids in [0, K) or -1 for no instance.
        instance_class, instance_score: (K,) indexed by instance id.
        """
        instance = np.asarray(instance)
        if instance.ndim != 1 or not np.issubdtype(instance.dtype, np.integer):
            raise ValueError(f"instance must be a 1-D integer array, got {instance.dtype} "
                             f"{instance.shape}")
        classes, scores = _check_mask_table(len(instance_class), instance_class, instance_score)
        num_masks = classes.shape[0]
        labelled = np.flatnonzero(instance >= 0)
        ids = instance[labelled].astype(np.int64)
        if ids.size and ids.max() >= num_masks:
            raise ValueError(f"instance ids go up to {ids.max()} but instance_class/"
                             f"instance_score have only {num_masks} entries (one per id)")
        bad = instance[(instance < 0) & (instance != -1)]
        if bad.size:
            raise ValueError(f"instance ids must be >= 0 or -1 (none); found {bad[0]}")
        order = np.argsort(ids, kind="stable")
        ptr = np.zeros(num_masks + 1, np.int64)
        np.cumsum(np.bincount(ids, minlength=num_masks), out=ptr[1:])
        return cls(int(instance.shape[0]), classes, scores, ptr, labelled[order].astype(np.int64))


def _check_mask_table(num_masks: int, classes, scores) -> tuple[np.ndarray, np.ndarray]:
    classes = np.asarray(classes)
    scores = np.asarray(scores, dtype=np.float64)
    if classes.shape != (num_masks,) or scores.shape != (num_masks,):
        raise ValueError(f"expected {num_masks} classes and scores (one per mask), got "
                         f"classes {classes.shape} and scores {scores.shape}")
    if classes.size and not np.issubdtype(classes.dtype, np.integer):
        raise ValueError(f"classes must be integers, got {classes.dtype}")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores must be finite (a NaN confidence cannot be ranked)")
    return classes.astype(np.int64), scores


def load_prediction(path: str | Path, num_points: int | None = None) -> Prediction:
    """Read a ``<stem>.labels.npz`` file written by ``ros2-inst3d segment``.

    Keys: ``instance`` int32 (N,) (-1 none), ``instance_class`` int32 (K,), ``instance_score``
    float32 (K,), optional ``masks``: ``np.packbits`` of bool (K, N), packed along the points
    (shape (K, ceil(N/8))) or flattened (shape (ceil(K*N/8),)). ``masks`` replaces ``instance``
    when present (overlapping proposals).
    """
    path = Path(path)
    with np.load(path, allow_pickle=False) as data:
        missing = {"instance", "instance_class", "instance_score"} - set(data.files)
        if missing:
            raise ValueError(f"{path}: not a prediction file, missing {sorted(missing)} "
                             f"(has {sorted(data.files)})")
        instance = data["instance"]
        classes = data["instance_class"]
        scores = data["instance_score"]
        packed = data["masks"] if "masks" in data.files else None
    n = int(instance.shape[0])
    if num_points is not None and n != num_points:
        raise ValueError(f"{path}: prediction has {n} points but its ground truth has "
                         f"{num_points}; predictions must label the scene file's points in order")
    if packed is None:
        return Prediction.from_point_labels(instance, classes, scores)
    k = int(np.asarray(classes).shape[0])
    if packed.ndim == 2:
        if packed.shape[0] != k or packed.shape[1] != (n + 7) // 8:
            raise ValueError(f"{path}: masks has shape {packed.shape}; expected ({k}, {(n + 7) // 8})"
                             f" = np.packbits(bool ({k}, {n}), axis=1)")
        masks = np.unpackbits(packed, axis=1, count=n).astype(bool)
    else:
        if packed.size != (k * n + 7) // 8:
            raise ValueError(f"{path}: masks has {packed.size} bytes; expected {(k * n + 7) // 8}"
                             f" = np.packbits(bool ({k}, {n}))")
        masks = np.unpackbits(packed.ravel(), count=k * n).astype(bool).reshape(k, n)
    return Prediction.from_masks(masks, classes, scores)


# --------------------------------------------------------------------------------------------
# Per-scene tables
# --------------------------------------------------------------------------------------------

@dataclass
class _LabelTable:
    """What one scene contributes to one evaluated label (a class, or the agnostic class)."""

    gt_sizes: np.ndarray      # (G,) points of every GT instance, small ones included
    pred_sizes: np.ndarray    # (P,) points of every kept prediction
    pred_scores: np.ndarray   # (P,)
    pred_void: np.ndarray     # (P,) points of the prediction on void GT points
    intersection: np.ndarray  # (G, P)


@dataclass
class _SceneCoverage:
    """S3DIS-metric inputs of one scene and label."""

    best_iou_of_gt: np.ndarray    # (G,) best IoU of each GT instance over same-label predictions
    gt_sizes: np.ndarray          # (G,)
    best_iou_of_pred: np.ndarray  # (P,) best IoU of each fused prediction over same-label GT


def _validate_gt(gt_semantic, gt_instance, pred: Prediction, scene: str):
    sem = np.asarray(gt_semantic)
    inst = np.asarray(gt_instance)
    if sem.ndim != 1 or inst.shape != sem.shape:
        raise ValueError(f"{scene}: gt_semantic and gt_instance must be (N,) arrays of the same "
                         f"length, got {sem.shape} and {inst.shape}")
    for name, arr in (("gt_semantic", sem), ("gt_instance", inst)):
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            if not np.all(np.mod(arr, 1) == 0):
                raise ValueError(f"{scene}: {name} must hold integer labels, got {arr.dtype} "
                                 "with fractional values")
    if pred.num_points != sem.shape[0]:
        raise ValueError(f"{scene}: prediction covers {pred.num_points} points, ground truth "
                         f"has {sem.shape[0]}")
    return sem.astype(np.int64), inst.astype(np.int64)


def _scene_tables(sem: np.ndarray, inst: np.ndarray, pred: Prediction,
                  eval_classes: np.ndarray, class_agnostic: bool,
                  min_region_size: int) -> list[_LabelTable]:
    num_labels = 1 if class_agnostic else len(eval_classes)
    # get_gt_instances: instance < 0 or a class outside the evaluated ones -> id 0 -> void.
    is_gt = (inst >= 0) & np.isin(sem, eval_classes)
    void = ~is_gt
    # GT ids sem*1000+inst+1 sorted by np.unique = sorted by (class, instance): the order in
    # which the official greedy matching visits GT instances.
    stride = max(int(inst.max()), 0) + 1 if inst.size else 1
    keys, gt_of_point = np.unique(sem[is_gt] * stride + inst[is_gt], return_inverse=True)
    gt_class = keys // stride
    gt_sizes = np.bincount(gt_of_point, minlength=keys.size).astype(np.int64)
    gt_index = np.full(sem.shape[0], -1, np.int64)
    gt_index[is_gt] = gt_of_point.reshape(-1)
    class_to_label = {int(c): i for i, c in enumerate(eval_classes)}
    gt_label = (np.zeros(keys.size, np.int64) if class_agnostic
                else np.array([class_to_label[int(c)] for c in gt_class], np.int64))

    # assign_instances_for_scan: predictions of classes outside the table are skipped (in the
    # agnostic mode every prediction counts), and so are those under min_region_size points.
    sizes = pred.mask_sizes()
    keep = sizes >= min_region_size
    if not class_agnostic:
        keep &= np.isin(pred.classes, eval_classes)
    kept = np.flatnonzero(keep)
    pred_label = (np.zeros(kept.size, np.int64) if class_agnostic
                  else np.array([class_to_label[int(c)] for c in pred.classes[kept]], np.int64))
    new_index = np.full(pred.num_masks, -1, np.int64)
    new_index[kept] = np.arange(kept.size)
    entry_pred = new_index[pred.mask_ids()]
    entry_ok = entry_pred >= 0
    entry_pred = entry_pred[entry_ok]
    entry_points = pred.mask_points[entry_ok]
    pred_void = np.bincount(entry_pred, weights=void[entry_points],
                            minlength=kept.size).astype(np.int64)
    entry_gt = gt_index[entry_points]
    on_gt = entry_gt >= 0
    intersection = np.bincount(entry_pred[on_gt] * keys.size + entry_gt[on_gt],
                               minlength=kept.size * keys.size).reshape(kept.size, keys.size)

    tables = []
    for label in range(num_labels):
        g = np.flatnonzero(gt_label == label)
        p = np.flatnonzero(pred_label == label)
        tables.append(_LabelTable(
            gt_sizes=gt_sizes[g], pred_sizes=sizes[kept[p]].astype(np.int64),
            pred_scores=pred.scores[kept[p]], pred_void=pred_void[p],
            intersection=intersection[np.ix_(p, g)].T.copy()))
    return tables


def _scene_coverage(sem: np.ndarray, inst: np.ndarray, pred: Prediction,
                    eval_classes: np.ndarray, class_agnostic: bool) -> list[_SceneCoverage]:
    num_labels = 1 if class_agnostic else len(eval_classes)
    n = sem.shape[0]
    # s3dis_eval.py: a GT instance is an instance id; its class is the most frequent semantic
    # label of its points (scipy.stats.mode: ties -> the smaller class); ignored points dropped.
    valid = (inst >= 0) & (sem >= 0)
    ids, gt_of_point = np.unique(inst[valid], return_inverse=True)
    gt_of_point = gt_of_point.reshape(-1)
    num_classes = int(max(sem.max(initial=0), eval_classes.max(initial=0))) + 1
    votes = np.bincount(gt_of_point * num_classes + sem[valid],
                        minlength=ids.size * num_classes).reshape(ids.size, num_classes)
    gt_class = votes.argmax(axis=1) if ids.size else np.zeros(0, np.int64)
    gt_sizes = np.bincount(gt_of_point, minlength=ids.size)
    gt_index = np.full(n, -1, np.int64)
    gt_index[valid] = gt_of_point

    # Fuse overlapping masks: ascending confidence, later paints over earlier (stable on ties).
    rank = np.empty(pred.num_masks, np.int64)
    rank[np.argsort(pred.scores, kind="stable")] = np.arange(pred.num_masks)
    point_rank = np.full(n, -1, np.int64)
    if pred.mask_points.size:
        np.maximum.at(point_rank, pred.mask_points, rank[pred.mask_ids()])
    painted = point_rank >= 0
    fused_ranks, fused_of_point = np.unique(point_rank[painted], return_inverse=True)
    fused_of_point = fused_of_point.reshape(-1)
    mask_of_rank = np.argsort(rank)
    fused_class = pred.classes[mask_of_rank[fused_ranks]]
    fused_sizes = np.bincount(fused_of_point, minlength=fused_ranks.size)
    both = gt_index[painted] >= 0
    inter = np.bincount(fused_of_point[both] * ids.size + gt_index[painted][both],
                        minlength=fused_ranks.size * ids.size).reshape(fused_ranks.size, ids.size)
    union = fused_sizes[:, None] + gt_sizes[None, :] - inter
    iou = np.divide(inter, union, out=np.zeros(inter.shape), where=union > 0)

    class_to_label = {int(c): i for i, c in enumerate(eval_classes)}
    if class_agnostic:
        gt_label = np.where(np.isin(gt_class, eval_classes), 0, -1)
        pred_label = np.zeros(fused_ranks.size, np.int64)
    else:
        gt_label = np.array([class_to_label.get(int(c), -1) for c in gt_class], np.int64)
        pred_label = np.array([class_to_label.get(int(c), -1) for c in fused_class], np.int64)
    out = []
    for label in range(num_labels):
        g = np.flatnonzero(gt_label == label)
        p = np.flatnonzero(pred_label == label)
        sub = iou[np.ix_(p, g)]
        out.append(_SceneCoverage(
            best_iou_of_gt=sub.max(axis=0, initial=0.0),
            gt_sizes=gt_sizes[g].astype(np.int64),
            # s3dis_eval.py starts the best IoU at -1: a prediction without GT is a false positive
            best_iou_of_pred=sub.max(axis=1, initial=-1.0)))
    return out


# --------------------------------------------------------------------------------------------
# Matching and AP (evaluate_matches)
# --------------------------------------------------------------------------------------------

def _match_label(tables: Sequence[_LabelTable], iou_threshold: float, min_region_size: int):
    """True/false flags, scores and hard false negatives of one label at one IoU threshold."""
    y_true: list[np.ndarray] = []
    y_score: list[np.ndarray] = []
    hard_false_negatives = 0
    has_gt = has_pred = False
    for t in tables:
        big = t.gt_sizes >= min_region_size
        has_gt |= bool(big.any())
        has_pred |= t.pred_sizes.size > 0
        inter = t.intersection
        union = t.gt_sizes[:, None] + t.pred_sizes[None, :] - inter
        iou = np.divide(inter, union, out=np.zeros(inter.shape), where=inter > 0)
        visited = np.zeros(t.pred_sizes.size, bool)  # pred_visited, reset per threshold
        trues: list[float] = []
        scores: list[float] = []
        for g in np.flatnonzero(big):
            matched = False
            best = -math.inf
            for p in np.flatnonzero(inter[g] > 0):  # gt['matched_pred'], prediction order
                if visited[p] or not iou[g, p] > iou_threshold:
                    continue
                confidence = float(t.pred_scores[p])
                if matched:
                    # "the prediction with the lower score is automatically a FP"; this
                    # prediction is not marked visited, so it may still match a later GT.
                    trues.append(0.0)
                    scores.append(min(best, confidence))
                    best = max(best, confidence)
                else:
                    matched = True
                    best = confidence
                    visited[p] = True
            if matched:
                trues.append(1.0)
                scores.append(best)
            else:
                hard_false_negatives += 1
        # Predictions that match no GT at all (small GT included) are false positives unless
        # mostly on void points or on small GT instances of their class.
        matched_any = (iou > iou_threshold).any(axis=0)
        ignored = t.pred_void + inter[~big].sum(axis=0)
        false_pos = ~matched_any & (ignored / np.maximum(t.pred_sizes, 1) <= iou_threshold)
        y_true.append(np.asarray(trues, np.float64))
        y_true.append(np.zeros(int(false_pos.sum())))
        y_score.append(np.asarray(scores, np.float64))
        y_score.append(t.pred_scores[false_pos].astype(np.float64))
    return (np.concatenate(y_true) if y_true else np.zeros(0),
            np.concatenate(y_score) if y_score else np.zeros(0),
            hard_false_negatives, has_gt, has_pred)


def average_precision(y_true: np.ndarray, y_score: np.ndarray, hard_false_negatives: int
                      ) -> tuple[float, float, np.ndarray, np.ndarray]:
    """AP of one class at one threshold, the official way.

    y_true: (E,) 1 for a true positive, 0 for a false positive; y_score: (E,) confidences;
    hard_false_negatives: GT instances no prediction matched. Returns (ap, recall at the lowest
    confidence, precision curve, recall curve); the curves are sampled at the unique
    confidences in ascending order, plus the artificial end point (recall 0, precision 1).
    """
    y_true = np.asarray(y_true, np.float64)
    y_score = np.asarray(y_score, np.float64)
    num_true = y_true.sum()
    if y_true.size == 0 or num_true + hard_false_negatives == 0:
        # Nothing ranked (all predictions ignored): the official script raises here.
        return 0.0, 0.0, np.array([1.0]), np.array([0.0])
    order = np.argsort(y_score)
    sorted_true = y_true[order]
    _, first_of_score = np.unique(y_score[order], return_index=True)
    true_below = np.concatenate([[0.0], np.cumsum(sorted_true)])[first_of_score]
    tp = num_true - true_below
    fp = y_true.size - first_of_score - tp
    fn = true_below + hard_false_negatives
    precision = np.append(tp / (tp + fp), 1.0)
    recall = np.append(tp / (tp + fn), 0.0)
    recall_for_conv = np.concatenate([[recall[0]], recall, [0.0]])
    step_widths = np.convolve(recall_for_conv, [-0.5, 0, 0.5], "valid")
    return float(np.dot(precision, step_widths)), float(recall[0]), precision, recall


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------

def _nanmean(values) -> float:
    values = np.asarray(values, np.float64)
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else math.nan


def _json_number(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


@dataclass
class EvalResult:
    """Metrics of a set of scenes. Arrays are indexed by evaluated label (class or agnostic).

    ap, recall: (L, T) over ``iou_thresholds`` (T = 10: 0.50..0.90 then 0.25); NaN = no GT.
    num_gt: (L,) GT instances with >= min_region_size points; num_pred: (L,) kept predictions.
    coverage, weighted_coverage, precision50, recall50: (L,) S3DIS metrics (NaN = undefined).
    pr_curves: (label, threshold index) -> (recall, precision) arrays of the official curve.
    """

    label_names: tuple[str, ...]
    label_class_ids: tuple[int, ...]  # class index per label; -1 for the agnostic label
    iou_thresholds: np.ndarray
    ap: np.ndarray
    recall: np.ndarray
    num_gt: np.ndarray
    num_pred: np.ndarray
    coverage: np.ndarray
    weighted_coverage: np.ndarray
    precision50: np.ndarray
    recall50: np.ndarray
    num_scenes: int
    class_agnostic: bool
    min_region_size: int
    pr_curves: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = field(repr=False,
                                                                            default_factory=dict)

    def _threshold_index(self, value: float) -> np.ndarray:
        return np.flatnonzero(np.isclose(self.iou_thresholds, value))

    @property
    def _main_thresholds(self) -> np.ndarray:
        return np.flatnonzero(~np.isclose(self.iou_thresholds, 0.25))

    def class_ap(self) -> np.ndarray:
        """(L,) AP of each label averaged over 0.50:0.95 (NaN without GT)."""
        sel = self.ap[:, self._main_thresholds]
        return np.array([np.nan if np.isnan(row).all() else row.mean() for row in sel])

    def class_ap_at(self, iou: float) -> np.ndarray:
        return self.ap[:, self._threshold_index(iou)].mean(axis=1)

    @property
    def AP(self) -> float:  # noqa: N802 - the benchmark's name
        return _nanmean(self.ap[:, self._main_thresholds])

    @property
    def AP50(self) -> float:  # noqa: N802
        return _nanmean(self.ap[:, self._threshold_index(0.5)])

    @property
    def AP25(self) -> float:  # noqa: N802
        return _nanmean(self.ap[:, self._threshold_index(0.25)])

    def to_dict(self) -> dict:
        """JSON-ready metrics: fractions in [0, 1]; NaN (undefined) becomes null."""
        ap_all = self.class_ap()
        ap50 = self.class_ap_at(0.5)
        ap25 = self.class_ap_at(0.25)
        rc = self.recall
        per_class = {}
        for i, name in enumerate(self.label_names):
            per_class[name] = {
                "class_id": self.label_class_ids[i],
                "AP": _json_number(ap_all[i]), "AP50": _json_number(ap50[i]),
                "AP25": _json_number(ap25[i]),
                "RC": _json_number(_nanmean(rc[i, self._main_thresholds])),
                "RC50": _json_number(_nanmean(rc[i, self._threshold_index(0.5)])),
                "RC25": _json_number(_nanmean(rc[i, self._threshold_index(0.25)])),
                "num_gt": int(self.num_gt[i]), "num_pred": int(self.num_pred[i]),
                "mCov": _json_number(self.coverage[i]),
                "mWCov": _json_number(self.weighted_coverage[i]),
                "mPrec50": _json_number(self.precision50[i]),
                "mRec50": _json_number(self.recall50[i]),
            }
        return {
            "AP": _json_number(self.AP), "AP50": _json_number(self.AP50),
            "AP25": _json_number(self.AP25),
            "RC": _json_number(_nanmean(rc[:, self._main_thresholds])),
            "RC50": _json_number(_nanmean(rc[:, self._threshold_index(0.5)])),
            "RC25": _json_number(_nanmean(rc[:, self._threshold_index(0.25)])),
            "mCov": _json_number(_nanmean(self.coverage)),
            "mWCov": _json_number(_nanmean(self.weighted_coverage)),
            "mPrec50": _json_number(_nanmean(self.precision50)),
            "mRec50": _json_number(_nanmean(self.recall50)),
            "per_class": per_class,
            "class_agnostic": self.class_agnostic,
            "num_scenes": self.num_scenes,
            "min_region_size": self.min_region_size,
            "iou_thresholds": [float(t) for t in self.iou_thresholds],
            "protocol": "ScanNet evaluate_semantic_instance.py (AP); ISBNet s3dis_eval.py (mCov, "
                        "mWCov, mPrec50, mRec50)",
        }

    def table(self) -> str:
        """The per-class table, like the official print_results, plus the S3DIS columns."""
        head = (f"{'class':<16}{'AP':>7}{'AP50':>7}{'AP25':>7}{'mCov':>7}{'mWCov':>7}"
                f"{'Prec50':>7}{'Rec50':>7}{'#gt':>6}{'#pred':>7}")
        rule = "-" * len(head)

        def fmt(x: float) -> str:
            return f"{'-':>7}" if not math.isfinite(x) else f"{x:7.3f}"

        lines = [head, rule]
        ap_all, ap50, ap25 = self.class_ap(), self.class_ap_at(0.5), self.class_ap_at(0.25)
        for i, name in enumerate(self.label_names):
            lines.append(f"{name:<16}{fmt(ap_all[i])}{fmt(ap50[i])}{fmt(ap25[i])}"
                         f"{fmt(self.coverage[i])}{fmt(self.weighted_coverage[i])}"
                         f"{fmt(self.precision50[i])}{fmt(self.recall50[i])}"
                         f"{int(self.num_gt[i]):>6}{int(self.num_pred[i]):>7}")
        lines.append(rule)
        lines.append(f"{'average':<16}{fmt(self.AP)}{fmt(self.AP50)}{fmt(self.AP25)}"
                     f"{fmt(_nanmean(self.coverage))}{fmt(_nanmean(self.weighted_coverage))}"
                     f"{fmt(_nanmean(self.precision50))}{fmt(_nanmean(self.recall50))}"
                     f"{int(self.num_gt.sum()):>6}{int(self.num_pred.sum()):>7}")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------

def default_eval_classes(class_names: Sequence[str]) -> tuple[int, ...]:
    """Classes with instances: the S3DIS table evaluates all 13, others drop the stuff classes."""
    if tuple(class_names) == S3DIS_CLASSES:
        return tuple(range(len(S3DIS_CLASSES)))
    return thing_classes(tuple(class_names))


def evaluate(pairs: Iterable[tuple[np.ndarray, np.ndarray, Prediction]],
             class_names: Sequence[str] = SCANNET20_CLASSES,
             eval_classes: Sequence[int] | None = None, *, class_agnostic: bool = False,
             min_region_size: int = MIN_REGION_SIZE,
             scene_names: Sequence[str] | None = None) -> EvalResult:
    """Score predictions against ground truth, scene by scene.

    pairs: (gt_semantic (N,) int, gt_instance (N,) int, prediction) per scene; labels use
        ``class_names``' indices, -100 = ignore / no instance.
    eval_classes: class indices that have instances (default: ``default_eval_classes``).
    class_agnostic: merge the evaluated classes into one and evaluate every prediction.
    """
    class_names = tuple(class_names)
    classes = np.asarray(default_eval_classes(class_names) if eval_classes is None
                         else tuple(eval_classes), np.int64)
    if classes.size == 0 or classes.min() < 0 or classes.max() >= len(class_names):
        raise ValueError(f"eval_classes {classes.tolist()} must be non-empty indices into the "
                         f"{len(class_names)}-class table")
    if class_agnostic:
        label_names: tuple[str, ...] = (AGNOSTIC_NAME,)
        label_ids: tuple[int, ...] = (-1,)
    else:
        label_names = tuple(class_names[c] for c in classes)
        label_ids = tuple(int(c) for c in classes)
    num_labels = len(label_names)

    tables: list[list[_LabelTable]] = [[] for _ in range(num_labels)]
    coverages: list[list[_SceneCoverage]] = [[] for _ in range(num_labels)]
    num_scenes = 0
    for i, (gt_semantic, gt_instance, pred) in enumerate(pairs):
        scene = scene_names[i] if scene_names is not None else f"scene {i}"
        sem, inst = _validate_gt(gt_semantic, gt_instance, pred, scene)
        outside = pred.classes[(pred.classes < 0) | (pred.classes >= len(class_names))]
        if outside.size:
            raise ValueError(f"{scene}: a prediction has class {int(outside[0])}, outside the "
                             f"{len(class_names)}-class table of the ground truth; the model and "
                             "the data use different label spaces")
        for label, table in enumerate(_scene_tables(sem, inst, pred, classes, class_agnostic,
                                                    min_region_size)):
            tables[label].append(table)
        for label, cov in enumerate(_scene_coverage(sem, inst, pred, classes, class_agnostic)):
            coverages[label].append(cov)
        num_scenes += 1

    thresholds = IOU_THRESHOLDS
    ap = np.full((num_labels, thresholds.size), np.nan)
    rc = np.full((num_labels, thresholds.size), np.nan)
    curves: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
    for label in range(num_labels):
        for ti, th in enumerate(thresholds):
            y_true, y_score, hard_fn, has_gt, has_pred = _match_label(tables[label], th,
                                                                      min_region_size)
            if has_gt and has_pred:
                ap[label, ti], rc[label, ti], precision, recall = average_precision(
                    y_true, y_score, hard_fn)
                curves[(label, ti)] = (recall, precision)
            elif has_gt:
                ap[label, ti] = rc[label, ti] = 0.0
    num_gt = np.array([sum(int((t.gt_sizes >= min_region_size).sum()) for t in tables[label])
                       for label in range(num_labels)], np.int64)
    num_pred = np.array([sum(t.pred_sizes.size for t in tables[label])
                         for label in range(num_labels)], np.int64)

    cov = np.full(num_labels, np.nan)
    wcov = np.full(num_labels, np.nan)
    prec = np.full(num_labels, np.nan)
    rec = np.full(num_labels, np.nan)
    for label in range(num_labels):
        scene_cov = [c.best_iou_of_gt.mean() for c in coverages[label] if c.gt_sizes.size]
        scene_wcov = [np.dot(c.best_iou_of_gt, c.gt_sizes) / c.gt_sizes.sum()
                      for c in coverages[label] if c.gt_sizes.size]
        if scene_cov:
            cov[label] = np.mean(scene_cov)
            wcov[label] = np.mean(scene_wcov)
        best = (np.concatenate([c.best_iou_of_pred for c in coverages[label]])
                if coverages[label] else np.zeros(0))
        tp = float((best >= S3DIS_IOU_THRESHOLD).sum())
        total_gt = sum(c.gt_sizes.size for c in coverages[label])
        if best.size:
            prec[label] = tp / best.size
        if total_gt:
            rec[label] = min(1.0, tp / total_gt)

    return EvalResult(label_names=label_names, label_class_ids=label_ids,
                      iou_thresholds=thresholds.copy(), ap=ap, recall=rc, num_gt=num_gt,
                      num_pred=num_pred, coverage=cov, weighted_coverage=wcov, precision50=prec,
                      recall50=rec, num_scenes=num_scenes, class_agnostic=class_agnostic,
                      min_region_size=min_region_size, pr_curves=curves)


def evaluate_scenes(preds: Iterable[Prediction], gts: Iterable[tuple[np.ndarray, np.ndarray]],
                    **kwargs) -> EvalResult:
    """``evaluate`` with predictions and ``(gt_semantic, gt_instance)`` given as two sequences."""
    return evaluate(((sem, inst, pred) for pred, (sem, inst) in zip(preds, gts, strict=True)),
                    **kwargs)


def _prediction_path(pred_dir: Path, gt_path: Path) -> Path:
    from .data.datasets import scene_stem

    return pred_dir / (scene_stem(gt_path) + PREDICTION_SUFFIX)


def evaluate_dirs(pred_dir: str | Path, gt_dir: str | Path, class_agnostic: bool = False, *,
                  return_result: bool = False) -> dict | EvalResult:
    """Score ``<stem>.labels.npz`` files in ``pred_dir`` against the scene files in ``gt_dir``.

    Every scene file of ``gt_dir`` needs its prediction (a missing one is an error, not a
    silently skipped scene); ``pred_dir`` may be ``gt_dir``. The class table comes from the scene
    files and must be the same in all. Returns the JSON dict of ``EvalResult.to_dict`` (or the
    ``EvalResult`` with ``return_result=True``).
    """
    from .data.datasets import find_scene_files, read_scene, scene_stem

    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    for d, what in ((pred_dir, "prediction"), (gt_dir, "ground-truth")):
        if not d.is_dir():
            raise FileNotFoundError(f"{what} directory {d} does not exist")
    gt_files = find_scene_files(gt_dir)
    if not gt_files:
        raise FileNotFoundError(f"no scene files (.npz / .pth) in {gt_dir}")
    missing = [p.name for p in gt_files if not _prediction_path(pred_dir, p).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {len(gt_files)} ground-truth scenes have no prediction "
            f"<stem>{PREDICTION_SUFFIX} in {pred_dir}: {', '.join(missing[:5])}"
            f"{' ...' if len(missing) > 5 else ''}. Run `ros2-inst3d segment` on them or "
            "evaluate a directory holding only the predicted scenes.")
    expected = {scene_stem(p) for p in gt_files}
    extra = [p.name for p in sorted(pred_dir.glob("*" + PREDICTION_SUFFIX))
             if p.name[:-len(PREDICTION_SUFFIX)] not in expected]
    if extra:
        log.warning("%d prediction files have no ground truth in %s and are not scored: %s",
                    len(extra), gt_dir, ", ".join(extra[:5]))

    first = read_scene(gt_files[0])
    class_names = first.class_names

    def pairs():
        for i, path in enumerate(gt_files):
            scene = first if i == 0 else read_scene(path)
            if scene.semantic is None or scene.instance is None:
                raise ValueError(f"{path} has no semantic/instance labels; it cannot be ground "
                                 "truth")
            if scene.class_names != class_names:
                raise ValueError(f"{path} uses the class table {scene.class_names}, "
                                 f"{gt_files[0].name} uses {class_names}; evaluate one label "
                                 "space at a time")
            yield scene.semantic, scene.instance, load_prediction(
                _prediction_path(pred_dir, path), scene.num_points)

    result = evaluate(pairs(), class_names, class_agnostic=class_agnostic,
                      scene_names=[p.name for p in gt_files])
    return result if return_result else result.to_dict()


def plot_pr_curves(result: EvalResult, path: str | Path,
                   iou_thresholds: Sequence[float] = (0.5, 0.25)) -> Path:
    """Write a PNG with one precision-recall panel per IoU threshold, one curve per class."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    fig = Figure(figsize=(6 * len(iou_thresholds), 5.5), dpi=100)
    FigureCanvasAgg(fig)
    for j, th in enumerate(iou_thresholds):
        ax = fig.add_subplot(1, len(iou_thresholds), j + 1)
        ti = int(result._threshold_index(th)[0])
        for label, name in enumerate(result.label_names):
            curve = result.pr_curves.get((label, ti))
            if curve is None:
                continue
            recall, precision = curve
            # From the artificial start (recall 0, precision 1) down the confidences.
            ax.plot(recall[::-1], precision[::-1], marker=".", drawstyle="steps-post",
                    label=f"{name} ({result.ap[label, ti]:.2f})")
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        mean = _nanmean(result.ap[:, ti])
        ax.set_title(f"IoU > {th:.2f}: AP {mean:.3f}" if math.isfinite(mean) else f"IoU > {th:.2f}")
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def report(result: EvalResult, *, json_out: str | Path | None = None,
           plot_out: str | Path | None = None,
           print_fn: Callable[[str], None] | None = print) -> dict:
    """Print the table, write the JSON and the PR-curve PNG; returns the JSON dict."""
    metrics = result.to_dict()
    if print_fn is not None:
        print_fn(result.table())
    if json_out is not None:
        json_out = Path(json_out)
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(metrics, indent=2) + "\n")
    if plot_out is not None:
        plot_pr_curves(result, plot_out)
    return metrics


def predict_scenes(cfg: Any, data_dir: str | Path, *, limit: int | None = None,
                   progress: bool = True, gravity: Any = None, no_color: bool = False
                   ) -> tuple[list, list, list[str], tuple[str, ...]]:
    """Run the configured model (``Segmenter``) on every labelled scene of ``data_dir``.

    The same path as ``segment`` (ROI crop, point cap, filters, fusion), so the numbers describe
    what the node publishes. Returns (predictions, (gt_semantic, gt_instance) per scene, scene
    names, the model's class table). gravity: optional ``xyz -> (4, 4) matrix or None`` applied
    to each scene first (``--up``, ``--transform``, ``--level``). no_color: segment xyz only,
    as a sensor without colour (LiDAR) delivers the scene (``--no-color``).
    """
    from tqdm import tqdm

    from .data.datasets import find_scene_files, read_scene
    from .segmenter import Segmenter
    from .transforms import apply_transform

    files = find_scene_files(data_dir)[:limit]
    if not files:
        raise FileNotFoundError(f"no scene files in {data_dir}")
    segmenter = Segmenter(cfg)
    preds, gts, names = [], [], []
    for path in tqdm(files, desc=f"eval {segmenter.model_name}", unit="scene", disable=not progress):
        scene = read_scene(path)
        if not scene.has_labels:
            raise ValueError(f"{path} has no semantic/instance labels to evaluate against")
        xyz = scene.xyz
        matrix = gravity(xyz) if gravity is not None else None
        if matrix is not None:
            xyz = apply_transform(matrix, xyz)
        inst = segmenter.segment(xyz, None if no_color else scene.rgb)
        preds.append(Prediction.from_indices(inst.indices, inst.class_ids, inst.scores,
                                             scene.num_points))
        gts.append((scene.semantic, scene.instance))
        names.append(scene.name)
    return preds, gts, names, tuple(segmenter.class_names)


def evaluate_model(cfg: Any, data_dir: str | Path, *, class_agnostic: bool = False,
                   limit: int | None = None, progress: bool = True,
                   gravity: Any = None, no_color: bool = False) -> EvalResult:
    """``ros2-inst3d eval -c CONFIG [--checkpoint CKPT] --data DIR``: :func:`predict_scenes`,
    scored with the ScanNet protocol."""
    preds, gts, names, class_names = predict_scenes(cfg, data_dir, limit=limit,
                                                    progress=progress, gravity=gravity,
                                                    no_color=no_color)
    return evaluate(((s, i, p) for (s, i), p in zip(gts, preds)), class_names=class_names,
                    class_agnostic=class_agnostic, scene_names=names)


def sweep_score_thresholds(cfg: Any, data_dir: str | Path, thresholds: Sequence[float], *,
                           limit: int | None = None, progress: bool = True,
                           gravity: Any = None, no_color: bool = False
                           ) -> list[dict[str, float]]:
    """Class-aware and class-agnostic metrics of the model at each ``segment.score_threshold``
    in ``thresholds``, from one pass over the scenes (run at the lowest threshold; the filter
    acts on each proposal alone, before fusion, so dropping the lower scores afterwards gives
    what a run at the higher threshold gives). ``F1_50`` is the class-agnostic harmonic mean of
    mPrec50 and mRec50: the operating point a robot wants."""
    import dataclasses

    thresholds = sorted(float(t) for t in thresholds)
    low = dataclasses.replace(cfg, segment=dataclasses.replace(cfg.segment,
                                                               score_threshold=thresholds[0]))
    preds, gts, names, class_names = predict_scenes(low, data_dir, limit=limit,
                                                    progress=progress, gravity=gravity,
                                                    no_color=no_color)
    rows = []
    for t in thresholds:
        kept = [p.keep(p.scores >= t) for p in preds]
        pairs = [(s, i, p) for (s, i), p in zip(gts, kept)]
        aware = evaluate(pairs, class_names=class_names, scene_names=names)
        agnostic = evaluate(pairs, class_names=class_names, class_agnostic=True,
                            scene_names=names)
        summary = agnostic.to_dict()
        prec, rec = float(summary["mPrec50"] or 0.0), float(summary["mRec50"] or 0.0)
        rows.append({"score_threshold": t, "AP": aware.AP, "AP50": aware.AP50,
                     "AP25": aware.AP25, "agnostic_AP": agnostic.AP,
                     "agnostic_AP50": agnostic.AP50, "agnostic_AP25": agnostic.AP25,
                     "mPrec50": prec, "mRec50": rec,
                     "F1_50": 2 * prec * rec / (prec + rec) if prec + rec > 0 else 0.0,
                     "num_pred": int(agnostic.num_pred.sum())})
    return rows


# SemanticKITTI semantic ids (semantic-kitti.yaml): things, the stuff a robot need not avoid as an
# object, and ground.
KITTI_THINGS = (10, 11, 30, 31, 252, 253, 254)
KITTI_JUNK = (40, 44, 48, 49, 50, 51, 70, 72)
KITTI_GROUND = (40, 44, 48, 49, 60, 72)
KITTI_MIN_OBJECT_POINTS = 50


def kitti_object_scores(indices: Sequence[np.ndarray], label: np.ndarray) -> dict:
    """Objects matched, instances returned and junk among them (module doc: LiDAR objects on a
    street). indices: the point indices of each returned instance; label: (N,) uint32
    SemanticKITTI labels of the cloud."""
    label = np.asarray(label, dtype=np.uint32)
    semantic = (label & 0xFFFF).astype(np.int64)
    things = np.isin(semantic, KITTI_THINGS) & ((label >> 16) > 0)
    values, counts = np.unique(label[things], return_counts=True)
    big = counts >= KITTI_MIN_OBJECT_POINTS
    values, counts = values[big], counts[big]
    # Each instance's overlap with every object, from the labels of its own points (instances
    # may overlap, as a learned method's do, so no point-to-instance map).
    best = np.zeros(len(values))
    for ix in indices:
        present, inter = np.unique(label[ix], return_counts=True)
        hit = np.isin(present, values)
        k = np.searchsorted(values, present[hit])
        iou = inter[hit] / (counts[k] + len(ix) - inter[hit])
        np.maximum.at(best, k, iou)
    objects = [{"semantic": int(v & 0xFFFF), "instance": int(v >> 16), "points": int(c),
                "best_iou": float(round(b, 3))} for v, c, b in zip(values, counts, best)]
    majority = [int(np.bincount(semantic[ix]).argmax()) for ix in indices]
    junk = sum(m in KITTI_JUNK for m in majority)
    return {"objects": len(objects), "matched": int(sum(o["best_iou"] >= 0.5 for o in objects)),
            "instances": len(indices), "junk": junk,
            "junk_fraction": round(junk / max(1, len(indices)), 3),
            "per_object": objects,
            "majority_semantic": {str(k): majority.count(k) for k in sorted(set(majority))}}
