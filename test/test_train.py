"""``ros2-inst3d train``: a real (tiny) training of SoftGroup and PointGroup on generated rooms.

Two small generated scenes train a shrunken model (channels 8, 3 U-Net levels, 5 cm voxels,
30 iterations, fixed seed) through the whole path: dataset, augmentation, collate, the model's
``forward_train``, backward, schedule, validation with the ScanNet AP protocol and checkpoints.
The assertions are about behaviour: the loss falls, checkpoints reload into identical
predictions, a resume repeats the uninterrupted run's iterations, and bad configs fail loudly.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import yaml

from ros2_inst3d.classes import SCANNET20_CLASSES
from ros2_inst3d.cli import main
from ros2_inst3d.config import ConfigError
from ros2_inst3d.data.batching import batch_to_device, collate
from ros2_inst3d.data.datasets import SceneDataset
from ros2_inst3d.synthetic.scene import SceneParams, generate_scene
from ros2_inst3d.model.registry import build_network, load_model_config
from ros2_inst3d.resources import data_dir
from ros2_inst3d.train import (
    CHECKPOINT_KEYS,
    EXPORT_KEYS,
    PointwiseMeter,
    export_weights,
    widen_weights,
    load_train_config,
    lr_factor,
    read_log,
    train,
    train_config_from_dict,
)

CONFIG = data_dir("config")
MODELS = ["softgroup", "pointgroup"]
EPOCHS = 15          # 2 scenes, 1 per batch: 30 iterations
RESUME_FROM = 10     # epoch_010.pth: iterations 21..30 are repeated by the resumed run


@pytest.fixture(scope="module")
def scene_dirs(tmp_path_factory):
    """Two small generated rooms to train on; the first also serves as the validation set."""
    root = tmp_path_factory.mktemp("scenes")
    (root / "train").mkdir()
    (root / "val").mkdir()
    params = SceneParams.small()
    for seed in (0, 1):
        scene = generate_scene(seed, params, threads=1)
        scene.save(root / "train" / f"scene_{seed}.npz")
        if seed == 0:
            scene.save(root / "val" / "scene_0.npz")
    return root / "train", root / "val"


def tiny_model(name: str) -> dict:
    """The shipped synthetic model YAML, shrunk: 8 channels, 3 U-Net levels, 5 cm voxels."""
    cfg = load_model_config(CONFIG / "models" / f"{name}_synthetic.yaml")
    # The shipped stage-2 YAMLs freeze a pretrained backbone; these runs train from scratch.
    cfg.update(channels=8, num_blocks=3, fixed_modules=[], voxel_size=0.05)
    # The official single-set grouping: on the tiny rooms the unshifted set's proposals start
    # with no positives, so the per-loss trends below would compare zeros (the dual set has its
    # own test in test_softgroup.py).
    cfg.get("grouping_cfg", {}).pop("with_original", None)
    # Likewise no long-proposal pieces (a from-scratch run's first proposals are rows of
    # everything; the split has its own tests in test_softgroup.py and test_pointgroup.py).
    cfg.get("grouping_cfg", {}).pop("split_factor", None)
    cfg.pop("split_factor", None)
    if name == "softgroup":
        # The radius the shipped YAML tunes for trained offsets (0.04 m, 2 cm cells) leaves the
        # scattered offsets of a from-scratch run with too few proposals to compare loss trends.
        cfg["grouping_cfg"].update(radius=0.06, merge_size=0.03)
    if name == "pointgroup":
        cfg["prepare_epochs"] = 5  # ScoreNet trains in epochs 6..15
    return cfg


def tiny_config(name: str, scene_dirs, work_dir, **train_overrides) -> dict:
    train_dir, val_dir = scene_dirs
    train_section = {"optimizer": "adam", "lr": 0.01, "epochs": EPOCHS, "schedule": "cosine",
                     "cosine_start": 0.2, "warmup_iters": 3, "grad_clip_norm": 10.0, "seed": 7,
                     "val_every": 5, "save_every": 5, "keep_epoch_checkpoints": True,
                     "cpu_threads": 1, "device": "cpu"}
    train_section.update(train_overrides)
    return {
        "model": tiny_model(name),
        "data": {"train": str(train_dir), "val": str(val_dir), "voxel_size": 0.05,
                 "scenes_per_batch": 1,
                 "augment": {"elastic": [], "max_points": None, "min_points": 1000}},
        "train": train_section,
        "work_dir": str(work_dir),
    }


@pytest.fixture(scope="module", params=MODELS)
def trained(request, scene_dirs, tmp_path_factory):
    """(model name, config mapping, TrainResult) of one tiny training run."""
    name = request.param
    work_dir = tmp_path_factory.mktemp(f"train_{name}")
    data = tiny_config(name, scene_dirs, work_dir)
    result = train(train_config_from_dict(copy.deepcopy(data)), quiet=True)
    return name, data, result


def val_batch(scene_dirs):
    dataset = SceneDataset(scene_dirs[1], voxel_size=0.05, require_labels=True)
    return collate([dataset[0]], 0.05, with_coords=True)


def predictions(model, batch):
    model.eval()
    return model.predict(batch_to_device(batch, "cpu"))[0]


def assert_same_predictions(a, b):
    assert len(a) == len(b)
    np.testing.assert_array_equal(a.class_ids, b.class_ids)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-5, atol=1e-6)
    for x, y in zip(a.indices, b.indices):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.point_class, b.point_class)


def iter_records(work_dir):
    return [r for r in read_log(work_dir / "log.jsonl") if r["type"] == "iter"]


# ---------------------------------------------------------------------------------------------
# Training


POINTWISE_PARTS = ("semantic_loss", "offset_loss", "dir_loss")  # dir_loss: PointGroup only


@pytest.mark.slow
def test_loss_falls(trained):
    """The point-wise losses (present from the first iteration) fall by a margin; each proposal
    loss falls from the first iterations where it is defined to the last ones. The total alone
    does not fall monotonically: the proposal losses join it once the semantic scores pass the
    grouping threshold, and that is the model working as designed.

    A proposal loss is defined (non-zero) where it has targets: the classification losses
    wherever there are proposals, SoftGroup's mask and IoU-score losses only where a proposal
    overlaps an object by pos_iou_thr. In 30 iterations from scratch the latter can be a few
    iterations (dependency updates move that count), too few for a trend, so a trend is
    asserted where at least 8 iterations define it; test_softgroup's fixed-batch Adam test
    covers the refinement losses falling."""
    name, _, result = trained
    records = iter_records(result.work_dir)
    assert [r["iteration"] for r in records] == list(range(1, 2 * EPOCHS + 1))
    losses = np.array([r["loss"] for r in records])
    assert np.all(np.isfinite(losses))
    pointwise = np.array([sum(r.get(k, 0.0) for k in POINTWISE_PARTS) for r in records])
    first, last = pointwise[:6].mean(), pointwise[-6:].mean()
    assert last < 0.8 * first, (name, pointwise.round(3).tolist())
    semantic = np.array([r["semantic_loss"] for r in records])
    assert semantic[-6:].mean() < 0.8 * semantic[:6].mean()

    with_proposals = [r for r in records if r["num_proposals"] > 0]
    assert len(with_proposals) >= 10, f"{name}: the grouping never produced proposals"
    proposal_parts = [k for k in records[0] if k.endswith("_loss") and k not in POINTWISE_PARTS
                      and any(r[k] for r in with_proposals)]
    assert proposal_parts, f"{name}: no proposal loss was ever non-zero"
    trends = {}
    for key in proposal_parts:
        values = np.array([r[key] for r in with_proposals if r[key] != 0.0])
        if len(values) >= 8:
            trends[key] = values
    assert trends, f"{name}: no proposal loss is defined in 8 iterations"
    for key, values in trends.items():
        assert values[-4:].mean() < values[:4].mean(), (name, key, values.round(3).tolist())


def test_schedule_is_warmup_then_cosine(trained):
    _, data, result = trained
    lrs = np.array([r["lr"] for r in iter_records(result.work_dir)])
    peak, total = data["train"]["lr"], 2 * EPOCHS
    expected = [peak * lr_factor(i, total_iters=total, schedule="cosine", warmup_iters=3,
                                 cosine_start=0.2, min_factor=1e-6 / peak) for i in range(total)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-9)
    assert lrs[0] == pytest.approx(peak / 3) and lrs[2] == pytest.approx(peak)
    assert np.all(np.diff(lrs[6:]) < 0)  # decays after cosine_start (20 % of 30 = 6)


def test_validation_metrics_are_logged(trained):
    _, _, result = trained
    vals = [r for r in read_log(result.work_dir / "log.jsonl") if r["type"] == "val"]
    assert [v["epoch"] for v in vals] == [5, 10, 15]
    for v in vals:
        assert v["num_scenes"] == 1
        for key in ("AP", "AP50", "AP25"):
            assert 0.0 <= v[key] <= 1.0
        assert set(v["per_class"]) <= set(SCANNET20_CLASSES[2:])
    best = max(vals, key=lambda v: v["AP"])
    assert result.metrics["best"]["AP"] == pytest.approx(best["AP"])
    assert result.metrics["val"]["epoch"] == EPOCHS


# ---------------------------------------------------------------------------------------------
# Checkpoints


def test_pointwise_meter_class_iou_and_summary():
    """IoU per class from the confusion of labelled points (ignore label and out-of-table
    labels skipped); a class missing from the ground truth is NaN and left out of the mIoU."""
    meter = PointwiseMeter(4)
    meter.add(np.array([0, 0, 1, 1, 2, 1, 3]), np.array([0, 0, 1, 2, 2, -100, 7]))
    meter.add(np.array([1]), np.array([1]))
    iou = meter.class_iou()
    np.testing.assert_allclose(iou[:3], [1.0, 2 / 3, 1 / 2])
    assert np.isnan(iou[3])
    summary = meter.summary()
    assert summary["semantic_accuracy"] == pytest.approx(5 / 6)
    assert summary["mIoU"] == pytest.approx((1 + 2 / 3 + 1 / 2) / 3)


def test_checkpoint_contents_and_reload(trained, scene_dirs):
    name, data, result = trained
    assert result.latest == result.work_dir / "latest.pth"
    ckpt = torch.load(result.latest, map_location="cpu", weights_only=True)
    assert set(ckpt) == set(CHECKPOINT_KEYS)
    assert ckpt["config"] == data["model"] and ckpt["config"]["name"] == name
    assert ckpt["class_names"] == list(SCANNET20_CLASSES)
    assert (ckpt["epoch"], ckpt["iteration"]) == (EPOCHS, 2 * EPOCHS)
    assert ckpt["train_config"]["train"]["lr"] == data["train"]["lr"]
    assert ckpt["metrics"]["val"]["epoch"] == EPOCHS
    assert ckpt["scheduler"]["last_epoch"] == 2 * EPOCHS
    assert ckpt["optimizer"]["state"]  # Adam moments: a resume needs them
    assert sorted(p.name for p in result.work_dir.glob("epoch_*.pth")) == [
        "epoch_005.pth", "epoch_010.pth", "epoch_015.pth"]

    best = torch.load(result.best, map_location="cpu", weights_only=True)
    assert best["metrics"]["best"]["epoch"] == best["epoch"]

    fresh = build_network(ckpt["config"])
    fresh.load_state_dict(ckpt["net"], strict=True)
    batch = val_batch(scene_dirs)
    assert_same_predictions(predictions(result.model, batch), predictions(fresh, batch))


def test_export_weights(trained, scene_dirs, tmp_path):
    _, _, result = trained
    out = export_weights(result.latest, tmp_path / "slim.pth")
    slim = torch.load(out, map_location="cpu", weights_only=True)
    assert set(slim) == set(EXPORT_KEYS)
    assert all(v.dtype == torch.float32 for v in slim["net"].values() if v.is_floating_point())
    assert out.stat().st_size < result.latest.stat().st_size  # no optimizer moments
    model = build_network(slim["config"])
    model.load_state_dict(slim["net"], strict=True)
    batch = val_batch(scene_dirs)
    assert_same_predictions(predictions(result.model, batch), predictions(model, batch))

    assert main(["export-weights", str(result.latest), str(tmp_path / "half.pth"), "--half"]) == 0
    half = torch.load(tmp_path / "half.pth", weights_only=True)
    floats = [v for v in half["net"].values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float16 for v in floats)


def test_export_weights_half_keeps_out_of_range_tensors_float32(trained, tmp_path):
    """A BatchNorm running_var past 65504 (seen in an end-to-end MTML run) would become inf in
    float16 and be refused at load: such tensors stay float32, exact."""
    _, _, result = trained
    ckpt = torch.load(result.latest, map_location="cpu", weights_only=True)
    key = next(k for k in ckpt["net"] if k.endswith("running_var"))
    ckpt["net"][key] = ckpt["net"][key].clone()
    ckpt["net"][key][0] = 72054.5
    torch.save(ckpt, tmp_path / "big.pth")
    half = torch.load(export_weights(tmp_path / "big.pth", tmp_path / "half.pth", half=True),
                      weights_only=True)["net"]
    assert half[key].dtype == torch.float32 and half[key][0].item() == 72054.5
    others = [v for k, v in half.items() if v.is_floating_point() and k != key]
    assert others and all(v.dtype == torch.float16 for v in others)


def test_export_weights_with_a_calibrated_model_config(trained, tmp_path, capsys):
    """Post-processing settings chosen after training replace the trained config; a YAML that
    builds another network (or method) is refused and nothing is written."""
    name, data, result = trained
    calibrated = {**data["model"], "ignore_label": -99}
    (tmp_path / "calibrated.yaml").write_text(yaml.safe_dump({"model": calibrated}))
    out = export_weights(result.latest, tmp_path / "slim.pth",
                         model_config=tmp_path / "calibrated.yaml")
    slim = torch.load(out, map_location="cpu", weights_only=True)
    assert slim["config"] == calibrated
    build_network(slim["config"]).load_state_dict(slim["net"], strict=True)

    (tmp_path / "wide.yaml").write_text(yaml.safe_dump(
        {"model": {**data["model"], "channels": data["model"]["channels"] + 4}}))
    with pytest.raises(ConfigError, match="builds another network"):
        export_weights(result.latest, tmp_path / "wide.pth", model_config=tmp_path / "wide.yaml")
    other = "pointgroup" if name == "softgroup" else "softgroup"
    (tmp_path / "other.yaml").write_text(yaml.safe_dump({"model": {**data["model"], "name": other}}))
    assert main(["export-weights", str(result.latest), str(tmp_path / "other.pth"),
                 "--model-config", str(tmp_path / "other.yaml")]) != 0
    assert f"holds '{name}'" in capsys.readouterr().err
    assert not (tmp_path / "wide.pth").exists() and not (tmp_path / "other.pth").exists()


@pytest.mark.parametrize("channels", [12, 16])
def test_widen_weights_keeps_the_function(trained, scene_dirs, tmp_path, channels):
    """Net2Net: the wide network predicts what the trained narrow one does (the U-Net's skip
    concatenations and every head included), and its copies of a channel are not identical
    (else training could never separate them)."""
    name, _, result = trained
    out = widen_weights(result.latest, tmp_path / "wide.pth", channels, seed=3)
    wide = torch.load(out, map_location="cpu", weights_only=True)
    assert wide["config"]["channels"] == channels
    model = build_network(wide["config"])
    model.load_state_dict(wide["net"], strict=True)
    batch = val_batch(scene_dirs)
    assert_same_predictions(predictions(result.model, batch), predictions(model, batch))

    narrow = result.model.state_dict()
    key = next(k for k, v in wide["net"].items() if v.ndim == 5 and v.shape[-1] > narrow[k].shape[-1])
    weight = wide["net"][key][0]   # input channel 0 is wide channels 0 and 1 (12 and 16 wide)
    assert not torch.equal(weight[..., 0], weight[..., 1])   # unequal shares
    torch.testing.assert_close(weight[..., 0] + weight[..., 1], narrow[key][0, ..., 0])


def test_widen_weights_refuses_narrowing(trained, tmp_path):
    _, _, result = trained
    with pytest.raises(ConfigError, match="widening needs at least"):
        widen_weights(result.latest, tmp_path / "narrow.pth", 4)
    assert main(["widen-weights", str(result.latest), str(tmp_path / "x.pth"),
                 "--channels", "4"]) == 2


@pytest.mark.slow
def test_resume_repeats_the_uninterrupted_run(trained, tmp_path):
    """From epoch_010.pth, the resumed run does iterations 21..30 with the same learning rates
    and (CPU, single-threaded spconv, seeded draws) the same losses."""
    _, data, result = trained
    data = copy.deepcopy(data)
    data["work_dir"] = str(tmp_path / "resumed")
    resumed = train(train_config_from_dict(data),
                    resume=result.work_dir / f"epoch_{RESUME_FROM:03d}.pth", quiet=True)
    assert (resumed.epoch, resumed.iteration) == (EPOCHS, 2 * EPOCHS)
    before = {r["iteration"]: r for r in iter_records(result.work_dir)}
    after = iter_records(tmp_path / "resumed")
    assert [r["iteration"] for r in after] == list(range(2 * RESUME_FROM + 1, 2 * EPOCHS + 1))
    for r in after:
        assert r["lr"] == pytest.approx(before[r["iteration"]]["lr"], rel=1e-12)
        assert r["loss"] == pytest.approx(before[r["iteration"]]["loss"], rel=1e-4, abs=1e-5)
    ckpt = torch.load(resumed.latest, weights_only=True)
    assert (ckpt["epoch"], ckpt["iteration"]) == (EPOCHS, 2 * EPOCHS)


class Interrupted(Exception):
    """Stands for the process being killed (Ctrl-C, a lost machine) during a training step."""


@pytest.mark.slow
def test_resume_inside_an_epoch_repeats_the_uninterrupted_run(trained, tmp_path, monkeypatch):
    """save_every_iters writes latest.pth inside an epoch (iteration 13 = one step into epoch
    7 of 2-step epochs); a run killed right after it and resumed from it repeats the
    uninterrupted run's iterations 14..30 (the same lrs and, on CPU, the same losses), without
    reloading the epoch's first batch; val_every_iters validates there too."""
    from ros2_inst3d.train import Trainer

    _, data, result = trained
    data = copy.deepcopy(data)
    data["work_dir"] = str(tmp_path / "killed")
    data["train"].update(save_every_iters=13, val_every_iters=13)
    step = Trainer.step

    def step_then_kill(self, batch, epoch):
        if self.iteration == 13:
            raise Interrupted
        return step(self, batch, epoch)

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "step", step_then_kill)
        with pytest.raises(Interrupted):
            train(train_config_from_dict(copy.deepcopy(data)), quiet=True)
    killed = tmp_path / "killed"
    ckpt = torch.load(killed / "latest.pth", weights_only=True)
    assert (ckpt["epoch"], ckpt["iteration"]) == (6, 13) and "rng" in ckpt
    vals = [r for r in read_log(killed / "log.jsonl") if r["type"] == "val"]
    assert [(r["epoch"], r["iteration"]) for r in vals] == [(5, 10), (6, 13)]

    loaded = []
    scene = SceneDataset.scene

    def counting_scene(self, index):
        loaded.append(index)
        return scene(self, index)

    monkeypatch.setattr(SceneDataset, "scene", counting_scene)
    resumed = train(train_config_from_dict(data), resume=killed / "latest.pth", quiet=True)
    assert (resumed.epoch, resumed.iteration) == (EPOCHS, 2 * EPOCHS)
    before = {r["iteration"]: r for r in iter_records(result.work_dir)}
    after = [r for r in iter_records(killed) if r["iteration"] > 13]
    assert [r["iteration"] for r in after] == list(range(14, 2 * EPOCHS + 1))
    for r in after:
        assert r["lr"] == pytest.approx(before[r["iteration"]]["lr"], rel=1e-12)
        assert r["loss"] == pytest.approx(before[r["iteration"]]["loss"], rel=1e-4, abs=1e-5)
    # Scenes loaded: the first training scene for its class table, then 1 for the rest of
    # epoch 7 and 2 per later epoch; the validation scene once per validation (epochs 10, 15).
    validations = len([r for r in read_log(killed / "log.jsonl")
                       if r["type"] == "val" and r["iteration"] > 13])
    assert len(loaded) == 1 + 1 + 2 * (EPOCHS - 7) + validations


# ---------------------------------------------------------------------------------------------
# Configs


@pytest.mark.parametrize("name", MODELS)
def test_shipped_training_configs_load(name):
    cfg = load_train_config(CONFIG / "train" / f"{name}_synthetic.yaml")
    assert cfg.model == load_model_config(CONFIG / "models" / f"{name}_synthetic.yaml")
    assert cfg.model_source.endswith(f"models/{name}_synthetic.yaml")
    assert cfg.data.voxel_size == cfg.model["voxel_size"]
    assert cfg.data.train == ("data/synthetic/train",) and cfg.data.val == ("data/synthetic/val",)
    assert cfg.data.augment.elastic == ((2.0, 16.0), (8.0, 64.0))
    assert cfg.train.cpu_threads == 1 and (cfg.train.epochs is None) != (cfg.train.max_iters is None)
    overridden = load_train_config(CONFIG / "train" / f"{name}_synthetic.yaml",
                                   {"train.max_iters": 5, "train.epochs": None, "work_dir": "w"})
    assert (overridden.train.max_iters, overridden.train.epochs, overridden.work_dir) == (5, None,
                                                                                         "w")


@pytest.mark.parametrize("change, message", [
    ({"trian": {}}, "unknown key(s) <training config>.trian"),
    ({"train": {"epochs": 2, "learning_rate": 0.1}}, "train.learning_rate"),
    ({"train": {"epochs": 2, "optimizer": "sgd"}}, "'train.optimizer' must be one of adam, adamw"),
    ({"train": {"epochs": 2, "max_iters": 10}}, "exactly one of train.epochs and train.max_iters"),
    ({"train": {}}, "exactly one of train.epochs and train.max_iters"),
    ({"train": {"epochs": 0}}, "'train.epochs' must be >= 1"),
    ({"train": {"epochs": 2, "lr": "fast"}}, "'train.lr' must be a finite number"),
    ({"train": {"epochs": 2, "lr": 1e-3, "min_lr": 0.01}}, "the cosine would raise"),
    ({"data": {"train": "x", "voxel_size": 0.02}}, "differs from the model's voxel_size"),
    ({"data": {"train": "x", "augment": {"elastic": [3]}}}, "[granularity, magnitude] pairs"),
    ({"data": {"train": "x", "augment": {"crop": 3}}}, "data.augment.crop"),
    ({"data": {"val": "x"}}, "'data' needs data.train"),
    ({"data": {"train": []}}, "data.train must be a folder of training scenes or a non-empty"),
    ({"data": {"train": None}}, "data.train must be a folder of training scenes or a non-empty"),
    ({"data": {"train": ["x", 3]}}, "data.train must be a folder of training scenes"),
    ({"data": {"train": "x", "val": []}}, "data.val must be a folder of validation scenes"),
    ({"model": "models/no_such_model.yaml"}, "model config 'models/no_such_model.yaml' not found"),
    ({"model": {"name": "maskformer"}}, "name must be one of"),
])
def test_bad_config_raises_clear_error(change, message):
    data = {"model": "models/softgroup_synthetic.yaml", "data": {"train": "x"},
            "train": {"epochs": 2}}
    data.update(change)
    with pytest.raises(ConfigError) as info:
        train_config_from_dict(data)
    assert message in str(info.value)


def test_training_pools_the_scenes_of_several_folders(scene_dirs, tmp_path, capsys):
    """data.train and data.val as lists (the CLI's --data-train A B, --data-val A B): the
    scenes of every folder, in order, feed one run; a missing or empty folder is a one-line
    error, not a smaller run."""
    train_dir, val_dir = scene_dirs
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config("softgroup", scene_dirs, tmp_path / "w")))
    assert main(["train", str(path), "--data-train", str(train_dir), str(val_dir),
                 "--data-val", str(val_dir), str(train_dir), "--max-iters", "1", "--quiet"]) == 0
    (start,) = [r for r in read_log(tmp_path / "w" / "log.jsonl") if r["type"] == "start"]
    assert start["train_scenes"] == 3 and start["val_scenes"] == 3
    assert start["config"]["data"]["train"] == [str(train_dir), str(val_dir)]
    assert start["config"]["data"]["val"] == [str(val_dir), str(train_dir)]
    (tmp_path / "empty").mkdir()
    for folder, message in ((tmp_path / "missing", f"{tmp_path / 'missing'} does not exist"),
                            (tmp_path / "empty", f"no scene files in {tmp_path / 'empty'}")):
        assert main(["train", str(path), "--data-train", str(train_dir), str(folder),
                     "--max-iters", "1", "--quiet"]) != 0
        err = capsys.readouterr().err
        assert f"data.train: {message}" in err and "Traceback" not in err
    assert main(["train", str(path), "--data-val", str(val_dir), str(tmp_path / "missing"),
                 "--max-iters", "1", "--quiet"]) != 0
    assert f"data.val: {tmp_path / 'missing'} does not exist" in capsys.readouterr().err


def test_unknown_model_argument_is_a_config_error(scene_dirs, tmp_path):
    data = tiny_config("softgroup", scene_dirs, tmp_path, epochs=1)
    data["model"]["chanels"] = 8
    with pytest.raises(ConfigError, match="has no option.*chanels"):
        train_config_from_dict(data)


def test_cli_reports_config_errors(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"model": "models/softgroup_synthetic.yaml",
                                    "data": {"train": "x"}, "train": {"epochs": 1, "lr": -1}}))
    assert main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "'train.lr' must be >= 0.0" in err


# ---------------------------------------------------------------------------------------------
# Two-stage recipe: a semantic-only backbone run, then the instance stage on its frozen weights


def test_backbone_stage_then_frozen_instance_stage(scene_dirs, tmp_path):
    """Stage 1 trains only the point-wise network and is judged by semantic mIoU (it has no
    instances); stage 2 loads it through train.pretrain, keeps the fixed modules bit-identical
    and trains the refinement."""
    backbone = tiny_model("softgroup")
    backbone = {k: backbone[k] for k in ("name", "in_channels", "channels", "num_blocks",
                                         "semantic_classes", "instance_classes", "with_coords",
                                         "voxel_size")}
    backbone["semantic_only"] = True
    stage1 = tiny_config("softgroup", scene_dirs, tmp_path / "stage1", epochs=4, val_every=2,
                         save_every=2, keep_epoch_checkpoints=False)
    stage1["model"] = backbone
    first = train(train_config_from_dict(stage1), quiet=True)
    val = first.metrics["val"]
    assert {"semantic_accuracy", "mIoU", "offset_mae", "offset_within"} <= set(val)
    assert "AP" not in val and 0.0 <= val["mIoU"] <= 1.0 and val["offset_mae"] > 0
    assert first.metrics["best"]["score"] == pytest.approx(first.metrics["best"]["mIoU"])
    assert first.best is not None

    fixed = ["input_conv", "unet", "output_layer", "semantic_linear", "offset_linear"]
    stage2 = tiny_config("softgroup", scene_dirs, tmp_path / "stage2", epochs=2, val_every=2,
                         save_every=2, keep_epoch_checkpoints=False, pretrain=str(first.best))
    stage2["model"]["fixed_modules"] = fixed
    second = train(train_config_from_dict(stage2), quiet=True)
    pretrained = torch.load(first.best, weights_only=True)["net"]
    after = second.model.state_dict()
    frozen = [k for k in pretrained if k.split(".")[0] in fixed]
    assert frozen and all(torch.equal(after[k], pretrained[k]) for k in frozen)
    head = [k for k in after if k.startswith("cls_linear")]
    init = build_network(stage2["model"]).state_dict()
    assert any(not torch.equal(after[k], init[k]) for k in head)  # seeded init, then trained
    assert "AP" in second.metrics["val"] and "agnostic_AP50" in second.metrics["val"]


@pytest.mark.parametrize("name", ["softgroup", "pointgroup", "isbnet", "mtml"])
def test_shipped_stage2_yamls_freeze_only_tensors_stage1_provides(name):
    """The stage-2 model YAMLs that share the stage-1 backbone (config/models/backbone_synthetic)
    freeze modules whose every tensor the stage-1 checkpoint holds, key and shape, at its voxel
    size: otherwise a frozen module would keep its random initialisation."""
    stage1_cfg = load_model_config(CONFIG / "models" / "backbone_synthetic.yaml")
    stage1 = build_network(stage1_cfg, device="meta").state_dict()
    cfg = load_model_config(CONFIG / "models" / f"{name}_synthetic.yaml")
    assert cfg["voxel_size"] == stage1_cfg["voxel_size"]
    # MTML trains end to end from stage 1 (its embedding needs the U-Net to learn instances):
    # nothing frozen, but the whole U-Net and semantic head must still come from stage 1.
    shared = {"input_conv", "unet", "output_layer", "semantic_linear"}
    fixed = set(cfg["fixed_modules"]) if name != "mtml" else shared
    assert shared <= fixed
    assert name != "mtml" or cfg["fixed_modules"] == []
    frozen = {k: v.shape for k, v in build_network(cfg, device="meta").state_dict().items()
              if k.split(".")[0] in fixed}
    assert {k: stage1[k].shape for k in frozen if k in stage1} == frozen


def test_pretrain_that_fits_nothing_is_refused(scene_dirs, tmp_path):
    bogus = tmp_path / "bogus.pth"
    torch.save({"net": {"nothing.weight": torch.zeros(3)}}, bogus)
    data = tiny_config("softgroup", scene_dirs, tmp_path / "wd", pretrain=str(bogus))
    with pytest.raises(ConfigError, match="no tensor fits"):
        train(train_config_from_dict(data), quiet=True)


def test_pretrain_list_loads_in_order_later_overwrites(scene_dirs, tmp_path):
    """`pretrain: [a, b]`: every tensor of b wins over a's, a's others stay (the stage-2 warm
    start: the previous stage 2, then a new stage 1 over it); bad values are refused."""
    net = build_network(tiny_model("softgroup"))
    first = {k: v * 0.5 if v.is_floating_point() else v for k, v in net.state_dict().items()}
    second = {k: v + 0.01 for k, v in first.items()
              if k.startswith("unet.") and v.is_floating_point()}
    torch.save({"net": first}, tmp_path / "a.pth")
    torch.save({"net": second}, tmp_path / "b.pth")
    data = tiny_config("softgroup", scene_dirs, tmp_path / "wd", epochs=1, val_every=0,
                       save_every=1, keep_epoch_checkpoints=False,
                       pretrain=[str(tmp_path / "a.pth"), str(tmp_path / "b.pth")])
    data["model"]["fixed_modules"] = ["input_conv", "unet", "output_layer", "semantic_linear",
                                      "offset_linear"]
    cfg = train_config_from_dict(data)
    assert cfg.train.pretrain == (str(tmp_path / "a.pth"), str(tmp_path / "b.pth"))
    state = train(cfg, quiet=True).model.state_dict()
    assert all(torch.equal(state[k], second[k]) for k in second)
    others = [k for k, v in first.items() if k.startswith("input_conv.") and v.is_floating_point()]
    assert others and all(torch.equal(state[k], first[k]) for k in others)
    for bad in ([], [""], 3):
        with pytest.raises(ConfigError, match="train.pretrain must be a checkpoint path"):
            train_config_from_dict({**data, "train": {**data["train"], "pretrain": bad}})


@pytest.mark.slow
def test_data_parallel_training_on_loopback(scene_dirs, tmp_path):
    """`train --nproc 2`: two gloo processes on 127.0.0.1, one scene each per step, averaged
    gradients; rank 0 alone writes the log and checkpoints."""
    data = tiny_config("softgroup", scene_dirs, tmp_path / "wd", epochs=2, val_every=0,
                       save_every=2, keep_epoch_checkpoints=False)
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(data))
    assert main(["train", str(config), "--nproc", "2", "--quiet"]) == 0
    records = read_log(tmp_path / "wd" / "log.jsonl")
    assert records[0]["world_size"] == 2
    iters = [r for r in records if r["type"] == "iter"]
    # 2 scenes over 2 ranks, 1 per batch: one step per epoch, logged once (rank 0).
    assert [r["iteration"] for r in iters] == [1, 2]
    assert (tmp_path / "wd" / "latest.pth").is_file()


@pytest.mark.slow
def test_average_gradients_is_the_mean_over_ranks():
    from ros2_inst3d.parallel import spawn

    spawn(_check_average, 2)


def _check_average() -> None:
    import torch.distributed as dist

    from ros2_inst3d.parallel import average_gradients, init_process_group

    group = init_process_group(torch.device("cpu"))
    a = torch.nn.Parameter(torch.zeros(2, 3))
    b = torch.nn.Parameter(torch.zeros(4))
    a.grad = torch.full((2, 3), float(group.rank + 1))
    if group.rank == 0:  # no gradient on rank 0 counts as zeros
        b.grad = None
    else:
        b.grad = torch.arange(4.0)
    average_gradients([a, b], group)
    assert torch.equal(a.grad, torch.full((2, 3), 1.5))
    assert torch.equal(b.grad, torch.arange(4.0) / 2)
    dist.barrier()


def test_learning_curve_rewinds_to_the_resumed_checkpoint(tmp_path):
    """Iterations an interrupted process logged after its last checkpoint are redone after
    --resume: the curve keeps the redone ones only, in its rows and in its CPU-hours."""
    import importlib.util
    import json as json_mod
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "learning_curve.py"
    spec = importlib.util.spec_from_file_location("learning_curve_under_test", script)
    learning_curve = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(learning_curve)

    def it(i, cpu):
        return {"type": "iter", "epoch": 1, "iteration": i, "cpu_s": cpu}

    records = [{"type": "start"}, it(1, 3600.0), it(2, 3600.0),
               {"type": "val", "iteration": 2, "mIoU": 0.1},
               it(3, 3600.0), {"type": "val", "iteration": 3, "mIoU": 0.9},   # lost: not saved
               {"type": "resume", "iteration": 2, "epoch": 1},
               it(3, 1800.0), {"type": "val", "iteration": 3, "mIoU": 0.2}]
    (tmp_path / "log.jsonl").write_text("".join(json_mod.dumps(r) + "\n" for r in records))
    rows = learning_curve.curve(tmp_path)
    assert [(r["iteration"], r["mIoU"]) for r in rows] == [(2, 0.1), (3, 0.2)]
    assert rows[0]["cpu_hours"] == pytest.approx(2.0)
    assert rows[1]["cpu_hours"] == pytest.approx(2.5)
