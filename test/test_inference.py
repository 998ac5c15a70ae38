"""Learned-model inference: checkpoint + config → LearnedModel → Proposals → Segmenter → Instances.

The networks are tiny (8 channels, 3 U-Net levels, 5 cm voxels) with random weights, saved as our
training checkpoints are (``{'net', 'config', 'class_names', ...}``) and loaded back through the
same path as the node. Random weights give meaningless instances, so the semantic head's bias is
set to favour one thing class: every point then joins the grouping and proposals exist to check.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from ros2_inst3d.classes import SCANNET20_CLASSES, STUFF_CLASSES
from ros2_inst3d.config import Config, ConfigError
from ros2_inst3d.synthetic.scene import SceneParams, generate_scene
from ros2_inst3d.model.backbone import resolve_device
from ros2_inst3d.model.inference import LearnedModel
from ros2_inst3d.model.proposals import Proposals
from ros2_inst3d.model.registry import build_network
from ros2_inst3d.segmenter import SegmentationError, Segmenter, build_point_model
from ros2_inst3d.voxelize import crop_roi

CHAIR = 4
TINY = {"in_channels": 3, "channels": 8, "num_blocks": 3, "semantic_classes": 20,
        "instance_classes": 18, "voxel_size": 0.05}
TINY_CONFIGS = {
    "softgroup": {"name": "softgroup", **TINY,
                  # 5 cm voxels and ~10k-point rooms: the ScanNet point-count priors and 2 cm
                  # radius would leave no proposal.
                  "grouping_cfg": {"score_thr": 0.2, "radius": 0.08, "mean_active": 300,
                                   "class_numpoint_mean": [-1.0, -1.0] + [200.0] * 18,
                                   "npoint_thr": 0.05, "ignore_classes": [0, 1]},
                  "instance_voxel_cfg": {"scale": 20, "spatial_shape": 14},
                  "test_cfg": {"x4_split": False, "cls_score_thr": 0.001,
                               "mask_score_thr": -0.5, "min_npoint": 10,
                               "eval_tasks": ["semantic", "instance"]}},
    "pointgroup": {"name": "pointgroup", **TINY, "cluster_radius": 0.08,
                   "cluster_npoint_thre": 10, "score_scale": 20, "score_fullscale": 14,
                   "TEST_NPOINT_THRESH": 10, "TEST_SCORE_THRESH": 0.0},
    "isbnet": {"name": "isbnet", **TINY,
               "instance_head_cfg": {"num_dyco_layer": 2, "dec_dim": 16, "n_sample_pa1": 128,
                                     "n_queries": 16, "neighbor": 8},
               "test_cfg": {"npoint_thresh": 10, "logit_thresh": 0.0, "type_nms": "matrix",
                            "topk": 100}},
    # Random embeddings are spread wide and random directions score ~0: wide bandwidths and no
    # score threshold, so that proposals exist.
    "mtml": {"name": "mtml", **TINY, "bandwidths": [4.0, 8.0], "min_points": 10,
             "score_thresh": -1.0},
}
METHODS = sorted(TINY_CONFIGS)


def semantic_head_bias(network: torch.nn.Module) -> torch.Tensor:
    """The bias of the last semantic layer (SoftGroup: MLP ``semantic_linear``, PointGroup:
    ``linear``)."""
    head = network.semantic_linear[-1] if hasattr(network, "semantic_linear") else network.linear
    return head.bias


def tiny_network(name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    network = build_network(TINY_CONFIGS[name])
    with torch.no_grad():
        semantic_head_bias(network)[CHAIR] += 20.0
    return network


def save_checkpoint(network: torch.nn.Module, config: dict, path: Path) -> Path:
    """A checkpoint as the trainer writes it (loadable with ``weights_only=True``)."""
    torch.save({"net": network.state_dict(), "config": config,
                "class_names": list(SCANNET20_CLASSES), "epoch": 3, "iteration": 30,
                "metrics": {}}, path)
    return path


@pytest.fixture(scope="module")
def scene():
    return generate_scene(7, SceneParams.small())


@pytest.fixture(scope="module", params=METHODS)
def checkpoint(request, tmp_path_factory) -> tuple[str, Path]:
    name = request.param
    path = tmp_path_factory.mktemp(name) / f"{name}_tiny.pth"
    return name, save_checkpoint(tiny_network(name), TINY_CONFIGS[name], path)


def learned_config(name: str, path: Path, **overrides) -> Config:
    return Config().replace(**{"model.name": name, "model.checkpoint": str(path),
                               "model.device": "cpu", **overrides})


@pytest.fixture(scope="module")
def learned(checkpoint) -> LearnedModel:
    name, path = checkpoint
    model = build_point_model(learned_config(name, path))
    assert isinstance(model, LearnedModel)
    return model


def assert_valid_proposals(p: Proposals, num_points: int) -> None:
    assert len(p) > 0, "the biased tiny network should propose instances"
    for ix in p.indices:
        assert ix.dtype == np.int64 and ix.size > 0
        assert ix.min() >= 0 and ix.max() < num_points
        assert np.unique(ix).size == ix.size
    assert p.class_ids.dtype == np.int32
    assert np.all((p.class_ids >= 2) & (p.class_ids <= 19)), p.class_ids
    assert np.all((p.scores >= 0.0) & (p.scores <= 1.0)), p.scores
    assert p.point_class is not None and p.point_class.shape == (num_points,)
    assert p.point_class.dtype == np.int32
    assert np.all((p.point_class >= 0) & (p.point_class < 20))


def test_learned_model_loads_the_checkpoint_and_its_embedded_config(learned, checkpoint):
    name, path = checkpoint
    assert learned.name == name
    assert learned.class_names == SCANNET20_CLASSES
    assert learned.device == torch.device("cpu")
    assert learned.voxel_size == pytest.approx(0.05)
    assert not learned.network.training
    saved = torch.load(path, weights_only=True)["net"]
    for key, value in learned.network.state_dict().items():
        assert torch.equal(value, saved[key]), key


def test_predict_points_returns_valid_proposals(learned, scene):
    proposals = learned.predict_points(scene.xyz, scene.rgb)
    assert_valid_proposals(proposals, scene.num_points)
    # The biased head makes chair the argmax everywhere: the point classes are the network's.
    assert np.all(proposals.point_class == CHAIR)
    assert set(proposals.timing_ms) >= {"voxelize", "backbone", "grouping", "refinement"}
    assert all(ms >= 0.0 for ms in proposals.timing_ms.values())


@pytest.mark.slow
def test_predict_points_is_deterministic(learned, scene):
    first = learned.predict_points(scene.xyz, scene.rgb)
    second = learned.predict_points(scene.xyz, scene.rgb)
    assert len(second) == len(first)
    for a, b in zip(first.indices, second.indices):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(first.class_ids, second.class_ids)
    np.testing.assert_array_equal(first.scores, second.scores)
    np.testing.assert_array_equal(first.point_class, second.point_class)


def test_predictions_follow_the_weights(learned, scene):
    """A different class bias must change what the network predicts (the weights are used)."""
    head = semantic_head_bias(learned.network)
    original = head.detach().clone()
    try:
        with torch.no_grad():
            head[CHAIR] -= 20.0
            head[6] += 20.0  # table
        proposals = learned.predict_points(scene.xyz, scene.rgb)
    finally:
        with torch.no_grad():
            head.copy_(original)
    assert np.all(proposals.point_class == 6)


def test_segmenter_turns_proposals_into_consistent_instances(checkpoint, scene):
    name, path = checkpoint
    # Points beyond the ROI (here: half the room) get nothing and do not reach the model.
    roi_max = [float(scene.xyz[:, 0].mean()), 50.0, 5.0]
    cfg = learned_config(name, path, **{"segment.score_threshold": 0.0,
                                        "segment.min_points": 1, "segment.roi_max": roi_max})
    segmenter = Segmenter(cfg)
    assert segmenter.model_name == name and segmenter.device == "cpu"
    inst = segmenter.segment(scene.xyz, scene.rgb)
    n = scene.num_points
    inside = crop_roi(scene.xyz, cfg.segment.roi_min, cfg.segment.roi_max)
    assert 0 < inside.sum() < n
    assert inst.point_instance.shape == (n,) and inst.point_class.shape == (n,)
    assert np.all(inst.point_instance[~inside] == -1)
    assert np.all(inst.point_class[~inside] == -100)
    assert np.all(inst.point_class[inside] == CHAIR)
    assert inst.num_instances > 0
    assert np.array_equal(inst.ids, np.arange(inst.num_instances))
    assert not set(inst.class_ids.tolist()) & STUFF_CLASSES
    for ix in inst.indices:
        assert ix.size > 0 and np.all(inside[ix])
    # Every labelled point belongs to the proposal that owns it.
    for point in np.flatnonzero(inst.point_instance >= 0)[::97]:
        assert point in inst.indices[inst.point_instance[point]]
    assert set(inst.timing_ms) >= {"crop", "voxelize", "backbone", "grouping", "refinement",
                                   "fusion", "total"}


@pytest.mark.slow
def test_segmenter_score_threshold_drops_low_scores(checkpoint, scene):
    name, path = checkpoint
    everything = Segmenter(learned_config(name, path, **{"segment.score_threshold": 0.0,
                                                         "segment.min_points": 1}))
    all_inst = everything.segment(scene.xyz, scene.rgb)
    cut = float(np.median(all_inst.scores))
    strict = Segmenter(learned_config(name, path, **{"segment.score_threshold": cut,
                                                     "segment.min_points": 1}),
                       model=everything.model)
    kept = strict.segment(scene.xyz, scene.rgb)
    assert kept.num_instances == int(np.count_nonzero(all_inst.scores >= cut))
    assert np.all(kept.scores >= cut)


def test_missing_colour_is_a_no_color_segmentation_error(learned, scene):
    with pytest.raises(SegmentationError, match="geometric") as err:
        learned.predict_points(scene.xyz, None)
    assert err.value.reason == "no_color"


def test_missing_weights_say_how_to_train(tmp_path):
    cfg = Config().replace(**{"model.name": "softgroup"})
    with pytest.raises(ConfigError, match=r"ros2-inst3d train config/train/softgroup_synthetic"
                                          r"\.yaml"):
        LearnedModel.from_config(cfg.model, models_dir=tmp_path)
    cfg = cfg.replace(**{"model.checkpoint": str(tmp_path / "nope.pth")})
    with pytest.raises(ConfigError, match="nope.pth does not exist"):
        build_point_model(cfg)


@pytest.mark.parametrize("name", ["isbnet", "mtml"])
def test_methods_without_shipped_weights_say_how_to_train(name, tmp_path):
    with pytest.raises(ConfigError, match=rf"ros2-inst3d train config/train/{name}_synthetic"):
        LearnedModel.from_config(Config().replace(**{"model.name": name}).model,
                                 models_dir=tmp_path)


def test_mismatched_checkpoint_is_refused_with_the_key_report(checkpoint, tmp_path):
    name, path = checkpoint
    wider = {**TINY_CONFIGS[name], "channels": 12}
    yaml_path = tmp_path / f"{name}_wide.yaml"
    yaml_path.write_text(yaml.safe_dump({"model": wider}))
    cfg = learned_config(name, path, **{"model.config": str(yaml_path)})
    with pytest.raises(ConfigError) as err:
        build_point_model(cfg)
    message = str(err.value)
    assert "does not fit the model built from model.config" in message
    assert "size mismatch" in message and "input_conv.0.weight" in message
    assert "[8, 3, 3, 3, 6] vs [12, 3, 3, 3, 6]" in message


def test_config_of_another_method_is_refused(checkpoint):
    name, path = checkpoint
    other = next(m for m in METHODS if m != name)
    with pytest.raises(ConfigError, match=f"model.name is '{other}' but the config embedded"):
        build_point_model(learned_config(other, path))


def test_bare_state_dict_uses_model_config(checkpoint, tmp_path):
    """A checkpoint without metadata (e.g. an official one) needs model.config; with it, it loads."""
    name, _ = checkpoint
    network = tiny_network(name, seed=3)
    bare = tmp_path / "bare.pth"
    torch.save(network.state_dict(), bare)
    yaml_path = tmp_path / f"{name}_tiny.yaml"
    yaml_path.write_text(yaml.safe_dump({"model": TINY_CONFIGS[name]}))
    model = build_point_model(learned_config(name, bare, **{"model.config": str(yaml_path)}))
    assert model.class_names == SCANNET20_CLASSES
    for key, value in model.network.state_dict().items():
        assert torch.equal(value, network.state_dict()[key]), key


def test_device_resolution():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ConfigError, match="not a torch device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="sees no CUDA device"):
            resolve_device("cuda")
        assert resolve_device("auto") == torch.device("cpu")


def test_the_network_sees_what_training_feeds_it(learned, scene, tmp_path):
    """Inference input = the evaluation dataset's collated batch of the same scene file."""
    from ros2_inst3d.data.batching import collate
    from ros2_inst3d.data.datasets import SceneDataset

    dataset = SceneDataset(scene.save(tmp_path / "room.npz"), voxel_size=learned.voxel_size)
    want = collate([dataset[0]], learned.voxel_size, with_coords=learned.with_coords)
    got = learned.network_batch(scene.xyz, scene.rgb)
    assert float(got["xyz"].double().mean(0).abs().max()) < 1e-4  # centred
    for key in ("coords", "feats", "point_to_voxel", "xyz", "spatial_shape", "batch_offsets"):
        torch.testing.assert_close(got[key], want[key], rtol=0, atol=1e-5, msg=key)


@pytest.mark.parametrize("count", [1, 2, 4, 8])
def test_view_matrices_are_distinct_rigid_poses_starting_with_the_identity(count):
    from ros2_inst3d.data.inputs import view_matrices

    views = view_matrices(count)
    assert len(views) == count
    np.testing.assert_array_equal(views[0], np.eye(3))
    for m in views:
        np.testing.assert_allclose(m @ m.T, np.eye(3), atol=1e-12)
        np.testing.assert_allclose(m[2], [0.0, 0.0, 1.0], atol=1e-12)  # z stays up
    assert len({tuple(np.round(m, 6).ravel()) for m in views}) == count
    with pytest.raises(ValueError, match="one of"):
        view_matrices(3)


@pytest.mark.parametrize("name", ["softgroup", "pointgroup"])
def test_augmented_views_average_probabilities_and_turned_back_offsets(name, scene):
    """With 4 views the network's point-wise output is the mean over the 4 turned clouds, each
    run alone: softmax probabilities averaged, offsets turned back into the cloud's frame."""
    from ros2_inst3d.data.inputs import view_matrices

    network = tiny_network(name)
    single = LearnedModel(network, device="cpu")
    averaged = LearnedModel(network, device="cpu", augmented_views=4)
    with torch.no_grad():
        got = network.forward_batch(averaged.network_batch(scene.xyz, scene.rgb))
        runs = [network.forward_batch(single.network_batch(scene.xyz @ m, scene.rgb))
                for m in view_matrices(4)]
    probs = torch.stack([r["semantic_logits"].softmax(-1) for r in runs]).mean(0)
    offsets = torch.stack([r["offsets"] @ torch.as_tensor(m.T, dtype=torch.float32)
                           for r, m in zip(runs, view_matrices(4))]).mean(0)
    torch.testing.assert_close(got["semantic_logits"].softmax(-1), probs, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(got["offsets"], offsets, atol=1e-5, rtol=1e-4)
    # The views differ (10 cm voxels of a turned cloud are other voxels), so this is an average
    # of different predictions, not four copies of one.
    assert not torch.allclose(runs[0]["offsets"], runs[1]["offsets"] @ torch.as_tensor(
        view_matrices(4)[1].T, dtype=torch.float32), atol=1e-4)
    torch.testing.assert_close(got["point_feats"], runs[0]["point_feats"])


def test_augmented_views_reach_the_proposals_and_are_refused_where_not_averaged(checkpoint,
                                                                                scene):
    name, path = checkpoint
    cfg = learned_config(name, path, **{"model.augmented_views": 4})
    if name not in ("softgroup", "pointgroup"):
        with pytest.raises(ConfigError, match="augmented_views"):
            build_point_model(cfg)
        return
    model = build_point_model(cfg)
    assert len(model.views) == 3
    assert_valid_proposals(model.predict_points(scene.xyz, scene.rgb), scene.num_points)


XYZ_ONLY = {**TINY_CONFIGS["softgroup"], "in_channels": 1}


def test_xyz_only_model_runs_without_colour_and_ignores_it(scene, tmp_path):
    torch.manual_seed(0)
    network = build_network(XYZ_ONLY)
    with torch.no_grad():
        semantic_head_bias(network)[CHAIR] += 20.0
    path = save_checkpoint(network, XYZ_ONLY, tmp_path / "xyz.pth")
    model = build_point_model(learned_config("softgroup", path))
    assert not model.needs_color and model.in_channels == 1
    without = model.predict_points(scene.xyz, None)
    assert_valid_proposals(without, scene.num_points)
    # The colour is no input: a coloured cloud gives the same proposals.
    with_rgb = model.predict_points(scene.xyz, scene.rgb)
    assert [ix.tolist() for ix in with_rgb.indices] == [ix.tolist() for ix in without.indices]
    # The first input channel is the constant occupancy feature.
    batch = model.network_batch(scene.xyz, None)
    assert batch["feats"].shape[1] == 4 and torch.all(batch["feats"][:, 0] == 1.0)


@pytest.mark.parametrize("stem", ["softgroup_synthetic", "pointgroup_synthetic",
                                  "isbnet_synthetic", "mtml_synthetic",
                                  "softgroup_lidar_synthetic"])
def test_shipped_weights_embed_their_model_yaml(stem):
    """Inference reads the config inside the weights; the YAML next to them is what the README
    and training document. Post-processing calibrated after training (`export-weights
    --model-config`) must land in both, or they drift apart."""
    repo = Path(__file__).resolve().parents[1]
    embedded = torch.load(repo / "models" / f"{stem}.pth", map_location="cpu",
                          weights_only=True)["config"]
    documented = yaml.safe_load((repo / "config" / "models" / f"{stem}.yaml").read_text())["model"]
    assert embedded == documented
