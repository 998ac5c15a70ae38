"""PointGroup's training losses, dual-set grouping, ScoreNet and inference (model/pointgroup.py).

A tiny network (8 channels, 3 levels, 5 cm voxels) on small generated rooms and hand-built clouds.
Grouping is checked with oracle inputs (ground-truth semantics and offsets), losses and targets
against slow per-point / per-proposal loops.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import adam_steps
from ros2_inst3d.data.batching import Sample, batch_to_device, collate
from ros2_inst3d.synthetic.scene import SceneParams, generate_scene
from ros2_inst3d.model import proposal_ops
from ros2_inst3d.model.backbone import single_threaded_spconv
from ros2_inst3d.model.pointgroup import PointGroup
from ros2_inst3d.model.softgroup import SoftGroup
from ros2_inst3d.train import load_pretrained
from ros2_inst3d.ops import mask_iou

VOXEL = 0.05
IGNORE = -100
SCENE_VOXEL = 0.06  # generated rooms: ~14k points each (cheap grouping of oracle offsets)
TINY = {"channels": 8, "num_blocks": 3, "voxel_size": VOXEL, "cluster_radius": 0.1,
        "cluster_npoint_thre": 10, "prepare_epochs": 2, "score_scale": 20,
        "TEST_NPOINT_THRESH": 10}


def tiny_model(seed: int = 0, **overrides) -> PointGroup:
    torch.manual_seed(seed)
    return PointGroup(**{**TINY, **overrides})


def generated_sample(seed: int) -> Sample:
    scene = generate_scene(seed, SceneParams.small(voxel_size=SCENE_VOXEL), threads=1)
    xyz = (scene.xyz - scene.xyz.mean(axis=0)).astype(np.float32)
    return Sample(f"gen{seed}", xyz, None, scene.rgb.astype(np.float32),
                  scene.semantic.astype(np.int64), scene.instance.astype(np.int64),
                  np.arange(scene.num_points, dtype=np.int64), True)


@pytest.fixture(scope="module")
def scenes() -> list[Sample]:
    return [generated_sample(0), generated_sample(1)]


@pytest.fixture(scope="module")
def batch2(scenes) -> dict:
    return batch_to_device(collate(scenes, VOXEL), "cpu")


def box_points(center, size, spacing=0.04) -> np.ndarray:
    """Grid points on the faces of an axis-aligned box (metres), like a scan of it."""
    axes = [np.arange(-s / 2, s / 2 + 1e-9, spacing) for s in size]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    on_face = np.zeros(len(grid), dtype=bool)
    for axis, values in enumerate(axes):
        on_face |= np.isclose(grid[:, axis], values[0]) | np.isclose(grid[:, axis], values[-1])
    return (grid[on_face] + np.asarray(center)).astype(np.float32)


def hand_built_sample(name: str = "boxes", objects=None, seed: int = 0) -> Sample:
    """A floor (class 1) with separated boxes on it; objects: (centre, size, semantic class),
    each its own instance; a few ignored points float above."""
    rng = np.random.default_rng(seed)
    if objects is None:
        objects = [((-0.6, 0.0, 0.2), (0.3, 0.3, 0.3), 5), ((0.6, 0.0, 0.2), (0.3, 0.2, 0.3), 5),
                   ((0.0, 0.7, 0.25), (0.4, 0.3, 0.4), 7)]
    parts = [box_points((0, 0, 0), (2.0, 2.0, 0.0))]
    semantic = [np.full(len(parts[0]), 1)]
    instance = [np.full(len(parts[0]), IGNORE)]
    for k, (center, size, cls) in enumerate(objects):
        pts = box_points(center, size)
        parts.append(pts)
        semantic.append(np.full(len(pts), cls))
        instance.append(np.full(len(pts), k))
    ignored = box_points((0.0, -0.7, 1.0), (0.1, 0.1, 0.1))
    parts.append(ignored)
    semantic.append(np.full(len(ignored), IGNORE))
    instance.append(np.full(len(ignored), IGNORE))
    xyz = np.concatenate(parts).astype(np.float32)
    n = len(xyz)
    rgb = rng.uniform(0, 255, (n, 3)).astype(np.float32)
    return Sample(name, xyz, None, rgb, np.concatenate(semantic).astype(np.int64),
                  np.concatenate(instance).astype(np.int64), np.arange(n, dtype=np.int64), True)


def oracle_pointwise(model: PointGroup, batch: dict) -> dict[str, torch.Tensor]:
    """The network's point features with ground-truth semantics (as logits) and offsets."""
    out = model.forward_batch(batch)
    semantic = batch["semantic"].clamp(min=0)  # ignored points become class 0 (never grouped)
    logits = torch.nn.functional.one_hot(semantic, model.semantic_classes).float() * 10.0
    return {**out, "semantic_logits": logits, "offsets": batch["offset_target"]}


def masks_as_sets(masks) -> list[set[int]]:
    sets: list[set[int]] = [set() for _ in range(masks.num_masks)]
    for m, p in zip(masks.mask_idx.tolist(), masks.point_idx.tolist()):
        sets[m].add(p)
    return sets


# ---------------------------------------------------------------------------------------------
# Grouping


def test_oracle_clustering_recovers_every_instance_in_the_shifted_set(batch2):
    model = tiny_model()
    semantic, instance = batch2["semantic"], batch2["instance"]
    original, shifted = model.cluster_sets(semantic, batch2["offset_target"], batch2["xyz"],
                                           batch2["batch_offsets"])
    sizes = batch2["instance_num_points"]
    big = torch.nonzero(sizes >= model.cluster_npoint_thre).squeeze(1)
    assert big.numel() >= 10
    best = proposal_ops.gt_iou(shifted, instance, sizes).max(dim=0).values
    assert torch.all(best[big] > 0.999), best[big]
    # Everything the shifted set holds is a whole instance, each one once.
    assert shifted.num_masks == big.numel()

    point_batch = batch2["point_batch"]
    for masks in (original, shifted):
        assert masks.num_masks > 0
        entries_sorted = masks.mask_idx * len(semantic) + masks.point_idx
        assert torch.all(entries_sorted[1:] > entries_sorted[:-1])
        labels = semantic[masks.point_idx]
        assert torch.all(labels >= model.num_stuff_classes)  # no wall/floor, no ignored point
        for key in (labels, point_batch[masks.point_idx]):  # one class, one batch item per mask
            low = proposal_ops.pool_per_proposal(key, masks.mask_idx, masks.num_masks, "min")
            high = proposal_ops.pool_per_proposal(key, masks.mask_idx, masks.num_masks, "max")
            assert torch.equal(low, high)
        assert torch.all(proposal_ops.mask_sizes(masks) >= model.cluster_npoint_thre)

    both = model.clustering(semantic, batch2["offset_target"], batch2["xyz"],
                            batch2["batch_offsets"])
    assert both.num_masks == original.num_masks + shifted.num_masks
    k = original.num_masks  # official order: original coordinates first, then shifted
    assert masks_as_sets(both) == masks_as_sets(original) + masks_as_sets(shifted)
    assert torch.equal(both.mask_idx[: original.mask_idx.numel()], original.mask_idx)
    assert int(both.mask_idx[original.mask_idx.numel()]) == k


def test_clusters_never_join_items_that_overlap_in_space():
    # The same cloud twice: identical coordinates, so only the batch split keeps them apart.
    sample = hand_built_sample()
    batch = collate([sample, sample], VOXEL)
    model = tiny_model()
    n = len(sample.xyz)
    for masks in model.cluster_sets(batch["semantic"], batch["offset_target"], batch["xyz"],
                                    batch["batch_offsets"]):
        assert masks.num_masks == 6  # three boxes per item
        for points in masks_as_sets(masks):
            assert len({p // n for p in points}) == 1


def test_clustering_with_nothing_to_group_is_empty(batch2):
    model = tiny_model()
    stuff = batch2["semantic"].clamp(0, 1)
    masks = model.clustering(stuff, batch2["offset_target"], batch2["xyz"],
                             batch2["batch_offsets"])
    assert masks.num_masks == 0 and masks.point_idx.numel() == 0


# ---------------------------------------------------------------------------------------------
# Targets and losses against slow loops


def test_clustering_adds_the_pieces_of_a_row_of_touching_units():
    # Three touching 1 m boxes of class 9 in a row (x), a separate 0.5 m one of class 4: with
    # class_length 1 m for class 9, the row's cluster (in both sets) also comes cut in three.
    row = np.concatenate([box_points((0.5 + i, 0.0, 0.5), (1.0, 0.4, 1.0)) for i in range(3)])
    chair = box_points((1.5, 2.0, 0.25), (0.5, 0.5, 0.5))
    xyz = torch.as_tensor(np.concatenate([row, chair]), dtype=torch.float32)
    semantic = torch.cat([torch.full((len(row),), 9), torch.full((len(chair),), 4)])
    lengths = [-1.0] * 20
    lengths[9], lengths[4] = 1.0, 0.6
    bounds = torch.tensor([0, len(xyz)])
    args = (semantic, torch.zeros_like(xyz), xyz, bounds)
    plain = tiny_model().clustering(*args)
    split = tiny_model(split_factor=1.5, class_length=lengths).clustering(*args)
    assert plain.num_masks == 4  # row and chair, once per set
    assert split.num_masks == 4 + 2 * 3
    sizes = proposal_ops.mask_sizes(split)[4:]
    assert sizes.sum() == 2 * len(row) and sizes.min() > 0.8 * len(row) / 3
    with pytest.raises(ValueError, match="class_length"):
        tiny_model(split_factor=1.5)


def test_soft_score_targets_match_the_paper_loop():
    max_iou = torch.linspace(0, 1, 41)
    fast = proposal_ops.soft_score_target(max_iou, 0.75, 0.25)
    for iou, target in zip(max_iou.tolist(), fast.tolist()):  # paper Eq. 5
        slow = 0.0 if iou < 0.25 else 1.0 if iou > 0.75 else (iou - 0.25) / 0.5
        assert target == pytest.approx(slow, abs=1e-6)


def test_score_targets_of_proposals_match_a_set_loop():
    gen = torch.Generator().manual_seed(3)
    n, num_inst = 60, 4
    instance = torch.randint(-1, num_inst, (n,), generator=gen)
    instance[instance < 0] = IGNORE
    sizes = torch.bincount(instance[instance >= 0], minlength=num_inst)
    cluster = torch.randint(-1, 6, (n,), generator=gen)
    masks = proposal_ops.clusters_to_masks(cluster)
    fast = proposal_ops.soft_score_target(
        proposal_ops.gt_iou(masks, instance, sizes).max(dim=1).values, 0.75, 0.25)
    for k, points in enumerate(masks_as_sets(masks)):
        best = 0.0
        for i in range(num_inst):
            gt = {p for p in range(n) if int(instance[p]) == i}
            best = max(best, len(points & gt) / len(points | gt))
        slow = min(max((best - 0.25) / 0.5, 0.0), 1.0)
        assert float(fast[k]) == pytest.approx(slow, abs=1e-6)


def test_pointwise_losses_match_a_per_point_loop():
    model = tiny_model()
    batch = collate([hand_built_sample()], VOXEL)
    batch["semantic"][::7] = IGNORE
    loss, parts = model.forward_train(batch, epoch=0)
    out = model.forward_batch(batch)  # train-mode BN: same batch statistics, same outputs
    logits, offsets = out["semantic_logits"].detach(), out["offsets"].detach()
    ce, n_sem, l1, cos, n_inst = 0.0, 0, 0.0, 0.0, 0
    for i in range(len(batch["xyz"])):
        label = int(batch["semantic"][i])
        if label != IGNORE:
            ce -= float(torch.log_softmax(logits[i], 0)[label])
            n_sem += 1
        if int(batch["instance"][i]) >= 0:
            pred, target = offsets[i].tolist(), batch["offset_target"][i].tolist()
            l1 += sum(abs(a - b) for a, b in zip(pred, target))
            dot = sum(a * b for a, b in zip(pred, target))
            cos += dot / (math.hypot(*pred) * math.hypot(*target))
            n_inst += 1
    assert parts["semantic_loss"] == pytest.approx(ce / n_sem, rel=1e-4)
    assert parts["offset_loss"] == pytest.approx(l1 / n_inst, rel=1e-4)
    assert parts["dir_loss"] == pytest.approx(-cos / n_inst, rel=1e-4, abs=1e-5)
    assert parts["score_loss"] == 0.0 and parts["num_proposals"] == 0
    assert float(loss.detach()) == pytest.approx(ce / n_sem + l1 / n_inst - cos / n_inst, rel=1e-4)


# ---------------------------------------------------------------------------------------------
# Training


def grads(module: torch.nn.Module) -> list[torch.Tensor | None]:
    return [p.grad for p in module.parameters()]


def test_scorenet_trains_only_from_prepare_epochs_on(batch2):
    model = tiny_model()
    loss, parts = model.forward_train(batch2, epoch=model.prepare_epochs - 1)
    with single_threaded_spconv("cpu"):
        loss.backward()
    assert parts["score_loss"] == 0.0 and parts["num_proposals"] == 0
    assert all(g is None for g in grads(model.score_unet) + grads(model.score_linear))
    assert all(g is not None for g in grads(model.input_conv))

    model.zero_grad(set_to_none=True)
    loss, parts = model.forward_train(batch2, epoch=model.prepare_epochs)
    with single_threaded_spconv("cpu"):
        loss.backward()
    assert math.isfinite(float(loss)) and parts["num_proposals"] > 0
    assert 0.0 < parts["score_loss"] < 10.0
    parts_sum = sum(parts[k] for k in ("semantic_loss", "offset_loss", "dir_loss", "score_loss"))
    assert float(loss) == pytest.approx(parts_sum, rel=1e-5)
    for module in (model.input_conv, model.unet, model.score_unet, model.score_linear):
        assert all(g is not None and torch.isfinite(g).all() for g in grads(module))
    assert float(model.score_linear.weight.grad.abs().sum()) > 0


def test_score_loss_reaches_the_backbone(batch2):
    model = tiny_model()
    out = model.forward_batch(batch2)
    masks = model.clustering(out["semantic_logits"].argmax(1).detach(), out["offsets"].detach(),
                             batch2["xyz"], batch2["batch_offsets"])
    assert masks.num_masks > 0
    logits = model.score_logits(masks, out["point_feats"], batch2["xyz"],
                                random_shift=torch.Generator().manual_seed(0))
    assert logits.shape == (masks.num_masks,)
    with single_threaded_spconv("cpu"):
        logits.sum().backward()
    assert float(model.input_conv[0].weight.grad.abs().sum()) > 0
    assert model.offset_linear.weight.grad is None  # grouping runs on detached offsets


@pytest.mark.slow
def test_adam_steps_reduce_the_loss(scenes):
    model = tiny_model(prepare_epochs=0)
    batch = collate(scenes[:1], VOXEL)
    history = [{**parts, "loss": loss} for loss, parts in adam_steps(model, batch, 5)]
    assert all(p["num_proposals"] > 0 for p in history)
    assert history[-1]["loss"] < 0.8 * history[0]["loss"]
    assert history[-1]["semantic_loss"] < history[0]["semantic_loss"]
    assert history[-1]["offset_loss"] < history[0]["offset_loss"]
    assert history[-1]["score_loss"] < history[0]["score_loss"]


def test_training_without_proposals_or_labels_stays_finite(batch2):
    model = tiny_model()
    with torch.no_grad():
        model.linear.bias[0] = 1e3  # every point predicted as wall: nothing to group
    loss, parts = model.forward_train(batch2, epoch=model.prepare_epochs)
    with single_threaded_spconv("cpu"):
        loss.backward()
    assert parts["num_proposals"] == 0 and parts["score_loss"] == 0.0
    assert all(g is not None and float(g.abs().sum()) == 0 for g in grads(model.score_unet))

    unlabelled = dict(batch2, semantic=torch.full_like(batch2["semantic"], IGNORE),
                      instance=torch.full_like(batch2["instance"], IGNORE),
                      instance_num_points=batch2["instance_num_points"][:0])
    model = tiny_model()
    loss, parts = model.forward_train(unlabelled, epoch=model.prepare_epochs)
    assert math.isfinite(float(loss)) and loss.requires_grad
    assert parts["semantic_loss"] == 0.0 and parts["offset_loss"] == 0.0
    assert parts["num_proposals"] > 0 and math.isfinite(parts["score_loss"])

    semantic_only = tiny_model(semantic_only=True)
    assert not hasattr(semantic_only, "score_unet")
    loss, parts = semantic_only.forward_train(batch2, epoch=100)
    assert parts["num_proposals"] == 0 and parts["score_loss"] == 0.0


# ---------------------------------------------------------------------------------------------
# Inference


@pytest.mark.slow
def test_predict_is_well_formed_and_deterministic(batch2):
    model = tiny_model(TEST_SCORE_THRESH=0.0)
    model.eval()
    first = model.predict(batch2)
    again = model.predict(batch2)
    offsets = batch2["batch_offsets"].tolist()
    logits = model.forward_batch(batch2)["semantic_logits"].argmax(1)
    assert len(first) == 2
    assert sum(len(p) for p in first) > 0
    for b, (props, props2) in enumerate(zip(first, again)):
        n = offsets[b + 1] - offsets[b]
        assert props.point_class.dtype == np.int32 and props.point_class.shape == (n,)
        assert np.array_equal(props.point_class, logits[offsets[b]:offsets[b + 1]].numpy())
        assert set(props.timing_ms) == {"backbone", "grouping", "refinement"}
        assert np.all(np.diff(props.scores) <= 0)
        assert np.all((props.scores > 0.0) & (props.scores <= 1.0))
        for idx, cls in zip(props.indices, props.class_ids):
            assert idx.size > model.TEST_NPOINT_THRESH
            assert np.all(np.diff(idx) > 0) and idx[0] >= 0 and idx[-1] < n
            assert cls == props.point_class[idx[0]] and cls >= model.num_stuff_classes
        if len(props) > 1:  # NMS: no two kept proposals overlap by more than the threshold
            dense = torch.zeros((len(props), n), dtype=torch.bool)
            for k, idx in enumerate(props.indices):
                dense[k, torch.from_numpy(idx)] = True
            iou = mask_iou(dense) - torch.eye(len(props))
            assert float(iou.max()) <= model.TEST_NMS_THRESH
        assert np.array_equal(props.scores, props2.scores)
        assert np.array_equal(props.class_ids, props2.class_ids)
        assert all(np.array_equal(a, c) for a, c in zip(props.indices, props2.indices))


def test_nms_keeps_one_of_each_dual_set_duplicate():
    # With oracle inputs on well-separated boxes the original-coordinate and the shifted
    # clusters of each box are the same point set: six proposals, three instances after NMS.
    samples = [hand_built_sample("a"), hand_built_sample("b", objects=[
        ((0.0, 0.0, 0.3), (0.4, 0.4, 0.4), 9)])]
    batch = collate(samples, VOXEL)
    model = tiny_model(TEST_SCORE_THRESH=0.0)
    model.eval()
    pointwise = oracle_pointwise(model, batch)
    both = model.clustering(pointwise["semantic_logits"].argmax(1), pointwise["offsets"],
                            batch["xyz"], batch["batch_offsets"])
    assert both.num_masks == 8
    sets = masks_as_sets(both)
    assert sets[:4] == sets[4:]
    masks, scores = model.instances_from_pointwise(batch, pointwise)
    assert masks.num_masks == 4 and torch.all(scores[1:] <= scores[:-1])
    gt = proposal_ops.gt_iou(masks, batch["instance"], batch["instance_num_points"])
    assert torch.allclose(gt.max(dim=1).values, torch.ones(4))
    assert sorted(gt.argmax(dim=1).tolist()) == [0, 1, 2, 3]


def test_predict_without_instances_returns_empty_proposals(batch2):
    model = tiny_model()
    model.eval()
    with torch.no_grad():
        model.linear.bias[1] = 1e3  # everything floor
    for props, n in zip(model.predict(batch2), batch2["batch_offsets"].diff().tolist()):
        assert len(props) == 0 and props.scores.shape == (0,) and props.class_ids.shape == (0,)
        assert props.point_class.shape == (n,) and np.all(props.point_class == 1)

    semantic_only = tiny_model(semantic_only=True)
    semantic_only.eval()
    props = semantic_only.predict(batch2)
    assert [len(p) for p in props] == [0, 0]

    strict = tiny_model(TEST_SCORE_THRESH=1.0)  # sigmoid never exceeds 1: nothing is kept
    strict.eval()
    assert [len(p) for p in strict.predict(batch2)] == [0, 0]


def test_shared_stage1_checkpoint_loads_into_pointgroup_with_softgroup_heads(batch2, tmp_path):
    """The two-stage recipe's stage 1 is a SoftGroup point-wise network (semantic_only); with
    ``pointwise_heads: softgroup`` PointGroup takes every one of its tensors (0 missing backbone
    or head tensors, only ScoreNet left to train) and then computes the same semantics and
    offsets."""
    size = {k: TINY[k] for k in ("channels", "num_blocks", "voxel_size")}
    torch.manual_seed(1)
    stage1 = SoftGroup(**size, semantic_only=True).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so a missed buffer shows
        for name, buf in stage1.named_buffers():
            if buf.is_floating_point():
                buf.uniform_(0.5, 1.5) if name.endswith("running_var") else buf.normal_()
    path = tmp_path / "stage1.pth"
    torch.save({"net": stage1.state_dict()}, path)
    model = tiny_model(seed=2, pointwise_heads="softgroup")
    load_pretrained(model, path)
    loaded = model.state_dict()
    for key, value in stage1.state_dict().items():
        assert torch.equal(loaded[key], value), key
    left = {k.split(".")[0] for k in loaded if k not in stage1.state_dict()}
    assert left == {"score_unet", "score_outputlayer", "score_linear"}
    model.eval()
    with torch.no_grad():
        ours, theirs = model.forward_batch(batch2), stage1.forward_batch(batch2)
    for key in ("semantic_logits", "offsets"):
        torch.testing.assert_close(ours[key], theirs[key])
    # The official layout cannot take them: its semantic head is one Linear, not an MLP.
    official = tiny_model(seed=2)
    assert not any(k.startswith("semantic_linear") for k in official.state_dict())
    with pytest.raises(ValueError, match="pointwise_heads must be one of"):
        tiny_model(pointwise_heads="mlp")
