"""ISBNet's instance stage (CPU, tiny models): aggregators, box-aware dynamic convolution against
a slow reference, chunking, training losses and gradients, inference, the official checkpoint
layout, a learning check and a fixed-seed regression fixture."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ros2_inst3d import ops
from ros2_inst3d.data.batching import collate
from ros2_inst3d.model import isbnet as isbnet_module
from ros2_inst3d.model.backbone import single_threaded_spconv
from ros2_inst3d.cli import main
from ros2_inst3d.model.isbnet import ISBNet, padded_ball_query
from ros2_inst3d.model.registry import build_network
from conftest import MANIFEST_SUFFIX, REFERENCE, REPO, adam_steps, box_scene

FIXTURE = REPO / "test" / "data" / "isbnet_instance_stage.npz"
VOXEL = 0.05


def tiny(seed: int = 0, **overrides) -> ISBNet:
    torch.manual_seed(seed)
    cfg = {"name": "isbnet", "channels": 8, "num_blocks": 3, "voxel_size": VOXEL,
           "filter_bg_thresh": 0.04,  # an untrained softmax is ~1/20 per class
           "instance_head_cfg": {"num_dyco_layer": 3, "dec_dim": 32, "n_sample_pa1": 128,
                                 "n_queries": 16, "neighbor": 8},
           # nms_iou None: the official output (the regression fixture pins it)
           "test_cfg": {"npoint_thresh": 5, "topk": 100, "logit_thresh": 0.0,
                        "type_nms": "matrix", "nms_iou": None},
           **overrides}
    return build_network(cfg)


def box_batch(seeds=(0,)) -> dict:
    return collate([box_scene(s) for s in seeds], VOXEL)


def test_padded_ball_query_pads_with_the_first_hit():
    xyz = torch.tensor([[0.0, 0, 0], [0.1, 0, 0], [5, 0, 0], [0.05, 0, 0]])
    nbr = padded_ball_query(xyz, xyz[[0, 2]], radius=0.2, num_neighbors=4)
    assert nbr.tolist() == [[0, 1, 3, 0], [2, 2, 2, 2]]
    assert padded_ball_query(xyz, xyz[:1], 0.2, 2).tolist() == [[0, 1]]  # first hits by index


def ref_mask_logits(model, params, q_xyz, q_box, feats, v_xyz, v_box):
    """Official mask_heads_forward, one query and one voxel at a time."""
    layers = model._dyco_layers()
    out = torch.zeros(params.shape[0], v_xyz.shape[0], dtype=torch.float64)
    for q in range(params.shape[0]):
        p = params[q].double()
        ws, at = [], 0
        for a, b in layers:
            ws.append(p[at:at + a * b].view(a, b))
            at += a * b
        bs = []
        for _, b in layers:
            bs.append(p[at:at + b])
            at += b
        q_dims = (q_box[q, 3:] - q_box[q, :3]).double()
        for n in range(v_xyz.shape[0]):
            v_dims = (v_box[n, 3:] - v_box[n, :3]).double()
            x = torch.cat([(q_xyz[q] - v_xyz[n]).double(), (q_dims - v_dims).abs(),
                           feats[n].double()])
            for i, w in enumerate(ws):
                x = x @ w
                if i < len(ws) - 1:
                    x = torch.relu(x + bs[i])
            out[q, n] = x[0]
    return out


@pytest.mark.parametrize("layers", [2, 3])
def test_dynamic_convolution_matches_the_official_formula(layers):
    model = tiny(instance_head_cfg={"num_dyco_layer": layers, "dec_dim": 32})
    gen = torch.Generator().manual_seed(layers)
    q, n = 5, 23
    params = torch.randn(q, isbnet_module.dynamic_conv_param_count(32, layers), generator=gen)
    q_xyz, v_xyz = torch.randn(q, 3, generator=gen), torch.randn(n, 3, generator=gen)
    q_box = torch.cat([q_xyz - 0.3, q_xyz + torch.rand(q, 3, generator=gen)], 1)
    v_box = torch.cat([v_xyz - 0.2, v_xyz + torch.rand(n, 3, generator=gen)], 1)
    feats = torch.randn(n, 32, generator=gen)
    got = model.mask_logits(params, q_xyz, q_box, feats, v_xyz, v_box)
    expected = ref_mask_logits(model, params, q_xyz, q_box, feats, v_xyz, v_box)
    torch.testing.assert_close(got.double(), expected, rtol=1e-4, atol=1e-4)


def test_dynamic_convolution_chunks_give_the_same_values_and_gradients(monkeypatch):
    torch.manual_seed(0)  # the network's init does not depend on which tests ran before
    model = tiny()
    gen = torch.Generator().manual_seed(1)
    q, n = 4, 50
    params = torch.randn(q, isbnet_module.dynamic_conv_param_count(32, 3), generator=gen,
                         requires_grad=True)
    xyz = torch.randn(n, 3, generator=gen)
    box = torch.cat([xyz - 0.1, xyz + 0.1], 1)
    feats = torch.randn(n, 32, generator=gen)
    args = (torch.zeros(q, 3), torch.zeros(q, 6), feats, xyz, box)
    whole = model.mask_logits(params, *args)
    (grad_whole,) = torch.autograd.grad(whole.square().sum(), params)
    monkeypatch.setattr(isbnet_module, "DYCO_CHUNK_ELEMENTS", q * 38 * 7)  # 7 voxels a chunk
    chunked = model.mask_logits(params, *args)
    (grad_chunked,) = torch.autograd.grad(chunked.square().sum(), params)
    # float32 sums in another order: errors scale with the logits (up to ~200 with random
    # weights), while a chunk stitched to the wrong voxels is off by the logits themselves
    scale = float(whole.abs().max())
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=max(1e-5, 1e-6 * scale))
    grad_scale = float(grad_whole.abs().max())
    torch.testing.assert_close(grad_chunked, grad_whole, rtol=1e-4,
                               atol=max(1e-4, 1e-6 * grad_scale))


@pytest.mark.slow
def test_forward_train_gives_finite_losses_and_trains_the_instance_heads():
    model = tiny()
    batch = box_batch((0, 1))
    loss, parts = model.forward_train(batch, 0)
    assert torch.isfinite(loss)
    for key in ("semantic_loss", "offset_loss", "point_box_loss", "box_conf_loss", "cls_loss",
                "mask_bce_loss", "mask_dice_loss", "box_loss", "mask_score_loss"):
        assert np.isfinite(parts[key]), key
    # 2 scenes x 16 queries; 4 boxes each duplicated 4 times: every query matched.
    assert parts["num_queries"] == 32 and parts["num_matched"] == 32
    with single_threaded_spconv("cpu"):
        loss.backward()
    for name in ("point_aggregator1", "point_aggregator2", "inst_shared_mlp", "inst_sem_head",
                 "inst_conf_head", "inst_box_head", "mask_tower", "inst_mask_head"):
        grads = [p.grad for p in getattr(model, name).parameters()]
        assert all(g is not None for g in grads), name
        assert sum(float(g.abs().sum()) for g in grads) > 0, name


@pytest.mark.slow
def test_predict_returns_valid_deterministic_proposals():
    model = fixture_model()
    batch = box_batch((0, 1))
    first = model.predict(batch)
    second = model.predict(batch)
    assert len(first) == 2
    sizes = np.diff(batch["batch_offsets"].numpy())
    assert sum(len(p) for p in first) > 0  # random weights still produce masks here
    for proposals, again, n in zip(first, second, sizes):
        assert len(proposals) == len(again)
        for a, b in zip(proposals.indices, again.indices):
            assert np.array_equal(a, b)
        np.testing.assert_array_equal(proposals.scores, again.scores)
        assert all(len(i) >= 5 and i.min() >= 0 and i.max() < n for i in proposals.indices)
        assert np.all((proposals.class_ids >= 2) & (proposals.class_ids < 20))
        assert np.all((proposals.scores >= 0) & (proposals.scores <= 1))
        assert np.all(np.diff(proposals.scores) <= 0)
        assert proposals.point_class.shape == (n,)
        assert set(proposals.timing_ms) == {"backbone", "grouping", "refinement"}


def test_mask_nms_leaves_one_instance_per_object():
    """test_cfg.nms_iou (ours): a subset of the official hypotheses, no two overlapping more
    than nms_iou, the best-scored one first."""
    model = fixture_model()
    batch = box_batch((0, 1))
    official = model.predict(batch)
    model.test_cfg["nms_iou"] = 0.3
    ours = model.predict(batch)
    for full, kept in zip(official, ours):
        assert 0 < len(kept) < len(full)
        full_sets = [frozenset(i.tolist()) for i in full.indices]
        assert {frozenset(i.tolist()) for i in kept.indices} <= set(full_sets)
        assert frozenset(kept.indices[0].tolist()) == full_sets[0]
        dense = torch.zeros(len(kept), len(kept.point_class), dtype=torch.bool)
        for k, idx in enumerate(kept.indices):
            dense[k, torch.from_numpy(idx)] = True
        assert float((ops.mask_iou(dense) - torch.eye(len(kept))).max()) <= 0.3
        assert np.all(np.diff(kept.scores) <= 0)


def test_semantic_only_model_predicts_no_instances():
    model = tiny(semantic_only=True).eval()
    (proposals,) = model.predict(box_batch())
    assert len(proposals) == 0 and proposals.point_class is not None
    loss, parts = model.forward_train(box_batch(), 0)
    assert "cls_loss" not in parts and torch.isfinite(loss)


@pytest.mark.slow
def test_isbnet_learns_a_box_scene():
    """Twenty steps on one scene: the instance losses fall (not a convergence test)."""
    model = tiny(seed=3)
    batch = box_batch((2,))
    torch.manual_seed(0)
    history = [parts for _, parts in adam_steps(model, batch, 20)]
    first, last = history[0], history[-1]
    assert last["mask_dice_loss"] < first["mask_dice_loss"]
    assert last["cls_loss"] < 0.5 * first["cls_loss"]
    assert last["semantic_loss"] < 0.75 * first["semantic_loss"]


@pytest.mark.slow
def test_official_scannet_checkpoint_layout_checks(tmp_path, capsys):
    manifest = json.loads(gzip.decompress(
        (REFERENCE / f"isbnet_scannet{MANIFEST_SUFFIX}").read_bytes()))
    state = {key: torch.zeros(info["shape"], dtype=getattr(torch, info["dtype"]))
             for key, info in manifest["tensors"].items()}
    path = tmp_path / "isbnet_scannet_fake.pth"
    torch.save({"net": state, "epoch": 120}, path)
    assert main(["check-checkpoint", str(path), "-c",
                 str(REPO / "config" / "models" / "isbnet_scannet.yaml")]) == 0
    assert "OK" in capsys.readouterr().out


def instance_stage_outputs(model: ISBNet, batch: dict) -> dict[str, np.ndarray]:
    """What the regression fixture pins: one item's kept queries and the final proposals."""
    with torch.no_grad():
        out = model._voxel_pointwise(batch)
        mask_feats = model.mask_tower(out["voxel_feats"].T[None])[0].T
        m = out["voxel_feats"].shape[0]
        prob, conf, logits, rows = model._predict_item(out, mask_feats, 0, m)
    (proposals,) = model.predict(batch)
    # Each proposal's point set as (size, sum, sum of squares): compact and order-sensitive.
    digest = np.array([[len(i), i.sum(), (i * i).sum()] for i in proposals.indices], np.int64)
    return {"prob": prob.numpy(), "conf": conf.numpy(), "logits": logits[:, ::20].numpy(),
            "query_rows": rows.numpy(), "digest": digest.reshape(-1, 3),
            "classes": proposals.class_ids, "scores": proposals.scores}


FIXTURE_MODEL = {"channels": 4, "num_blocks": 3, "mask_dim_out": 16,
                 "instance_head_cfg": {"num_dyco_layer": 3, "dec_dim": 16, "n_sample_pa1": 128,
                                       "n_queries": 16, "neighbor": 8}}


def fixture_model(data=None) -> ISBNet:
    """The fixture's network: seed-7 weights after 15 Adam steps on box scene 5 (so that its
    masks are not all empty or all full), as written by :func:`make_fixture`."""
    data = np.load(FIXTURE) if data is None else data
    model = tiny(seed=0, **FIXTURE_MODEL).eval()
    model.load_state_dict({k[6:]: torch.from_numpy(data[k]) for k in data.files
                           if k.startswith("state/")}, strict=True)
    return model


def make_fixture(path: Path = FIXTURE) -> None:
    """Write the fixture (run by hand after a deliberate change; say so in the commit):
    ``PYTHONPATH=.:test python3 -c "import test_isbnet as t; t.make_fixture()"``."""
    model = tiny(seed=7, **FIXTURE_MODEL)
    batch = box_batch((5,))
    torch.manual_seed(0)
    adam_steps(model, batch, 15)
    model.eval()
    state = {f"state/{k}": v.numpy() for k, v in model.state_dict().items()}
    outputs = {f"out/{k}": v for k, v in instance_stage_outputs(model, box_batch((5,))).items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **state, **outputs)


def test_instance_stage_regression_fixture():
    data = np.load(FIXTURE)
    got = instance_stage_outputs(fixture_model(data), box_batch((5,)))
    assert got["prob"].shape[0] > 0 and got["digest"].size > 0  # the fixture pins real work
    for key in ("query_rows", "digest", "classes"):
        np.testing.assert_array_equal(got[key], data[f"out/{key}"], err_msg=key)
    for key in ("prob", "conf", "logits", "scores"):
        np.testing.assert_allclose(got[key], data[f"out/{key}"], rtol=1e-4, atol=1e-4,
                                   err_msg=key)
