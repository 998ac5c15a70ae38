"""SSAIFF feature fusion (model/fusion.py) on hand-computed cases, and ``fusion: true`` on
PointGroup and SoftGroup: gradient stop, losses, inference, unchanged default layout."""

from __future__ import annotations

import pytest
import torch

from ros2_inst3d.data.batching import collate
from ros2_inst3d.model.backbone import single_threaded_spconv
from ros2_inst3d.model.fusion import fuse_by_semantics, push_from_region, region_centre_offsets
from ros2_inst3d.model.registry import build_network, load_model_config
from conftest import REPO, box_scene

VOXEL = 0.05
BIG = 30.0  # a logit that makes softmax one-hot to float32 precision


def test_fusion_pools_features_per_class_and_cloud():
    feats = torch.tensor([[1.0, 0], [3.0, 0], [0, 10.0], [7.0, 7.0]])
    xyz = torch.arange(12.0).view(4, 3)
    # Cloud 0: rows 0, 1 of class 0, row 2 of class 1; cloud 1: row 3 alone (class 0).
    logits = torch.tensor([[BIG, 0], [BIG, 0], [0, BIG], [BIG, 0]])
    out = fuse_by_semantics(feats, logits, xyz, torch.tensor([0, 3, 4]))
    assert out.shape == (4, 2 * 2 + 3)
    torch.testing.assert_close(out[:, :2], torch.tensor([[2.0, 0], [2.0, 0], [0, 10.0],
                                                         [7.0, 7.0]]))
    torch.testing.assert_close(out[:, 2:4], feats)
    torch.testing.assert_close(out[:, 4:], xyz)
    # Soft probabilities (paper eq. 3-4): p = [0.5, 0.5] for row 0, one-hot for rows 1, 2.
    logits = torch.tensor([[0.0, 0], [BIG, 0], [0, BIG]])
    out = fuse_by_semantics(feats[:3], logits, xyz[:3], torch.tensor([0, 3]))
    z0 = (0.5 * feats[0] + feats[1]) / 1.5
    z1 = (0.5 * feats[0] + feats[2]) / 1.5
    torch.testing.assert_close(out[0, :2], 0.5 * z0 + 0.5 * z1, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out[1, :2], z0, rtol=1e-5, atol=1e-5)


def test_fusion_stops_the_gradient_into_the_semantics():
    feats = torch.randn(5, 3, requires_grad=True)
    logits = torch.randn(5, 4, requires_grad=True)
    fuse_by_semantics(feats, logits, torch.zeros(5, 3), torch.tensor([0, 5])).sum().backward()
    assert logits.grad is None and feats.grad is not None


def test_region_centre_targets_and_push():
    # Cloud 0: chairs (class 5) centred at x = 0 and x = 2, a table (class 7) at x = 10, a wall
    # point (class 0) and an unlabelled point; cloud 1: one chair at x = 4.
    batch = {"xyz": torch.tensor([[0.0, 0, 0], [2, 0, 0], [10, 0, 0], [9, 9, 9], [8, 8, 8],
                                  [4, 1, 0]]),
             "instance": torch.tensor([0, 1, 2, 3, -100, 4]),
             "instance_class": torch.tensor([5, 5, 7, 0, 5]),
             "instance_center": torch.tensor([[0.0, 0, 0], [2, 0, 0], [10, 0, 0], [9, 9, 9],
                                              [4, 0, 0]]),
             "batch_offsets": torch.tensor([0, 5, 6])}
    target, valid = region_centre_offsets(batch, num_stuff_classes=2)
    assert valid.tolist() == [True, True, True, False, False, True]
    torch.testing.assert_close(target[valid], torch.tensor([[1.0, 0, 0], [-1.0, 0, 0],
                                                            [0, 0, 0], [0, -1.0, 0]]))
    pushed = push_from_region(torch.tensor([[1.0, 0, 0]]), torch.tensor([[0.0, 0, 0]]), 0.05)
    torch.testing.assert_close(pushed, torch.tensor([[1.05, 0, 0]]))
    same = torch.tensor([[1.0, 2, 3]])
    assert torch.equal(push_from_region(same, torch.zeros(1, 3), 0.0), same)


def tiny(name: str, **overrides):
    torch.manual_seed(0)
    cfg = load_model_config(REPO / "config" / "models" / f"{name}_synthetic.yaml")
    cfg.update({"channels": 8, "num_blocks": 3, "fusion": True, **overrides})
    return build_network(cfg)


# (method, extra model keys): PointGroup with its official Linear heads and with SoftGroup's
# MLP heads (pointwise_heads: softgroup, the shipped layout), SoftGroup.
HEAD_LAYOUTS = [("pointgroup", {"pointwise_heads": "pointgroup"}),
                ("pointgroup", {"pointwise_heads": "softgroup"}), ("softgroup", {})]


def semantic_head(model) -> torch.nn.Module:
    return model.semantic_linear if hasattr(model, "semantic_linear") else model.linear


@pytest.mark.parametrize(("name", "heads"), HEAD_LAYOUTS)
def test_fusion_models_train_and_predict(name, heads):
    extra = {"prepare_epochs": 0} if name == "pointgroup" else {}
    model = tiny(name, **extra, **heads)
    batch = collate([box_scene(0), box_scene(1)], VOXEL)
    loss, parts = model.forward_train(batch, 0)
    assert torch.isfinite(loss) and parts["region_loss"] > 0
    with single_threaded_spconv("cpu"):
        loss.backward()
    region_grads = [p.grad for p in model.region_linear.parameters()]
    assert all(g is not None for g in region_grads)
    assert sum(float(g.abs().sum()) for g in region_grads) > 0
    model.eval()
    results = model.predict(batch)
    assert len(results) == 2 and all(r.point_class.shape[0] > 0 for r in results)


@pytest.mark.parametrize(("name", "heads"), HEAD_LAYOUTS)
def test_offsets_do_not_train_the_semantic_head(name, heads):
    model = tiny(name, **heads)
    batch = collate([box_scene(0)], VOXEL)
    out = model.forward_batch(batch)
    with single_threaded_spconv("cpu"):
        (out["offsets"].sum() + out["region_offsets"].sum()).backward()
    head = semantic_head(model)
    assert all(p.grad is None or float(p.grad.abs().sum()) == 0 for p in head.parameters())


@pytest.mark.parametrize("name", ["pointgroup", "softgroup"])
def test_default_layout_is_unchanged(name):
    cfg = load_model_config(REPO / "config" / "models" / f"{name}_synthetic.yaml")
    assert "fusion" not in cfg
    keys = set(build_network(cfg, device="meta").state_dict())
    assert not any(k.startswith("region_linear") for k in keys)
    fused = set(build_network({**cfg, "fusion": True}, device="meta").state_dict())
    assert fused - keys == {k for k in fused if k.startswith("region_linear")}
