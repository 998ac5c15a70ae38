"""ScanNet AP and S3DIS metrics: hand-built cases with derived numbers, a slow reference
written like the official dict-based script, and the file-level entry point."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from ros2_inst3d.classes import SCANNET20_CLASSES
from ros2_inst3d.cli import main
from ros2_inst3d.evaluation import (
    IOU_THRESHOLDS, Prediction, average_precision, evaluate, evaluate_dirs, load_prediction,
)

CHAIR, SOFA, TABLE, OTHER = 4, 5, 6, 19
WALL = 0
IGN = -100
MAIN = slice(0, 9)  # the thresholds 0.50..0.90; index 9 is 0.25


def label(result, name):
    return result.label_names.index(name)


class SceneBuilder:
    """Points laid out in consecutive blocks; each block has a class and an instance id."""

    def __init__(self):
        self.sem: list[int] = []
        self.inst: list[int] = []

    def block(self, n, sem, inst=IGN):
        start = len(self.sem)
        self.sem += [sem] * n
        self.inst += [inst] * n
        return np.arange(start, start + n)

    def arrays(self):
        return np.array(self.sem), np.array(self.inst)


def pred_of(n_points, masks_and_meta):
    """masks_and_meta: list of (point indices, class, score)."""
    return Prediction.from_indices([m for m, _, _ in masks_and_meta],
                                   [c for _, c, _ in masks_and_meta],
                                   [s for _, _, s in masks_and_meta], n_points)


# --------------------------------------------------------------------------------------------
# the official AP integration


def test_average_precision_single_true_positive():
    # precision [1, 1(artificial)], recall [1, 0]; recall_for_conv [1, 1, 0, 0];
    # step widths (r[i-1] - r[i+1]) / 2 = [0.5, 0.5] -> AP = 1.
    ap, rc, _, _ = average_precision([1], [0.9], 0)
    assert ap == pytest.approx(1.0) and rc == pytest.approx(1.0)


def test_average_precision_false_positive_ranked_first_costs_three_quarters():
    # Ascending scores: TP 0.8, FP 0.9. At 0.8: tp 1, fp 1 -> p 0.5, r 1. At 0.9: tp 0 -> p 0,
    # r 0. Curve p [0.5, 0, 1], r [1, 0, 0]; steps [(1-0)/2, (1-0)/2, (0-0)/2] = [.5, .5, 0]
    # -> AP = 0.5*0.5 + 0*0.5 + 1*0 = 0.25 (the official scheme, not the 0.5 of COCO).
    ap, _, _, _ = average_precision([1, 0], [0.8, 0.9], 0)
    assert ap == pytest.approx(0.25)


def test_average_precision_ties_and_hard_false_negatives():
    # Scores 0.5 (TP), 0.9 (TP), 0.9 (FP): thresholds {0.5, 0.9}.
    # At 0.5: tp 2, fp 1, fn 0 -> p 2/3, r 1. At 0.9: tp 1, fp 1, fn 1 -> p 1/2, r 1/2.
    # Curve p [2/3, 1/2, 1], r [1, 1/2, 0]; steps [(1-.5)/2, (1-0)/2, (.5-0)/2] = [.25, .5, .25]
    # -> AP = 2/3*.25 + .5*.5 + .25 = 2/3. The order of the tied pair must not matter.
    for y, s in (([1, 1, 0], [0.5, 0.9, 0.9]), ([1, 0, 1], [0.5, 0.9, 0.9])):
        ap, rc, _, _ = average_precision(y, s, 0)
        assert ap == pytest.approx(2 / 3) and rc == pytest.approx(1.0)
    # One GT unmatched anywhere (hard FN): one TP -> p [1, 1], r [1/2, 0];
    # steps [(.5-0)/2, (.5-0)/2] -> AP 0.5.
    ap, rc, _, _ = average_precision([1], [0.7], 1)
    assert ap == pytest.approx(0.5) and rc == pytest.approx(0.5)


# --------------------------------------------------------------------------------------------
# hand-built scenes


def perfect_scene():
    b = SceneBuilder()
    chair_a = b.block(200, CHAIR, 0)
    chair_b = b.block(200, CHAIR, 1)
    table = b.block(300, TABLE, 2)
    b.block(100, WALL)
    sem, inst = b.arrays()
    return sem, inst, chair_a, chair_b, table


def test_perfect_prediction_scores_one_everywhere():
    sem, inst, chair_a, chair_b, table = perfect_scene()
    pred = pred_of(sem.size, [(chair_a, CHAIR, 0.3), (chair_b, CHAIR, 0.9), (table, TABLE, 0.5)])
    r = evaluate([(sem, inst, pred)])
    for name in ("chair", "table"):
        assert np.allclose(r.ap[label(r, name)], 1.0)
        assert r.coverage[label(r, name)] == pytest.approx(1.0)
        assert r.precision50[label(r, name)] == pytest.approx(1.0)
        assert r.recall50[label(r, name)] == pytest.approx(1.0)
    assert np.isnan(r.ap[label(r, "sofa")]).all()  # no GT, no prediction
    assert (r.AP, r.AP50, r.AP25) == pytest.approx((1.0, 1.0, 1.0))
    assert r.num_gt[label(r, "chair")] == 2 and r.num_pred[label(r, "chair")] == 2
    d = r.to_dict()
    assert d["AP"] == pytest.approx(1.0) and d["per_class"]["sofa"]["AP"] is None
    assert d["mCov"] == pytest.approx(1.0) and d["mWCov"] == pytest.approx(1.0)


def test_perfect_prediction_from_point_labels_and_dense_masks_agree():
    sem, inst, chair_a, chair_b, table = perfect_scene()
    point_labels = np.full(sem.size, -1)
    point_labels[chair_a], point_labels[chair_b], point_labels[table] = 0, 1, 2
    by_labels = Prediction.from_point_labels(point_labels, [CHAIR, CHAIR, TABLE], [0.3, 0.9, 0.5])
    dense = by_labels.dense()
    by_masks = Prediction.from_masks(dense, [CHAIR, CHAIR, TABLE], [0.3, 0.9, 0.5])
    assert dense.sum(axis=1).tolist() == [200, 200, 300]
    assert np.array_equal(by_labels.mask_points, by_masks.mask_points)
    assert evaluate([(sem, inst, by_labels)]).AP == pytest.approx(1.0)


@pytest.mark.parametrize("fp_score, chair_ap", [(0.5, 1.0), (0.95, 0.25)])
def test_one_false_positive_and_score_order(fp_score, chair_ap):
    # Chair GT A (200) predicted exactly at 0.9. A chair false positive lies on 150 points of
    # the table GT (not void, not chair GT: it cannot be ignored). Ranked below the TP it costs
    # nothing (AP 1); ranked above it gives the curve of
    # test_average_precision_false_positive_ranked_first_costs_three_quarters (AP 0.25) at every
    # threshold. The table is predicted exactly (AP 1), so mean AP = (chair + 1) / 2.
    b = SceneBuilder()
    chair = b.block(200, CHAIR, 0)
    table = b.block(300, TABLE, 1)
    sem, inst = b.arrays()
    pred = pred_of(sem.size, [(chair, CHAIR, 0.9), (table[:150], CHAIR, fp_score),
                              (table, TABLE, 0.7)])
    r = evaluate([(sem, inst, pred)])
    assert np.allclose(r.ap[label(r, "chair")], chair_ap)
    assert np.allclose(r.ap[label(r, "table")], 1.0)
    assert r.AP == pytest.approx((chair_ap + 1.0) / 2)
    assert r.AP50 == pytest.approx((chair_ap + 1.0) / 2)
    # S3DIS view: predictions are fused by ascending score. Above the table prediction (0.7)
    # the FP keeps its 150 points (IoU 0 with every chair: a false positive -> chair precision
    # 1/2) and leaves the table 150 points (coverage 150/300). Below it, the table prediction
    # paints over the FP entirely: chair precision 1/1, table coverage 1.
    outranks = fp_score > 0.7
    assert r.precision50[label(r, "chair")] == pytest.approx(0.5 if outranks else 1.0)
    assert r.recall50[label(r, "chair")] == pytest.approx(1.0)
    assert r.coverage[label(r, "table")] == pytest.approx(0.5 if outranks else 1.0)


def test_split_instance_equal_halves():
    # Chair GT (400) split into two predictions of 200 points: IoU exactly 0.5 each.
    # 0.50..0.90: 0.5 > th fails (strict), the GT is a hard FN and both predictions are FPs
    # (nothing to ignore) -> tp = 0 everywhere -> AP 0.
    # 0.25: the first prediction matches; the second also matches the already-matched GT, so
    # the lower score (0.8) becomes a FP and the GT keeps 0.9 -> TP 0.9 above FP 0.8 -> AP 1.
    b = SceneBuilder()
    chair = b.block(400, CHAIR, 0)
    b.block(100, WALL)
    sem, inst = b.arrays()
    for scores in ((0.9, 0.8), (0.8, 0.9)):  # the best-scoring one takes the GT either way
        r = evaluate([(sem, inst, pred_of(sem.size, [(chair[:200], CHAIR, scores[0]),
                                                     (chair[200:], CHAIR, scores[1])]))])
        c = label(r, "chair")
        assert np.allclose(r.ap[c, MAIN], 0.0) and r.ap[c, 9] == pytest.approx(1.0)
        assert (r.AP, r.AP50, r.AP25) == pytest.approx((0.0, 0.0, 1.0))
        # recall at 0.25 is 1, at 0.5 it is 0
        assert r.recall[c, 9] == pytest.approx(1.0) and r.recall[c, 0] == pytest.approx(0.0)
        # S3DIS: both halves have IoU 0.5 >= 0.5 -> both TP (not one-to-one); coverage 0.5.
        assert r.precision50[c] == pytest.approx(1.0) and r.coverage[c] == pytest.approx(0.5)


def test_split_instance_unequal_parts():
    # Chair GT (400): prediction P1 = 300 points (IoU 0.75, score 0.8), P2 = the other 100
    # (IoU 0.25, score 0.9).
    # th 0.50..0.70 (5 values): P1 TP at 0.8, P2 unmatched FP at 0.9 -> AP 0.25.
    # th 0.75..0.90 (4 values): 0.75 > 0.75 fails -> GT hard FN, both FP -> AP 0.
    # th 0.25: P2's IoU 0.25 is not > 0.25 -> same as 0.5 -> AP 0.25.
    # AP = (5 * 0.25 + 4 * 0) / 9 = 0.13889.
    b = SceneBuilder()
    chair = b.block(400, CHAIR, 0)
    sem, inst = b.arrays()
    r = evaluate([(sem, inst, pred_of(sem.size, [(chair[:300], CHAIR, 0.8),
                                                 (chair[300:], CHAIR, 0.9)]))])
    c = label(r, "chair")
    assert np.allclose(r.ap[c], [0.25] * 5 + [0.0] * 4 + [0.25])
    assert r.AP == pytest.approx(1.25 / 9)


def test_ignored_regions():
    b = SceneBuilder()
    chair = b.block(200, CHAIR, 0)
    small_chair = b.block(50, CHAIR, 1)   # < 100 points: ignored GT
    table = b.block(300, TABLE, 2)
    wall = b.block(300, WALL)             # stuff: void
    unlabelled = b.block(100, IGN)        # ignore label: void
    sem, inst = b.arrays()
    preds = [
        (chair, CHAIR, 0.9),
        (table, TABLE, 0.9),
        # entirely on void, ranked first: ignored at every threshold (proportion 1 > th)
        (np.concatenate([wall[:150], unlabelled[:50]]), CHAIR, 0.99),
        # the small GT plus 60 void points (110 >= 100 points so it is kept): IoU 50/110 =
        # 0.45 with the small GT -> "matched" at 0.25 (neither TP nor FP); at >= 0.5 unmatched
        # but (60 void + 50 small-GT) / 110 = 1 > th -> ignored
        (np.concatenate([small_chair, wall[150:210]]), CHAIR, 0.98),
    ]
    r = evaluate([(sem, inst, pred_of(sem.size, preds))])
    assert np.allclose(r.ap[label(r, "chair")], 1.0)
    assert r.num_gt[label(r, "chair")] == 1  # the small chair is not a GT instance
    # A prediction with 100 void + 100 table points (proportion 0.5), ranked first:
    # th 0.25: 0.5 > 0.25 -> ignored -> AP 1. th 0.50: 0.5 <= 0.5 -> FP -> AP 0.25, and the
    # same at 0.55..0.90. AP = 0.25, AP50 = 0.25, AP25 = 1.
    half_void = np.concatenate([wall[210:300], unlabelled[50:60], table[:100]])
    r = evaluate([(sem, inst, pred_of(sem.size, preds + [(half_void, CHAIR, 0.97)]))])
    c = label(r, "chair")
    assert np.allclose(r.ap[c, MAIN], 0.25) and r.ap[c, 9] == pytest.approx(1.0)


def test_predictions_below_min_region_size_are_dropped():
    b = SceneBuilder()
    chair = b.block(200, CHAIR, 0)
    table = b.block(300, TABLE, 1)
    sem, inst = b.arrays()
    # a 99-point chair FP ranked first would cost 0.75 AP if it counted; it is dropped
    r = evaluate([(sem, inst, pred_of(sem.size, [(chair, CHAIR, 0.5), (table[:99], CHAIR, 0.9)]))])
    assert np.allclose(r.ap[label(r, "chair")], 1.0)
    assert r.num_pred[label(r, "chair")] == 1
    # with min_region_size=50 it counts: AP 0.25
    r = evaluate([(sem, inst, pred_of(sem.size, [(chair, CHAIR, 0.5), (table[:99], CHAIR, 0.9)]))],
                 min_region_size=50)
    assert np.allclose(r.ap[label(r, "chair")], 0.25)


def test_empty_prediction():
    sem, inst, *_ = perfect_scene()
    r = evaluate([(sem, inst, Prediction.empty(sem.size))])
    # GT but no prediction: AP 0 (not NaN); classes without GT stay NaN
    assert np.allclose(r.ap[label(r, "chair")], 0.0) and np.allclose(r.ap[label(r, "table")], 0.0)
    assert (r.AP, r.AP50, r.AP25) == (0.0, 0.0, 0.0)
    # coverage 0, recall 0, precision undefined (no predictions)
    assert r.to_dict()["mCov"] == 0.0 and r.to_dict()["mRec50"] == 0.0
    assert r.to_dict()["mPrec50"] is None


def test_class_with_predictions_but_no_gt_is_nan_and_left_out():
    sem, inst, chair_a, chair_b, table = perfect_scene()
    preds = [(chair_a, CHAIR, 0.9), (chair_b, CHAIR, 0.9), (table, TABLE, 0.9),
             (table[:150], SOFA, 0.99),       # sofa has no GT: official AP NaN, not 0
             (np.arange(700, 800), WALL, 0.99)]  # stuff class: not evaluated at all
    r = evaluate([(sem, inst, pred_of(sem.size, preds))])
    assert np.isnan(r.ap[label(r, "sofa")]).all()
    assert r.num_pred[label(r, "sofa")] == 1
    assert r.AP == pytest.approx(1.0)
    assert "wall" not in r.label_names


def test_class_agnostic_merges_classes():
    # The geometric baseline labels everything otherfurniture.
    sem, inst, chair_a, chair_b, table = perfect_scene()
    pred = pred_of(sem.size, [(chair_a, OTHER, 0.9), (chair_b, OTHER, 0.8), (table, OTHER, 0.7)])
    by_class = evaluate([(sem, inst, pred)])
    # chair and table have GT but no prediction of their class -> 0; otherfurniture has no GT
    assert by_class.AP == 0.0 and np.isnan(by_class.ap[label(by_class, "otherfurniture")]).all()
    agnostic = evaluate([(sem, inst, pred)], class_agnostic=True)
    assert agnostic.label_names == ("class_agnostic",)
    assert (agnostic.AP, agnostic.AP50, agnostic.AP25) == pytest.approx((1.0, 1.0, 1.0))
    assert agnostic.num_gt.tolist() == [3]


def test_hard_false_negative_in_another_scene():
    # Scene 1: chair predicted exactly; scene 2: chair not predicted. Pooled: one TP, one hard
    # FN -> p [1, 1], r [1/2, 0] -> AP 0.5 at every threshold.
    b = SceneBuilder()
    chair = b.block(200, CHAIR, 0)
    b.block(50, WALL)
    sem, inst = b.arrays()
    r = evaluate([(sem, inst, pred_of(sem.size, [(chair, CHAIR, 0.9)])),
                  (sem, inst, Prediction.empty(sem.size))])
    assert np.allclose(r.ap[label(r, "chair")], 0.5)
    assert r.num_scenes == 2
    # S3DIS: scene coverages 1 and 0 -> mean over scenes 0.5
    assert r.coverage[label(r, "chair")] == pytest.approx(0.5)


def test_s3dis_metrics_with_overlapping_predictions():
    # GT chair A (200 points) and B (100). Predictions: P1 = A (0.9), P2 = half of B (0.8),
    # P3 = first 150 points of A (0.95). Fused by ascending score: P3 paints over P1, which
    # keeps A's last 50 points. IoUs: A: P3 150/200, P1 50/200 -> cov 0.75; B: P2 50/100 -> 0.5.
    # mCov = (0.75 + 0.5) / 2 = 0.625; mWCov = (0.75*200 + 0.5*100) / 300 = 2/3.
    # Precision: P3 0.75 TP, P1 0.25 FP, P2 0.5 TP (>= 0.5) -> 2/3; recall min(1, 2/2) = 1.
    b = SceneBuilder()
    a = b.block(200, CHAIR, 7)
    bb = b.block(100, CHAIR, 3)
    sem, inst = b.arrays()
    r = evaluate([(sem, inst, pred_of(sem.size, [(a, CHAIR, 0.9), (bb[:50], CHAIR, 0.8),
                                                 (a[:150], CHAIR, 0.95)]))])
    c = label(r, "chair")
    assert r.coverage[c] == pytest.approx(0.625)
    assert r.weighted_coverage[c] == pytest.approx(2 / 3)
    assert r.precision50[c] == pytest.approx(2 / 3)
    assert r.recall50[c] == pytest.approx(1.0)


def test_s3dis_table_evaluates_all_thirteen_classes():
    from ros2_inst3d.classes import S3DIS_CLASSES

    b = SceneBuilder()
    ceiling = b.block(150, 0, 0)
    chair = b.block(150, 7, 1)
    sem, inst = b.arrays()
    r = evaluate([(sem, inst, pred_of(sem.size, [(ceiling, 0, 1.0), (chair, 7, 0.6)]))],
                 S3DIS_CLASSES)
    assert r.label_names == S3DIS_CLASSES
    assert np.allclose(r.ap[0], 1.0) and np.allclose(r.ap[7], 1.0) and r.AP == pytest.approx(1.0)


def test_bad_inputs_raise_clear_errors():
    sem, inst, *_ = perfect_scene()
    with pytest.raises(ValueError, match="covers 10 points"):
        evaluate([(sem, inst, Prediction.empty(10))])
    with pytest.raises(ValueError, match="one per id"):
        Prediction.from_point_labels(np.array([0, 1, 2]), [CHAIR], [0.5])
    with pytest.raises(ValueError, match="finite"):
        Prediction.from_masks(np.ones((1, 3), bool), [CHAIR], [np.nan])
    with pytest.raises(ValueError, match="outside"):
        Prediction.from_indices([np.array([0, 5])], [CHAIR], [0.5], num_points=5)
    with pytest.raises(ValueError, match="different label spaces"):
        evaluate([(sem, inst, pred_of(sem.size, [(np.arange(100), 20, 0.5)]))])
    # a scene without any instance (all -100) is fine: nothing to find, AP undefined
    none = np.full(sem.size, -100)
    assert math.isnan(evaluate([(sem, none, Prediction.empty(sem.size))]).AP)


# --------------------------------------------------------------------------------------------
# slow reference, structured like evaluate_semantic_instance.py (dicts, per-mask boolean ops)


def reference_evaluate(scenes, eval_classes, min_size, agnostic):
    labels = ["agnostic"] if agnostic else list(eval_classes)
    ap = np.full((len(labels), IOU_THRESHOLDS.size), np.nan)
    matches = []
    for si, (sem, inst, masks, classes, scores) in enumerate(scenes):
        valid = (inst >= 0) & np.isin(sem, eval_classes)
        keys = sorted({(int(s), int(i)) for s, i in zip(sem[valid], inst[valid])})
        gt_of = {lab: [] for lab in labels}
        for s, i in keys:
            m = valid & (sem == s) & (inst == i)
            gt_of["agnostic" if agnostic else s].append(
                {"mask": m, "vert_count": int(m.sum()), "matched_pred": []})
        pred_of_label = {lab: [] for lab in labels}
        for k in range(len(classes)):
            if not agnostic and classes[k] not in eval_classes:
                continue
            lab = "agnostic" if agnostic else int(classes[k])
            m = masks[k]
            if m.sum() < min_size:
                continue
            p = {"id": (si, k), "vert_count": int(m.sum()), "confidence": scores[k],
                 "void_intersection": int((m & ~valid).sum()), "matched_gt": []}
            for g in gt_of[lab]:
                inter = int((m & g["mask"]).sum())
                if inter > 0:
                    iou = inter / (g["vert_count"] + p["vert_count"] - inter)
                    g["matched_pred"].append(dict(p, iou=iou))
                    p["matched_gt"].append(dict(g, iou=iou, intersection=inter))
            pred_of_label[lab].append(p)
        matches.append((gt_of, pred_of_label))
    for oi, th in enumerate(IOU_THRESHOLDS):
        visited = {}
        for li, lab in enumerate(labels):
            y_true, y_score, hard_fn, has_gt, has_pred = [], [], 0, False, False
            for gt_of, pred_of_label in matches:
                gts = [g for g in gt_of[lab] if g["vert_count"] >= min_size]
                preds = pred_of_label[lab]
                has_gt |= bool(gts)
                has_pred |= bool(preds)
                cur_true = [1.0] * len(gts)
                cur_score = [-math.inf] * len(gts)
                cur_match = [False] * len(gts)
                for gi, g in enumerate(gts):
                    found = False
                    for p in g["matched_pred"]:
                        if visited.get(p["id"]):
                            continue
                        if p["iou"] > th:
                            if cur_match[gi]:
                                lo = min(cur_score[gi], p["confidence"])
                                cur_score[gi] = max(cur_score[gi], p["confidence"])
                                cur_true.append(0.0)
                                cur_score.append(lo)
                                cur_match.append(True)
                            else:
                                found = True
                                cur_match[gi] = True
                                cur_score[gi] = p["confidence"]
                                visited[p["id"]] = True
                    if not found:
                        hard_fn += 1
                y_true += [t for t, m in zip(cur_true, cur_match) if m]
                y_score += [s for s, m in zip(cur_score, cur_match) if m]
                for p in preds:
                    if any(g["iou"] > th for g in p["matched_gt"]):
                        continue
                    ignore = p["void_intersection"] + sum(
                        g["intersection"] for g in p["matched_gt"] if g["vert_count"] < min_size)
                    if ignore / p["vert_count"] <= th:
                        y_true.append(0.0)
                        y_score.append(p["confidence"])
            if has_gt and has_pred:
                ap[li, oi] = average_precision(y_true, y_score, hard_fn)[0] if y_true else 0.0
            elif has_gt:
                ap[li, oi] = 0.0
    return ap


def reference_s3dis(scenes, eval_classes):
    cov = {c: [] for c in eval_classes}
    wcov = {c: [] for c in eval_classes}
    tp = {c: 0 for c in eval_classes}
    fp = {c: 0 for c in eval_classes}
    n_gt = {c: 0 for c in eval_classes}
    for sem, inst, masks, classes, scores in scenes:
        fused = np.full(sem.size, -1)
        fused_cls = {}
        for rank, k in enumerate(np.argsort(scores, kind="stable")):
            fused[masks[k]] = rank
            fused_cls[rank] = classes[k]
        gts = {}
        for i in np.unique(inst[(inst >= 0) & (sem >= 0)]):
            m = (inst == i) & (sem >= 0)
            values, counts = np.unique(sem[m], return_counts=True)
            gts.setdefault(int(values[np.argmax(counts)]), []).append(m)
        preds = {}
        for rank in np.unique(fused[fused >= 0]):
            preds.setdefault(int(fused_cls[rank]), []).append(fused == rank)
        for c in eval_classes:
            g_list, p_list = gts.get(c, []), preds.get(c, [])
            if g_list:
                best = [max([(g & p).sum() / (g | p).sum() for p in p_list], default=0.0)
                        for g in g_list]
                sizes = [g.sum() for g in g_list]
                cov[c].append(np.mean(best))
                wcov[c].append(np.dot(best, sizes) / np.sum(sizes))
            for p in p_list:
                best = max([(g & p).sum() / (g | p).sum() for g in g_list], default=-1.0)
                tp[c] += best >= 0.5
                fp[c] += best < 0.5
            n_gt[c] += len(g_list)
    out = {}
    for c in eval_classes:
        out[c] = (np.mean(cov[c]) if cov[c] else np.nan, np.mean(wcov[c]) if wcov[c] else np.nan,
                  tp[c] / (tp[c] + fp[c]) if tp[c] + fp[c] else np.nan,
                  min(1.0, tp[c] / n_gt[c]) if n_gt[c] else np.nan)
    return out


def random_scenes(seed, n_scenes):
    """Small scenes with realistic overlaps: predictions perturb GT instances or merge two."""
    rng = np.random.default_rng(seed)
    scenes = []
    for _ in range(n_scenes):
        n = int(rng.integers(30, 90))
        num_inst = int(rng.integers(0, 6))
        inst_class = rng.choice([0, 2, 3, 4, 5], size=max(num_inst, 1))
        inst = rng.integers(-1, num_inst, size=n) if num_inst else np.full(n, -1)
        sem = np.where(inst >= 0, inst_class[np.maximum(inst, 0)], rng.choice([0, 1, IGN], size=n))
        sem[rng.random(n) < 0.05] = IGN
        inst = np.where(inst >= 0, inst, IGN)
        inst[sem == 0] = IGN  # stuff has no instances
        k = int(rng.integers(0, 7))
        masks = np.zeros((k, n), bool)
        classes = rng.choice([0, 2, 3, 4, 5], size=k)
        for j in range(k):
            target = rng.integers(-1, max(num_inst, 1))
            if target >= 0 and rng.random() < 0.7:
                classes[j] = inst_class[target]  # mostly the right class
            base = (inst == target) if target >= 0 else (rng.random(n) < 0.2)
            if rng.random() < 0.3 and num_inst > 1:
                base = base | (inst == rng.integers(0, num_inst))
            keep, noise = rng.uniform(0.7, 1.0), rng.uniform(0.0, 0.1)
            masks[j] = (base & (rng.random(n) < keep)) | (rng.random(n) < noise)
        scores = rng.choice([0.1, 0.3, 0.5, 0.7, 0.9], size=k)  # ties on purpose
        scenes.append((sem, inst, masks, classes, scores))
    return scenes


EVAL = (2, 3, 4, 5)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_scenes=st.integers(1, 3), agnostic=st.booleans())
def test_matches_slow_reference(seed, n_scenes, agnostic):
    scenes = random_scenes(seed, n_scenes)
    fast = evaluate([(s, i, Prediction.from_masks(m, c, sc)) for s, i, m, c, sc in scenes],
                    eval_classes=EVAL, class_agnostic=agnostic, min_region_size=4)
    slow = reference_evaluate(scenes, EVAL, 4, agnostic)
    assert np.allclose(fast.ap, slow, equal_nan=True), (fast.ap, slow)
    if not agnostic:
        ref = reference_s3dis(scenes, EVAL)
        for li, c in enumerate(EVAL):
            got = (fast.coverage[li], fast.weighted_coverage[li], fast.precision50[li],
                   fast.recall50[li])
            assert np.allclose(got, ref[c], equal_nan=True), (c, got, ref[c])


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_ap_depends_only_on_score_order(seed):
    scenes = random_scenes(seed, 2)

    def run(transform):
        return evaluate([(s, i, Prediction.from_masks(m, c, transform(sc)))
                         for s, i, m, c, sc in scenes], eval_classes=EVAL, min_region_size=4)

    a, b = run(lambda x: x), run(lambda x: np.exp(3 * x) - 7)
    assert np.allclose(a.ap, b.ap, equal_nan=True)
    finite = a.ap[~np.isnan(a.ap)]
    assert np.all((finite >= 0) & (finite <= 1 + 1e-12))


# --------------------------------------------------------------------------------------------
# files


def write_gt(path, sem, inst, class_names=SCANNET20_CLASSES):
    n = sem.size
    rng = np.random.default_rng(0)
    np.savez(path, xyz=rng.random((n, 3)).astype(np.float32),
             rgb=rng.integers(0, 256, (n, 3)).astype(np.uint8), semantic=sem.astype(np.int16),
             instance=inst.astype(np.int32), meta=np.array(json.dumps(
                 {"class_names": list(class_names), "seed": 0})))


def test_evaluate_dirs_json_table_and_plot(tmp_path, capsys):
    sem, inst, chair_a, chair_b, table = perfect_scene()
    gt_dir = tmp_path / "gt"
    gt_dir.mkdir()
    write_gt(gt_dir / "room0.npz", sem, inst)
    write_gt(gt_dir / "room1.npz", sem, inst)
    # room0: segment's point labels; room1: overlapping masks packed along the points, with a
    # chair false positive on the table ranked first -> chair AP 0.25 in room1 alone.
    point_labels = np.full(sem.size, -1, np.int32)
    point_labels[chair_a], point_labels[chair_b], point_labels[table] = 0, 1, 2
    np.savez(gt_dir / "room0.labels.npz", instance=point_labels,
             instance_class=np.array([CHAIR, CHAIR, TABLE], np.int32),
             instance_score=np.array([0.9, 0.8, 0.7], np.float32))
    masks = np.zeros((4, sem.size), bool)
    masks[0, chair_a] = masks[1, chair_b] = masks[2, table] = True
    masks[3, table[:150]] = True
    np.savez(gt_dir / "room1.labels.npz", instance=point_labels,
             instance_class=np.array([CHAIR, CHAIR, TABLE, CHAIR], np.int32),
             instance_score=np.array([0.9, 0.8, 0.7, 0.95], np.float32),
             masks=np.packbits(masks, axis=1))
    # Chair pooled over both rooms: 4 TPs (0.9, 0.8, 0.9, 0.8), one FP at 0.95.
    # thresholds: 0.95 -> tp 0 (p 0, r 0); 0.9 -> tp 2, fp 1 (p 2/3, r 1/2); 0.8 -> tp 4, fp 1
    # (p 4/5, r 1). Ascending: p [4/5, 2/3, 0, 1], r [1, 1/2, 0, 0];
    # steps [(1-.5)/2, (1-0)/2, (.5-0)/2, 0] = [.25, .5, .25, 0] -> AP = .2 + 1/3 = 0.5333.
    chair_ap = 0.8 * 0.25 + (2 / 3) * 0.5
    out = tmp_path / "out" / "eval.json"
    assert main(["eval", "--pred", str(gt_dir), "--gt", str(gt_dir), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "chair" in printed and "average" in printed
    saved = json.loads(out.read_text())
    assert (out.parent / "eval_pr.png").read_bytes()[:4] == b"\x89PNG"
    assert saved["per_class"]["chair"]["AP50"] == pytest.approx(chair_ap)
    assert saved["per_class"]["table"]["AP"] == pytest.approx(1.0)
    assert saved["AP"] == pytest.approx((chair_ap + 1.0) / 2)
    assert saved["AP25"] == pytest.approx((chair_ap + 1.0) / 2)
    assert saved["per_class"]["sofa"]["AP"] is None
    assert 0.0 <= saved["mCov"] <= 1.0 and saved["num_scenes"] == 2
    png = out.with_name("eval_pr.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    agnostic = evaluate_dirs(gt_dir, gt_dir, class_agnostic=True)
    assert list(agnostic["per_class"]) == ["class_agnostic"]


def test_flattened_packbits_masks_are_read(tmp_path):
    masks = np.zeros((3, 13), bool)
    masks[0, :5] = masks[1, 4:9] = masks[2, 12] = True
    path = tmp_path / "s.labels.npz"
    np.savez(path, instance=np.full(13, -1, np.int32), instance_class=np.array([4, 5, 6]),
             instance_score=np.array([0.1, 0.2, 0.3], np.float32), masks=np.packbits(masks))
    assert np.array_equal(load_prediction(path, 13).dense(), masks)
    with pytest.raises(ValueError, match="has 13 points but its ground truth has 14"):
        load_prediction(path, 14)


def test_missing_prediction_is_an_error(tmp_path):
    sem, inst, *_ = perfect_scene()
    write_gt(tmp_path / "room0.npz", sem, inst)
    with pytest.raises(FileNotFoundError, match="room0.npz"):
        evaluate_dirs(tmp_path, tmp_path)


@pytest.mark.slow
def test_score_sweep_rows_equal_runs_at_each_threshold(tmp_path):
    """One pass at the lowest threshold, filtered afterwards, scores exactly what a run at each
    threshold scores (the filter acts per proposal, before fusion)."""
    from ros2_inst3d.config import load_config
    from ros2_inst3d.synthetic.scene import SceneParams, generate_scene
    from ros2_inst3d.evaluation import evaluate_model, sweep_score_thresholds

    generate_scene(3, SceneParams.small(), threads=1).save(tmp_path / "scene_3.npz")
    thresholds = [0.0, 0.3, 0.6]
    rows = sweep_score_thresholds(load_config(None, {"model.name": "pointgroup"}), tmp_path,
                                  thresholds, progress=False)
    assert [r["score_threshold"] for r in rows] == thresholds
    assert rows[0]["num_pred"] >= rows[1]["num_pred"] >= rows[2]["num_pred"]
    for row in rows:
        cfg = load_config(None, {"model.name": "pointgroup",
                                 "segment.score_threshold": row["score_threshold"]})
        aware = evaluate_model(cfg, tmp_path, progress=False)
        agnostic = evaluate_model(cfg, tmp_path, class_agnostic=True, progress=False)
        assert row["AP50"] == pytest.approx(aware.AP50, nan_ok=True)
        assert row["agnostic_AP25"] == pytest.approx(agnostic.AP25, nan_ok=True)
        assert row["num_pred"] == int(agnostic.num_pred.sum())


def test_prediction_keep_selects_masks():
    pred = Prediction.from_indices([np.array([0, 1]), np.array([2]), np.array([1, 3])],
                                   [2, 3, 4], [0.9, 0.1, 0.5], 5)
    kept = pred.keep(np.array([True, False, True]))
    assert kept.num_masks == 2
    np.testing.assert_array_equal(kept.classes, [2, 4])
    np.testing.assert_array_equal(kept.mask(1), [1, 3])
    assert pred.keep(np.zeros(3, bool)).num_masks == 0
