"""MTML (CPU, tiny models): losses and gradients, proposal scoring on a hand-built case,
inference, and a learning check on a box scene."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ros2_inst3d.data.batching import collate
from ros2_inst3d.model.backbone import single_threaded_spconv
from ros2_inst3d.model.mtml import MTML
from ros2_inst3d.model.registry import build_network, load_model_config
from conftest import REPO, adam_steps, box_scene

VOXEL = 0.05


def tiny(seed: int = 0, **overrides) -> MTML:
    torch.manual_seed(seed)
    return build_network({"name": "mtml", "channels": 8, "num_blocks": 3, "voxel_size": VOXEL,
                        "min_points": 10, **overrides})


def test_synthetic_config_builds():
    model = build_network(load_model_config(REPO / "config" / "models" / "mtml_synthetic.yaml"))
    assert isinstance(model, MTML) and model.bandwidths == [1.0, 1.5] and model.split_radius == 0.3


def test_bad_margins_are_refused():
    with pytest.raises(ValueError, match="delta_v"):
        tiny(delta_v=2.0, delta_d=1.0)


def test_forward_train_losses_and_gradients():
    model = tiny()
    batch = collate([box_scene(0), box_scene(1)], VOXEL)
    loss, parts = model.forward_train(batch, 0)
    assert set(parts) == {"semantic_loss", "var_loss", "dist_loss", "reg_loss", "dir_loss"}
    assert torch.isfinite(loss) and all(np.isfinite(v) for v in parts.values())
    with single_threaded_spconv("cpu"):
        loss.backward()
    for name in ("embedding_linear", "direction_linear", "semantic_linear", "unet"):
        grads = [p.grad for p in getattr(model, name).parameters()]
        assert all(g is not None for g in grads), name
        assert sum(float(g.abs().sum()) for g in grads) > 0, name


def test_score_clusters_by_direction_consistency_and_coherence():
    model = tiny(delta_v=0.5)
    # Cluster 0: four voxels around (0, 0, 0) whose directions point at the centre, embeddings
    # within delta_v of their mean: score 1. Cluster 1: two voxels pointing away (cos -1 →
    # clamped to 0). Row 6: no cluster.
    xyz = torch.tensor([[1.0, 0, 0], [-1.0, 0, 0], [0, 1.0, 0], [0, -1.0, 0],
                        [5.0, 0, 0], [7.0, 0, 0], [9.0, 9, 9]])
    direction = torch.tensor([[-1.0, 0, 0], [1.0, 0, 0], [0, -2.0, 0], [0, 1.0, 0],
                              [-1.0, 0, 0], [1.0, 0, 0], [0, 0, 1.0]])
    emb = torch.tensor([[0.0], [0.1], [0.2], [0.1], [3.0], [5.0], [9.0]])
    semantic = torch.tensor([4, 4, 5, 4, 7, 7, 1])
    cluster = torch.tensor([0, 0, 0, 0, 1, 1, -1])
    score, cls = model.score_clusters(cluster, emb, direction, xyz, semantic)
    assert score.tolist() == pytest.approx([1.0, 0.0])
    assert cls.tolist() == [2, 5]  # majority semantic 4 → instance class 2; 7 → 5
    # Coherence: cluster 1's embeddings sit 1.0 from their mean (> delta_v).
    direction[4], direction[5] = torch.tensor([1.0, 0, 0]), torch.tensor([-1.0, 0, 0])
    score, _ = model.score_clusters(cluster, emb, direction, xyz, semantic)
    assert score.tolist() == pytest.approx([1.0, 0.0])
    emb[4], emb[5] = torch.tensor([4.0]), torch.tensor([4.2])
    score, _ = model.score_clusters(cluster, emb, direction, xyz, semantic)
    assert score.tolist() == pytest.approx([1.0, 1.0])


def test_split_clusters_proposes_the_spatial_parts_of_a_cluster():
    model = tiny(split_radius=0.2)
    # Cluster 0 holds two groups 2 m apart (one embedding mode, two objects); cluster 1 is one
    # connected group; row 6 belongs to no cluster and stays out.
    xyz = torch.tensor([[0.0, 0, 0], [0.1, 0, 0], [2.0, 0, 0], [2.1, 0, 0],
                        [5.0, 0, 0], [5.15, 0, 0], [5.05, 0, 0]])
    cluster = torch.tensor([0, 0, 0, 0, 1, 1, -1])
    (parts,) = model.split_clusters([cluster], xyz)
    assert parts.tolist() == [0, 0, 1, 1, 2, 2, -1]
    # A clustering whose clusters are all connected proposes nothing new.
    assert model.split_clusters([torch.tensor([0, 0, 1, 1, 2, 2, -1])], xyz) == []
    with pytest.raises(ValueError, match="split_radius"):
        tiny(split_radius=-1.0)


def test_xyz_weight_keeps_distant_objects_of_one_embedding_mode_apart():
    # Two tight groups of voxels 4 m apart with the same embedding (two chairs the embedding
    # confuses) and a third group with another embedding.
    xyz = torch.tensor([[0.0, 0, 0], [0.1, 0, 0], [0.0, 0.1, 0], [4.0, 0, 0], [4.1, 0, 0],
                        [4.0, 0.1, 0], [2.0, 2.0, 0], [2.1, 2.0, 0]])
    embedding = torch.tensor([[0.0, 0.0]] * 6 + [[3.0, 3.0]] * 2)
    (alone,) = tiny(bandwidths=[1.0]).mean_shift(embedding, xyz)
    assert alone[0] == alone[3] and alone[0] != alone[6]
    (spatial,) = tiny(bandwidths=[1.0], xyz_weight=0.5).mean_shift(embedding, xyz)
    assert len({int(spatial[i]) for i in (0, 3, 6)}) == 3
    assert spatial[:3].unique().numel() == 1 and spatial[3:6].unique().numel() == 1
    with pytest.raises(ValueError, match="xyz_weight"):
        tiny(xyz_weight=-0.5)


def test_split_long_clusters_proposes_object_sized_pieces_of_a_row():
    lengths = [-1.0] * 20
    lengths[9] = 1.0
    model = tiny(split_factor=1.5, class_length=lengths)
    # Cluster 0: voxels every 0.1 m along a 3 m row of class 9; cluster 1: a 3 m row of class 4,
    # which has no typical length (never split); the last voxel is in no cluster.
    row = torch.arange(0.0, 3.0, 0.1)
    xyz = torch.stack([torch.cat([row, row, torch.tensor([9.0])]),
                       torch.cat([torch.zeros(30), torch.full((30,), 2.0), torch.zeros(1)]),
                       torch.zeros(61)], dim=1)
    cluster = torch.cat([torch.zeros(30), torch.ones(30), torch.tensor([-1.0])]).long()
    semantic = torch.cat([torch.full((30,), 9), torch.full((30,), 4), torch.tensor([9])])
    (pieces,) = model.split_long_clusters([cluster], semantic, xyz)
    assert pieces[:30].tolist() == [0] * 10 + [1] * 10 + [2] * 10
    assert (pieces[30:] == -1).all()
    assert model.split_long_clusters([torch.where(cluster == 0, -1, cluster)], semantic, xyz) == []
    with pytest.raises(ValueError, match="class_length"):
        tiny(split_factor=1.5)


@pytest.mark.parametrize("split_radius", [0.0, 0.1])
def test_predict_returns_valid_deterministic_proposals(split_radius):
    model = tiny(bandwidths=[4.0, 8.0], score_thresh=-1.0, split_radius=split_radius).eval()
    batch = collate([box_scene(0), box_scene(1)], VOXEL)
    with torch.no_grad():
        model.semantic_linear[-1].bias[4] += 20.0  # every voxel a chair: all are clustered
    first, second = model.predict(batch), model.predict(batch)
    sizes = np.diff(batch["batch_offsets"].numpy())
    assert sum(len(p) for p in first) > 0
    for proposals, again, n in zip(first, second, sizes):
        assert [i.tolist() for i in proposals.indices] == [i.tolist() for i in again.indices]
        assert all(len(i) >= 10 and i.min() >= 0 and i.max() < n for i in proposals.indices)
        assert np.all(proposals.class_ids == 4)
        assert np.all(np.diff(proposals.scores) <= 0)
        assert set(proposals.timing_ms) == {"backbone", "grouping", "refinement"}


@pytest.mark.slow
def test_mtml_learns_a_box_scene():
    """Twenty steps on one scene: the embedding and direction losses fall."""
    model = tiny(seed=1)
    batch = collate([box_scene(2)], VOXEL)
    history = [parts for _, parts in adam_steps(model, batch, 20)]
    first, last = history[0], history[-1]
    assert last["var_loss"] + last["dist_loss"] < 0.5 * (first["var_loss"] + first["dist_loss"])
    assert last["dir_loss"] < first["dir_loss"] - 0.2
    assert last["semantic_loss"] < 0.75 * first["semantic_loss"]


def test_calibration_settings_parse_and_refuse_unknown_keys():
    """benchmarks/mtml_calibrate.py: each --set names post-processing attributes that exist on
    MTML, so a typo cannot silently calibrate nothing."""
    import argparse
    import importlib.util

    script = REPO / "benchmarks" / "mtml_calibrate.py"
    spec = importlib.util.spec_from_file_location("mtml_calibrate_under_test", script)
    calibrate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(calibrate)
    assert calibrate.parse_setting("bandwidths=1.0 1.5,split_radius=0.3,min_points=300") == {
        "bandwidths": [1.0, 1.5], "split_radius": 0.3, "min_points": 300}
    model = tiny()
    assert all(hasattr(model, key) for key in calibrate.SETTINGS)
    for bad in ("split_radious=0.3", "min_points=many", "nms_iou"):
        with pytest.raises(argparse.ArgumentTypeError):
            calibrate.parse_setting(bad)
