"""The xyz street network and the ``lidar`` method's semantic junk test: SemanticKITTI scans as
training scenes (the outdoor class table), training and exporting a street model with the CLI,
and the junk test that drops clusters by the network's per-point classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ros2_inst3d.classes import STREET_CLASSES, STREET_JUNK_CLASSES, street_labels
from ros2_inst3d.cli import main
from ros2_inst3d.config import ConfigError, load_config
from ros2_inst3d.data.augment import Augmentation
from ros2_inst3d.data.batching import collate
from ros2_inst3d.data.datasets import SceneDataset, find_scene_files, read_scene
from ros2_inst3d.evaluation import kitti_object_scores
from ros2_inst3d.model.lidar import LidarClusteringModel, StreetSemantics
from ros2_inst3d.segmenter import Segmenter
from ros2_inst3d.synthetic.street import scan_street

ROOT = Path(__file__).resolve().parents[1]
S = {name: i for i, name in enumerate(STREET_CLASSES)}


def _kitti(semantic: int, instance: int = 0) -> int:
    return semantic | (instance << 16)


def test_street_labels_map_kitti_ids_and_number_the_things():
    label = np.array([_kitti(40), _kitti(72), _kitti(10, 5), _kitti(10, 7), _kitti(10, 5),
                      _kitti(252, 5), _kitti(30, 2), _kitti(70), _kitti(0), _kitti(1),
                      _kitti(50, 3), _kitti(99), _kitti(10)], dtype=np.uint32)
    semantic, instance = street_labels(label)
    assert semantic.tolist() == [S["ground"], S["ground"], S["vehicle"], S["vehicle"],
                                 S["vehicle"], S["vehicle"], S["person"], S["vegetation"],
                                 -100, -100, S["building"], S["other-object"], S["vehicle"]]
    # one instance per (semantic id, instance id) pair of a thing; none for stuff, nor for a
    # thing without an instance id
    things = instance[2:7]
    assert things[0] == things[2] and len(set(things.tolist())) == 4 and things.min() == 0
    assert (instance[[0, 1, 7, 8, 9, 10, 11, 12]] == -100).all()
    # the junk classes are what the KITTI benchmark calls junk
    assert {STREET_CLASSES[c] for c in STREET_JUNK_CLASSES} == {"ground", "building", "fence",
                                                               "vegetation"}


def _write_kitti(folder: Path, stem: str, xyz: np.ndarray, label: np.ndarray | None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    scan = folder / f"{stem}.bin"
    np.c_[xyz, np.zeros(len(xyz))].astype("<f4").tofile(scan)
    if label is not None:
        np.asarray(label, "<u4").tofile(folder / f"{stem}.label")
    return scan


def test_labelled_kitti_scans_are_training_scenes_without_colour(tmp_path):
    rng = np.random.default_rng(0)
    xyz = rng.uniform(-20, 20, (5000, 3))
    label = np.where(xyz[:, 2] < -5, _kitti(40), _kitti(10, 1)).astype(np.uint32)
    _write_kitti(tmp_path, "a", xyz, label)
    _write_kitti(tmp_path, "unlabelled", xyz, None)
    assert [p.name for p in find_scene_files(tmp_path)] == ["a.bin"]
    scene = read_scene(tmp_path / "a.bin")
    assert scene.class_names == STREET_CLASSES and scene.rgb is None and scene.has_labels
    assert set(np.unique(scene.semantic)) == {S["ground"], S["vehicle"]}
    assert set(np.unique(scene.instance)) == {-100, 0}
    assert not read_scene(tmp_path / "unlabelled.bin").has_labels

    # augmented and collated for an xyz-only network; a colour network says it needs rgb
    aug = Augmentation(elastic=None, crop_extent=400, min_points=100)
    ds = SceneDataset(tmp_path, voxel_size=0.15, augmentation=aug, require_labels=True, seed=1)
    sample = ds[0]
    assert sample.rgb is None and len(sample.semantic) == len(sample.xyz) > 100
    batch = collate([sample], 0.15, in_channels=1)
    assert batch["feats"].shape[1] == 4
    with pytest.raises(ValueError, match="need colour"):
        collate([sample], 0.15, in_channels=3)

    # a table that the labels cannot map to, and a .label that does not fit its scan
    with pytest.raises(ValueError, match="street table"):
        read_scene(tmp_path / "a.bin", class_names=("a", "b"))
    label[:-1].tofile(tmp_path / "a.label")
    with pytest.raises(ValueError, match="one uint32 per point"):
        read_scene(tmp_path / "a.bin")


@pytest.fixture(scope="module")
def street_model(tmp_path_factory):
    """A street network trained for a few steps with the CLI on two generated streets, exported
    as a weights file (the weights are barely trained: the tests check the wiring)."""
    root = tmp_path_factory.mktemp("street_model")
    for split, n in (("train", 2), ("val", 1)):
        assert main(["gen-data", str(root / split), "--street", "--split", split, "--scenes",
                     str(n), "--quiet"]) == 0
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(ROOT)  # the config's train.pretrain is relative to the repository root
        assert main(["train", str(ROOT / "config" / "train" / "softgroup_street.yaml"),
                     "--data-train", str(root / "train"), "--data-val", str(root / "val"),
                     "--max-iters", "3", "--work-dir", str(root / "run"), "--device", "cpu",
                     "--quiet"]) == 0
    out = root / "street.pth"
    assert main(["export-weights", str(root / "run" / "latest.pth"), str(out), "--half"]) == 0
    return out


def test_semantic_junk_test_drops_the_clusters_the_network_calls_junk(street_model):
    scan = scan_street(100001)
    base = LidarClusteringModel(load_config(ROOT / "config" / "lidar_outdoor.yaml").lidar)
    plain = base.predict_points(scan.xyz)
    cand = base.candidate_clusters(scan.xyz)
    for share in (0.0, 0.5, 1.0):
        cfg = load_config(ROOT / "config" / "lidar_outdoor.yaml",
                          {"lidar.semantic_model": str(street_model),
                           "lidar.max_junk_share": share})
        model = LidarClusteringModel.from_config(cfg)
        props = model.predict_points(scan.xyz)
        assert "semantic" in props.timing_ms
        junk = model.semantics.junk_points(scan.xyz)
        expected = [ix for ix in plain.indices if junk[ix].mean() <= share]
        assert sorted(map(tuple, props.indices)) == sorted(map(tuple, expected))
        if share == 1.0:
            assert len(props.indices) == int(cand.plausible.sum())


def test_semantic_model_must_be_a_street_network(tmp_path, capsys):
    cfg = load_config(ROOT / "config" / "lidar_outdoor.yaml")
    with pytest.raises(ConfigError, match="does not exist"):
        StreetSemantics(str(tmp_path / "missing.pth"), cfg.model)
    # the shipped xyz room model has the ScanNet table: not a street model
    with pytest.raises(ConfigError, match="not a street model"):
        StreetSemantics("softgroup_lidar_synthetic.pth", cfg.model)
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="semantic_model"):
        StreetSemantics(str(bad), cfg.model)
    # the CLI says it in one line
    scan = _write_kitti(tmp_path / "s", "x", scan_street(100002).xyz, None)
    params = tmp_path / "p.yaml"
    params.write_text(f"model: {{name: lidar}}\nlidar: {{semantic_model: {bad}}}\n")
    assert main(["segment", str(scan), "-c", str(params), "-o", str(tmp_path / "o")]) != 0
    err = capsys.readouterr().err
    assert "lidar.semantic_model" in err and "Traceback" not in err


def test_shipped_street_model_removes_street_junk_and_keeps_the_objects():
    """The outdoor preset with the shipped street network (the README's opt-in) against the
    preset, on generated test-split streets (never trained or tuned on): far less junk, as many
    objects."""
    base = load_config(ROOT / "config" / "lidar_outdoor.yaml")
    semantic = load_config(ROOT / "config" / "lidar_outdoor.yaml",
                           {"lidar.semantic_model": "softgroup_street.pth"})
    assert not base.lidar.semantic_model and semantic.lidar.max_junk_share == 0.5
    totals = {"base": np.zeros(3), "semantic": np.zeros(3)}
    for seed in (200000, 200001):
        scan = scan_street(seed)
        for name, cfg in (("base", base), ("semantic", semantic)):
            inst = Segmenter(cfg).segment(scan.xyz, None)
            row = kitti_object_scores(inst.indices, scan.label)
            totals[name] += (row["matched"], row["instances"], row["junk"])
    (m0, n0, j0), (m1, n1, j1) = totals["base"], totals["semantic"]
    assert m1 >= m0 - 1 and m1 > 0, totals
    assert j1 / n1 < 0.3 * (j0 / n0), (totals, "junk share")


def test_real_benchmark_scores_the_street_network_per_point(tmp_path):
    """benchmarks/bench_real.py's street-network row on a generated test street laid out as the
    real SemanticKITTI frame: the shipped network labels its own domain well, and the row
    reports the accuracy and per-class IoU that the README's real-frame row comes from."""
    import importlib.util
    import json

    (tmp_path / "semantickitti").mkdir()
    scan_street(200002).save(tmp_path / "semantickitti" / "000000")
    spec = importlib.util.spec_from_file_location("bench_real_under_test",
                                                  ROOT / "benchmarks" / "bench_real.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    report = tmp_path / "r.json"
    assert module.main(["--data", str(tmp_path), "--out", str(tmp_path / "png"), "--only", "kitti",
                        "--kitti-methods", "street-network", "--json", str(report)]) == 0
    (row,) = json.loads(report.read_text())["kitti"]
    assert row["weights"] == "softgroup_street.pth"
    assert row["semantic_accuracy"] > 0.9 and row["mIoU"] > 0.3, row
    assert set(row["class_iou"]) == set(STREET_CLASSES)
    assert row["class_iou"]["ground"] > 0.9 and row["class_iou"]["vehicle"] > 0.5, row
