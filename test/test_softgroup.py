"""SoftGroup's grouping, training targets and losses, and inference (CPU, tiny models).

Slow obvious references (Python loops over proposals and points) check the vectorised grouping,
targets, losses and ``get_instances``; the end-to-end tests run a tiny model on hand-built box
scenes and on generated synthetic rooms.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from conftest import BOX_CLASSES, adam_steps, box_scene

from ros2_inst3d.data.batching import Sample, collate
from ros2_inst3d.synthetic.scene import SceneParams, generate_scene
from ros2_inst3d.model.backbone import single_threaded_spconv
from ros2_inst3d.model.proposal_ops import mask_offsets
from ros2_inst3d.model.registry import build_network
from ros2_inst3d.model.softgroup import RefinementOutput, SoftGroup
from ros2_inst3d.ops import SparseMasks, mask_iou

VOXEL = 0.05
NUM_SEMANTIC, NUM_INSTANCE = 20, 18
SHIFT = NUM_SEMANTIC - NUM_INSTANCE


def tiny(seed: int = 0, grouping: dict | None = None, test: dict | None = None,
         train: dict | None = None, **overrides) -> SoftGroup:
    """A tiny SoftGroup; grouping as the small CPU config but with absolute size thresholds."""
    torch.manual_seed(seed)
    cfg = {"name": "softgroup", "channels": 8, "num_blocks": 3, "voxel_size": VOXEL,
           "grouping_cfg": {"score_thr": 0.2, "radius": 0.1, "mean_active": 300,
                            "class_numpoint_mean": [-1.0] * NUM_SEMANTIC, "npoint_thr": 1,
                            "ignore_classes": [0, 1], **(grouping or {})},
           "instance_voxel_cfg": {"scale": 20, "spatial_shape": 14},
           "train_cfg": {"max_proposal_num": 200, "pos_iou_thr": 0.5, **(train or {})},
           "test_cfg": {"cls_score_thr": 0.001, "mask_score_thr": -0.5, "min_npoint": 5,
                        **(test or {})},
           **overrides}
    return build_network(cfg)


def box_model(seed: int = 0, **kwargs) -> SoftGroup:
    """A model that groups an untrained network's output on box_scene into the boxes (and the
    floor): every point is a candidate of every box class (uniform softmax ~ 1/20 > 0.01) and the
    offset head starts at exactly zero, so the shifted points are the points themselves."""
    grouping = {"score_thr": 0.01, "ignore_classes": [c for c in range(NUM_SEMANTIC)
                                                      if c not in BOX_CLASSES[:2]]}
    model = tiny(seed, grouping=grouping, **kwargs)
    with torch.no_grad():
        model.offset_linear[3].weight.zero_()
        model.offset_linear[3].bias.zero_()
    return model


@pytest.fixture(scope="module")
def rooms() -> list[Sample]:
    samples = []
    for seed in (3, 4):
        scene = generate_scene(seed, SceneParams.small(), threads=1)
        xyz = (scene.xyz - scene.xyz.mean(0)).astype(np.float32)
        samples.append(Sample(f"room{seed}", xyz, None, scene.rgb.astype(np.float32),
                              scene.semantic.astype(np.int64), scene.instance.astype(np.int64),
                              np.arange(len(xyz)), True))
    return samples


def point_sets(masks: SparseMasks) -> list[frozenset[int]]:
    offsets = mask_offsets(masks).tolist()
    points = masks.point_idx.tolist()
    return [frozenset(points[a:b]) for a, b in itertools.pairwise(offsets)]


def oracle_probs(batch: dict) -> torch.Tensor:
    """One-hot GT semantic scores (ignored points: all zero, so never a candidate)."""
    semantic = batch["semantic"]
    probs = torch.zeros(semantic.numel(), NUM_SEMANTIC)
    labelled = semantic >= 0
    probs[labelled, semantic[labelled]] = 1.0
    return probs


# ----------------------------------------------------------------------------------------------
# Grouping
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("same_scene_twice", [False, True])
def test_grouping_on_oracle_inputs_recovers_every_gt_instance(rooms, same_scene_twice):
    # The same scene twice puts both items' shifted points at identical coordinates: any proposal
    # crossing batch items would merge the two copies of an instance.
    samples = [rooms[0], rooms[0]] if same_scene_twice else rooms
    batch = collate(samples, VOXEL)
    model = tiny()
    masks = model.grouping(oracle_probs(batch), batch["offset_target"], batch["xyz"],
                           batch["batch_offsets"])
    proposals = point_sets(masks)
    instance = batch["instance"].numpy()
    gt = [frozenset(np.flatnonzero(instance == i).tolist())
          for i in range(batch["instance_num_points"].numel())]
    things = [g for g, c in zip(gt, batch["instance_class"].tolist()) if c >= SHIFT]
    assert len(things) >= 10
    assert sorted(map(sorted, proposals)) == sorted(map(sorted, things))  # IoU 1, one each
    # Each proposal inside one batch item; proposals in class order, then smallest point.
    bounds = batch["batch_offsets"].numpy()
    semantic = batch["semantic"].numpy()
    keys = []
    for p in proposals:
        assert len(set(np.searchsorted(bounds, sorted(p), side="right"))) == 1
        keys.append((int(semantic[min(p)]), min(p)))
    assert keys == sorted(keys)


def slow_grouping(model: SoftGroup, probs, offsets, xyz, bounds) -> list[frozenset[int]]:
    """forward_grouping spelled out: per class, per batch item, all-pairs distances and BFS."""
    cfg = model.grouping_cfg
    proposals = []
    shifted = (xyz + offsets).double().numpy()
    for c in range(NUM_SEMANTIC):
        if c in cfg["ignore_classes"]:
            continue
        cand = np.flatnonzero(probs[:, c].numpy() > cfg["score_thr"])
        if len(cand) < model.test_cfg["min_npoint"]:
            continue
        mean = cfg["class_numpoint_mean"][c]
        min_size = cfg["npoint_thr"] * mean if mean != -1 else cfg["npoint_thr"]
        found = []
        for b in range(len(bounds) - 1):
            mine = cand[(cand >= bounds[b]) & (cand < bounds[b + 1])]
            d2 = ((shifted[mine, None, :] - shifted[None, mine, :]) ** 2).sum(-1)
            linked = d2 < cfg["radius"] ** 2
            seen = np.zeros(len(mine), bool)
            for seed in range(len(mine)):
                if seen[seed]:
                    continue
                queue, component = [seed], []
                seen[seed] = True
                while queue:
                    i = queue.pop()
                    component.append(int(mine[i]))
                    for j in np.flatnonzero(linked[i] & ~seen):
                        seen[j] = True
                        queue.append(j)
                if len(component) >= min_size - 1e-6:
                    found.append(frozenset(component))
        proposals += sorted(found, key=min)
    return proposals


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grouping_matches_a_slow_reference(seed):
    gen = torch.Generator().manual_seed(seed)
    n = 400
    xyz = torch.rand(n, 3, generator=gen) * 0.6
    offsets = torch.randn(n, 3, generator=gen) * 0.02
    probs = (torch.randn(n, NUM_SEMANTIC, generator=gen) * 2.5).softmax(-1)  # often 2+ classes
    bounds = torch.tensor([0, 170, n])
    mean = [float(v) for v in torch.randint(20, 120, (NUM_SEMANTIC,), generator=gen)]
    mean[5] = -1.0
    model = tiny(grouping={"radius": 0.06, "npoint_thr": 0.05, "class_numpoint_mean": mean,
                           "ignore_classes": [0, 1, 7]}, test={"min_npoint": 12})
    masks = model.grouping(probs, offsets, xyz, bounds)
    expected = slow_grouping(model, probs, offsets, xyz, bounds.numpy())
    assert len(expected) > 5
    assert point_sets(masks) == expected


def test_grouping_with_original_appends_the_unshifted_set():
    # Offsets that scatter each 0.4 m box (std 0.3 m >> radius) break it apart on the shifted
    # coordinates; the unshifted set (PointGroup's dual-set grouping) still holds each box whole.
    sample = box_scene(0, num_boxes=2)
    xyz = torch.as_tensor(sample.xyz, dtype=torch.float32)
    n = xyz.shape[0]
    probs = torch.full((n, NUM_SEMANTIC), 0.001)
    on_box = torch.as_tensor(sample.instance >= 0)
    probs[on_box, BOX_CLASSES[0]] = 0.9
    offsets = torch.randn(n, 3, generator=torch.Generator().manual_seed(0)) * 0.3
    bounds = torch.tensor([0, n])
    mean = [-1.0] * NUM_SEMANTIC
    mean[BOX_CLASSES[0]] = 100.0  # proposals need >= 50 points
    grouping = {"radius": 0.06, "npoint_thr": 0.5, "class_numpoint_mean": mean}
    shifted_only = tiny(grouping=grouping)
    dual = tiny(grouping={**grouping, "with_original": True})
    single = point_sets(shifted_only.grouping(probs, offsets, xyz, bounds))
    both = point_sets(dual.grouping(probs, offsets, xyz, bounds))
    unshifted = point_sets(shifted_only.grouping(probs, torch.zeros_like(offsets), xyz, bounds))
    boxes = {frozenset(np.flatnonzero(sample.instance == i).tolist())
             for i in np.unique(sample.instance[sample.instance >= 0])}
    assert both == single + unshifted
    assert boxes <= set(unshifted) and not boxes & set(single)


def touching_units(units: int = 4, length: float = 1.0, yaw: float = 0.6, per_unit: int = 400,
                   seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """A row of ``units`` touching 1 x 0.4 x 1 m boxes (surface-like random points), rotated by
    ``yaw``: (points, unit index per point)."""
    rng = np.random.default_rng(seed)
    unit = np.repeat(np.arange(units), per_unit)
    local = rng.uniform([0.0, 0.0, 0.0], [length, 0.4, 1.0], (unit.size, 3))
    local[:, 0] += unit * length
    c, s = np.cos(yaw), np.sin(yaw)
    xyz = local @ np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]]) + [2.0, -1.0, 0.0]
    return torch.as_tensor(xyz, dtype=torch.float32), unit


def test_split_long_masks_cuts_a_row_of_touching_units_into_one_piece_each():
    from ros2_inst3d.model.proposal_ops import split_long_masks

    xyz, unit = touching_units()
    n = xyz.shape[0]
    row = SparseMasks(torch.zeros(n, dtype=torch.int64), torch.arange(n), 1)
    lengths = [-1.0] * NUM_SEMANTIC
    lengths[9] = 1.0
    pieces = split_long_masks(row, torch.tensor([9]), xyz, lengths, factor=1.5)
    assert pieces.num_masks == 4
    ious = sorted(max(len(set(p) & set(np.flatnonzero(unit == u))) /
                      len(set(p) | set(np.flatnonzero(unit == u))) for u in range(4))
                  for p in point_sets(pieces))
    assert ious[0] > 0.9, ious
    sets = point_sets(pieces)
    assert sum(map(len, sets)) == n and frozenset().union(*sets) == set(range(n))  # a partition
    # A typical length 3x longer: the row is one object's length; no length: never split.
    for length in (3.0, -1.0):
        lengths[9] = length
        assert split_long_masks(row, torch.tensor([9]), xyz, lengths, factor=1.5).num_masks == 0
    lengths[9] = 1.0  # pieces of about 400 points: none reaches 800
    assert split_long_masks(row, torch.tensor([9]), xyz, lengths, 1.5, min_points=800).num_masks == 0


def test_grouping_appends_the_pieces_of_long_proposals_after_the_proposals():
    xyz, unit = touching_units(units=3)
    n = xyz.shape[0]
    probs = torch.full((n, NUM_SEMANTIC), 0.001)
    probs[:, 9] = 0.9
    lengths = [-1.0] * NUM_SEMANTIC
    lengths[9] = 1.0
    bounds = torch.tensor([0, n])
    linked = {"radius": 0.3}  # points fill the boxes ~0.1 m apart
    plain = point_sets(tiny(grouping=linked).grouping(probs, torch.zeros(n, 3), xyz, bounds))
    split = point_sets(tiny(grouping={**linked, "split_factor": 1.5, "class_length": lengths}
                            ).grouping(probs, torch.zeros(n, 3), xyz, bounds))
    assert plain == [frozenset(range(n))]  # the touching row links into one proposal
    assert split[:1] == plain and len(split) == 4


def test_class_min_sizes_follow_the_official_bound():
    model = tiny(grouping={"npoint_thr": 0.05,
                           "class_numpoint_mean": [-1.0, 2000.0, 3917.0] + [10.0] * 17})
    assert model._class_min_sizes()[:4].tolist() == [1, 100, 196, 1]


def test_grouping_with_no_candidates_is_empty():
    model = tiny(test={"min_npoint": 50})
    probs = torch.full((40, NUM_SEMANTIC), 1.0 / NUM_SEMANTIC)
    probs[:, 3] = 0.9  # 40 candidates of class 3: fewer than min_npoint
    masks = model.grouping(probs, torch.zeros(40, 3), torch.rand(40, 3), torch.tensor([0, 40]))
    assert masks.num_masks == 0 and masks.point_idx.numel() == 0


# ----------------------------------------------------------------------------------------------
# Targets and losses against the official instance_loss written as loops
# ----------------------------------------------------------------------------------------------

def test_targets_of_hand_made_proposals():
    # GT: instance 0 = points 0..3 (head class 0), 1 = 4..6 (stuff: ignored), 2 = 7..9 (class 2).
    instance = torch.tensor([0, 0, 0, 0, 1, 1, 1, 2, 2, 2, -100])
    num_points = torch.tensor([4, 3, 3])
    instance_cls = torch.tensor([0, -1, 2])
    proposals = [[0, 1, 2], [4, 5, 6], [0, 1, 2, 3, 7, 8, 10], [7], [7, 8, 9]]
    masks = SparseMasks(torch.tensor([k for k, p in enumerate(proposals) for _ in p]),
                        torch.tensor([i for p in proposals for i in p]), len(proposals))
    model = tiny()
    t = model._instance_targets(masks, instance, num_points, instance_cls)
    bg = NUM_INSTANCE
    # IoUs with the best fg instance: 0.75, 0 (stuff only), 4/7, 1/3, 1.
    assert t.labels.tolist() == [0, bg, 0, bg, 2]
    assert t.positive.tolist() == [True, False, True, False, True]
    assert t.matched[t.positive].tolist() == [0, 0, 2]
    assert t.mask_weight.tolist() == [1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1]
    assert t.mask_target.tolist() == [1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1]


def slow_instance_losses(proposals, instance, num_points, instance_cls, refined, pos_thr,
                         min_pos_thr=None):
    """Official instance_loss (get_mask_iou_on_cluster, match_low_quality when min_pos_thr is
    given, get_mask_label, get_mask_iou_on_pred), one proposal and one point at a time, on
    sigmoids as the official code."""
    num_cls = NUM_INSTANCE
    fg = [i for i, c in enumerate(instance_cls) if c >= 0]
    gt_sets = [set(np.flatnonzero(np.asarray(instance) == i)) for i in range(len(num_points))]

    def iou(points, i):
        inter = len(set(points) & gt_sets[i])
        return inter / (len(points) + num_points[i] - inter)

    table = [[iou(p, i) for i in fg] for p in proposals]
    best = [int(np.argmax(row)) for row in table]
    mask_positive = [row[b] >= pos_thr for row, b in zip(table, best)]
    assigned = [b if ok else -1 for b, ok in zip(best, mask_positive)]
    if min_pos_thr is not None:
        for j in range(len(fg)):
            column = [row[j] for row in table]
            if max(column) >= min_pos_thr:
                assigned[int(np.argmax(column))] = j
    labels = [instance_cls[fg[a]] if a >= 0 else num_cls for a in assigned]
    cls_loss = torch.nn.functional.cross_entropy(refined.cls_logits, torch.tensor(labels))
    bce, weight, iou_err, iou_weight = 0.0, 0.0, 0.0, 0.0
    e = 0
    for k, p in enumerate(proposals):
        pred = set()
        for point in p:
            prob = torch.sigmoid(refined.mask_logits[e, labels[k]])
            if prob > 0.5:
                pred.add(point)
            if mask_positive[k]:
                target = 1.0 if instance[point] == fg[best[k]] else 0.0
                bce += -(target * torch.log(prob) + (1 - target) * torch.log(1 - prob))
                weight += 1
            e += 1
        if labels[k] < num_cls:
            iou_err += (refined.iou_scores[k, labels[k]] - max(iou(pred, i) for i in fg)) ** 2
            iou_weight += 1
    return {"cls_loss": float(cls_loss), "mask_loss": float(bce / (weight + 1)),
            "iou_score_loss": float(iou_err / (iou_weight + 1))}, labels


@pytest.mark.parametrize("seed,low_quality", [(s, q) for s in range(4) for q in (False, True)])
def test_targets_and_losses_match_the_official_loops(seed, low_quality):
    rng = np.random.default_rng(seed)
    n, num_inst = 60, 5
    instance = rng.integers(-1, num_inst, n)
    instance[instance < 0] = -100
    instance[:num_inst] = np.arange(num_inst)  # every instance has a point
    num_points = np.bincount(instance[instance >= 0], minlength=num_inst)
    instance_cls = rng.integers(-1, NUM_INSTANCE, num_inst)
    instance_cls[0] = 4  # at least one foreground instance
    proposals = []
    for i in range(num_inst):  # near-copies of GT instances (mostly positive) and random sets
        members = np.flatnonzero(instance == i)
        extra = rng.choice(n, size=rng.integers(0, 4), replace=False)
        proposals.append(sorted(set(members[rng.random(len(members)) < 0.8]) | set(extra)) or [0])
    proposals += [sorted(rng.choice(n, size=rng.integers(1, 15), replace=False))
                  for _ in range(5)]
    masks = SparseMasks(torch.tensor([k for k, p in enumerate(proposals) for _ in p]),
                        torch.tensor([int(i) for p in proposals for i in p]), len(proposals))
    gen = torch.Generator().manual_seed(seed)
    refined = RefinementOutput(torch.randn(len(proposals), NUM_INSTANCE + 1, generator=gen),
                               torch.rand(len(proposals), NUM_INSTANCE + 1, generator=gen),
                               torch.randn(masks.point_idx.numel(), NUM_INSTANCE + 1, generator=gen))
    batch = {"instance": torch.from_numpy(instance), "instance_num_points": torch.from_numpy(num_points),
             "instance_class": torch.from_numpy(instance_cls + SHIFT)}
    batch["instance_class"][instance_cls < 0] = 0  # a stuff class (wall)
    train = {"match_low_quality": True, "min_pos_thr": 0.1, "pos_iou_thr": 0.7} if low_quality \
        else {}
    model = tiny(train=train)
    losses, num_positive = model._instance_losses(masks, refined, batch)
    expected, labels = slow_instance_losses(
        proposals, instance.tolist(), num_points.tolist(),
        [int(c) if c >= 0 else -1 for c in instance_cls], refined,
        model.train_cfg["pos_iou_thr"], 0.1 if low_quality else None)
    targets = model._instance_targets(masks, batch["instance"], batch["instance_num_points"],
                                      model.gt_instance_classes(batch["instance_class"]))
    assert targets.labels.tolist() == labels
    assert num_positive == sum(label < NUM_INSTANCE for label in labels) > 0
    for name, value in expected.items():
        assert float(losses[name]) == pytest.approx(value, rel=1e-5, abs=1e-6), name


# ----------------------------------------------------------------------------------------------
# forward_train
# ----------------------------------------------------------------------------------------------

def grad_norm(module: torch.nn.Module) -> float:
    return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)


def test_forward_train_gives_finite_losses_and_grads_reach_every_head():
    model = box_model()
    batch = collate([box_scene(0), box_scene(1, num_boxes=3)], VOXEL)
    total, parts = model.forward_train(batch, epoch=0)
    assert set(parts) == {"semantic_loss", "offset_loss", "cls_loss", "mask_loss",
                          "iou_score_loss", "num_proposals", "num_positive"}
    assert all(np.isfinite(v) for v in parts.values())
    # 7 boxes + 2 floors, each a proposal of each of the 2 grouped classes; the boxes positive.
    assert parts["num_proposals"] == 18 and parts["num_positive"] == 14
    assert parts["mask_loss"] > 0 and parts["iou_score_loss"] > 0
    assert float(total.detach()) == pytest.approx(sum(v for k, v in parts.items() if k.endswith("loss")),
                                         rel=1e-6)
    with single_threaded_spconv("cpu"):
        total.backward()
    for name in ("input_conv", "unet", "semantic_linear", "offset_linear", "tiny_unet",
                 "cls_linear", "mask_linear", "iou_score_linear"):
        assert grad_norm(getattr(model, name)) > 0, name


def test_forward_train_keeps_the_first_max_proposal_num_proposals():
    model = box_model(train={"max_proposal_num": 5})
    total, parts = model.forward_train(collate([box_scene(0)], VOXEL))
    assert parts["num_proposals"] == 5 and np.isfinite(float(total.detach()))


@pytest.mark.slow
def test_a_few_adam_steps_reduce_the_loss():
    model = box_model(seed=1)
    batch = collate([box_scene(2)], VOXEL)
    steps = adam_steps(model, batch, 6, lr=0.02)
    history = [total for total, _ in steps]
    refinement = [p["cls_loss"] + p["mask_loss"] + p["iou_score_loss"] for _, p in steps]
    assert history[-1] < 0.85 * history[0], history  # measured: about 0.72
    assert refinement[-1] < refinement[0], refinement


def test_semantic_only_model_trains_only_the_pointwise_losses(rooms):
    model = tiny(semantic_only=True)
    total, parts = model.forward_train(collate(rooms, VOXEL))
    assert set(parts) == {"semantic_loss", "offset_loss"}
    assert total.requires_grad and np.isfinite(float(total.detach()))
    model.eval()
    results = model.predict(collate(rooms, VOXEL))
    assert [len(r) for r in results] == [0, 0]
    assert results[0].point_class.shape == (rooms[0].xyz.shape[0],)


def test_no_candidates_give_zero_instance_losses_and_empty_predictions(rooms):
    model = tiny(grouping={"score_thr": 0.99})  # an untrained softmax is ~1/20 everywhere
    batch = collate(rooms, VOXEL)
    total, parts = model.forward_train(batch)
    assert parts["num_proposals"] == 0
    assert parts["cls_loss"] == parts["mask_loss"] == parts["iou_score_loss"] == 0.0
    with single_threaded_spconv("cpu"):
        total.backward()
    assert grad_norm(model.semantic_linear) > 0
    model.eval()
    results = model.predict(batch)
    assert len(results) == 2
    for r, sample in zip(results, rooms):
        assert len(r) == 0 and r.class_ids.shape == (0,) and r.scores.shape == (0,)
        assert r.point_class.dtype == np.int32 and r.point_class.shape == (len(sample.xyz),)
        assert set(r.timing_ms) == {"backbone", "grouping", "refinement"}


def test_no_foreground_gt_gives_zero_instance_losses():
    model = box_model()
    sample = box_scene(0)
    sample.instance[:] = -100  # nothing to match: the proposals exist but are all negative
    total, parts = model.forward_train(collate([sample], VOXEL))
    assert parts["num_proposals"] > 0
    assert parts["cls_loss"] == parts["mask_loss"] == parts["iou_score_loss"] == 0.0
    assert parts["offset_loss"] == 0.0 and np.isfinite(float(total.detach()))


# ----------------------------------------------------------------------------------------------
# predict
# ----------------------------------------------------------------------------------------------

def slow_get_instances(model: SoftGroup, proposals, refined, num_points):
    """Official get_instances (dense (K, N) masks per class, no NMS): (class, score, point set)."""
    cfg = model.test_cfg
    cls = refined.cls_logits.softmax(1)
    out = []
    for i in range(NUM_INSTANCE):
        e = 0
        for k, p in enumerate(proposals):
            dense = torch.zeros(num_points, dtype=torch.int32)
            for point in p:
                if refined.mask_logits[e, i] > cfg["mask_score_thr"]:
                    dense[point] = 1
                e += 1
            if cls[k, i] > cfg["cls_score_thr"] and int(dense.sum()) >= cfg["min_npoint"]:
                score = float(cls[k, i] * refined.iou_scores[k, i].clamp(0, 1))
                out.append((i, score, frozenset(torch.nonzero(dense).squeeze(1).tolist())))
    return out


def test_get_instances_without_nms_matches_the_official_loop():
    gen = torch.Generator().manual_seed(0)
    proposals = [list(range(30)), list(range(20, 45)), list(range(50, 58))]
    masks = SparseMasks(torch.tensor([k for k, p in enumerate(proposals) for _ in p]),
                        torch.tensor([i for p in proposals for i in p]), len(proposals))
    refined = RefinementOutput(torch.randn(3, NUM_INSTANCE + 1, generator=gen) * 3,
                               torch.rand(3, NUM_INSTANCE + 1, generator=gen) * 1.4 - 0.2,
                               torch.randn(masks.point_idx.numel(), NUM_INSTANCE + 1, generator=gen))
    model = tiny(test={"min_npoint": 6, "cls_score_thr": 0.02, "nms_iou": None})
    hyps, classes, scores = model.get_instances(masks, refined)
    got = sorted((int(c), round(float(s), 6), p)
                 for c, s, p in zip(classes, scores, point_sets(hyps)))
    want = sorted((c, round(s, 6), p) for c, s, p in slow_get_instances(model, proposals, refined, 60))
    assert len(want) > 5 and got == want
    assert scores.tolist() == sorted(scores.tolist(), reverse=True)



@pytest.fixture(scope="module")
def box_batch() -> tuple[list[Sample], dict]:
    samples = [box_scene(0), box_scene(1, num_boxes=3)]
    return samples, collate(samples, VOXEL)


def test_predict_returns_proposals_local_to_each_batch_item(box_batch):
    samples, batch = box_batch
    model = box_model(test={"nms_iou": None}).eval()
    results = model.predict(batch)
    assert len(results) == 2
    bounds = batch["batch_offsets"].tolist()
    for b, (r, sample) in enumerate(zip(results, samples)):
        n = len(sample.xyz)
        assert len(r) > 0
        assert r.point_class.dtype == np.int32 and r.point_class.shape == (n,)
        assert set(r.timing_ms) == {"backbone", "grouping", "refinement"}
        assert np.all((r.scores >= 0) & (r.scores <= 1))
        assert np.all(np.diff(r.scores) <= 0)
        assert np.all((r.class_ids >= SHIFT) & (r.class_ids < NUM_SEMANTIC))
        for idx in r.indices:
            assert idx.size >= model.test_cfg["min_npoint"]
            assert idx.min() >= 0 and idx.max() < n and np.all(np.diff(idx) > 0)
        # Every hypothesis lies inside one of this item's boxes or its floor: the local indices
        # address this item's points (batch item 1's would be off by bounds[1] otherwise).
        objects = sample.instance.copy()
        objects[objects < 0] = 99
        assert all(len(np.unique(objects[idx])) == 1 for idx in r.indices)
    # Item 1 alone gives the same instances as in the batch.
    alone = model.predict(collate([samples[1]], VOXEL))[0]
    assert [i.tolist() for i in alone.indices] == [i.tolist() for i in results[1].indices]
    assert alone.class_ids.tolist() == results[1].class_ids.tolist()
    np.testing.assert_allclose(alone.scores, results[1].scores, rtol=1e-4, atol=1e-6)
    assert bounds[1] == len(samples[0].xyz)


def test_predict_nms_removes_duplicate_hypotheses(box_batch):
    _, batch = box_batch
    official = box_model(test={"nms_iou": None}).eval().predict(batch)
    ours = box_model().eval().predict(batch)  # default test_cfg: nms_iou 0.3
    for full, kept in zip(official, ours):
        assert 0 < len(kept) < len(full)
        kept_sets = {frozenset(i.tolist()) for i in kept.indices}
        assert kept_sets <= {frozenset(i.tolist()) for i in full.indices}
        n = len(kept.point_class)
        dense = torch.zeros(len(kept), n, dtype=torch.bool)
        for k, idx in enumerate(kept.indices):
            dense[k, torch.from_numpy(idx)] = True
        iou = mask_iou(dense)
        assert float((iou - torch.eye(len(kept))).max()) <= 0.3


def test_predict_is_deterministic(box_batch):
    _, batch = box_batch
    model = box_model().eval()
    first, second = model.predict(batch), model.predict(batch)
    for a, b in zip(first, second):
        assert len(a) == len(b) > 0
        assert all(np.array_equal(x, y) for x, y in zip(a.indices, b.indices))
        assert np.array_equal(a.class_ids, b.class_ids) and np.array_equal(a.scores, b.scores)
        assert np.array_equal(a.point_class, b.point_class)


def test_predict_adds_one_argmax_instance_per_sem2ins_class(box_batch):
    samples, batch = box_batch
    sem = BOX_CLASSES[0]
    model = box_model(sem2ins_classes=[sem - SHIFT]).eval()
    with torch.no_grad():  # never the argmax: no instance of `sem` at all
        model.semantic_linear[3].bias[sem] = -1e3
    assert not any(np.any(r.class_ids == sem) for r in model.predict(batch))
    with torch.no_grad():  # every point's argmax: one instance of all points, score 1
        model.semantic_linear[3].bias[sem] = 1e3
    results = model.predict(batch)
    for r, sample in zip(results, samples):
        rows = np.flatnonzero(r.class_ids == sem)
        assert rows.tolist() == [len(r) - 1] and r.scores[-1] == 1.0
        assert np.array_equal(r.indices[-1], np.arange(len(sample.xyz)))
