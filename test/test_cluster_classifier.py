"""The ``lidar`` method's learned junk test: cluster features, the classifier file, training,
the threshold rule, ``train-clusters`` and the shipped classifier on a generated street."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ros2_inst3d.cli import main
from ros2_inst3d.config import ConfigError, LidarConfig, load_config
from ros2_inst3d.evaluation import kitti_object_scores
from ros2_inst3d.model.cluster_classifier import load_cluster_classifier, train_cluster_classifier
from ros2_inst3d.model.cluster_samples import ClusterSamples, choose_threshold
from ros2_inst3d.model.lidar import (CLUSTER_FEATURES, LidarClusteringModel, cluster_features,
                                     cluster_moments, cluster_shape)
from ros2_inst3d.segmenter import Segmenter
from ros2_inst3d.synthetic.street import (STREET_SENSORS, perturbed_hdl64_lidar, scan_street)

ROOT = Path(__file__).resolve().parents[1]
COL = {name: i for i, name in enumerate(CLUSTER_FEATURES)}


def _features(*clusters):
    pts = np.concatenate(clusters)
    labels = np.concatenate([np.full(len(c), i) for i, c in enumerate(clusters)])
    k = len(clusters)
    mean, cov = cluster_moments(pts, labels, k)
    return cluster_features(np.arange(k), np.bincount(labels, minlength=k), mean, cov,
                            cluster_shape(pts, labels, k), np.full(k, 0.25), np.full(k, 0.02))


def test_cluster_features_describe_shape_size_and_range():
    rng = np.random.default_rng(0)
    u = rng.random((400, 2))
    wall = np.column_stack([10 + 4 * u[:, 0], np.full(400, 5.0), 2 * u[:, 1]])  # vertical, x-z
    slab = np.column_stack([20 + 3 * u[:, 0], 2 * u[:, 1], np.full(400, 0.3)])   # horizontal
    pole = np.column_stack([np.full(100, -6.0), np.full(100, 8.0), np.linspace(0, 4, 100)])
    f = _features(wall, slab, pole + 0.001 * rng.standard_normal((100, 3)))
    assert f.shape == (3, len(CLUSTER_FEATURES))
    assert f[0, COL["normal_z"]] < 0.05 and f[1, COL["normal_z"]] > 0.95
    # 4 x 2 m: planarity (l2 - l3) / l1 = (2^2 / 12) / (4^2 / 12) = 0.25
    assert f[0, COL["planarity"]] == pytest.approx(0.25, abs=0.03)
    assert f[2, COL["linearity"]] > 0.99
    assert f[0, COL["length"]] == pytest.approx(4.0, abs=0.05)
    assert f[0, COL["height"]] == pytest.approx(2.0, abs=0.05)
    assert f[2, COL["range"]] == pytest.approx(10.0, abs=0.01)
    assert f[0, COL["log_points"]] == pytest.approx(np.log(400))
    # the density feature is the count scaled by range squared
    assert f[2, COL["log_density"]] == pytest.approx(np.log(100) + 2 * np.log(10.0), abs=1e-3)
    assert f[0, COL["ground_gap"]] == 0.25 and f[0, COL["surface_variation"]] == 0.02


def _toy_samples(n=600, seed=0):
    """Objects are taller than they are long, junk the reverse, plus noise features."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(CLUSTER_FEATURES)))
    y = rng.random(n) < 0.5
    x[:, COL["height"]] = np.where(y, 2.0, 0.5) + 0.3 * rng.standard_normal(n)
    x[:, COL["length"]] = np.where(y, 0.8, 5.0) + 0.5 * rng.standard_normal(n)
    return x, y


def test_training_separates_a_learnable_rule_and_the_file_round_trips(tmp_path):
    x, y = _toy_samples()
    clf = train_cluster_classifier(x, y, CLUSTER_FEATURES, hidden=(16,), epochs=200,
                                   feature_noise=0.1, members=2)
    xt, yt = _toy_samples(seed=1)
    prob = clf.object_probability(xt)
    assert prob.shape == (len(xt),) and np.all((prob >= 0) & (prob <= 1))
    assert ((prob >= 0.5) == yt).mean() > 0.95
    path = clf.save(tmp_path / "c.json")
    again = load_cluster_classifier(path, CLUSTER_FEATURES)
    assert np.allclose(again.object_probability(xt), prob)
    assert again.meta["members"] == 2 and again.meta["samples"] == len(x)
    # a feature the cluster could not compute counts as its training mean, not as garbage
    xt[:5, COL["surface_variation"]] = np.nan
    assert np.all(np.isfinite(again.object_probability(xt)))


def test_training_refuses_one_class_and_wrong_shapes():
    x, y = _toy_samples(50)
    with pytest.raises(ValueError, match="both"):
        train_cluster_classifier(x, np.ones(len(x), bool), CLUSTER_FEATURES, epochs=1)
    with pytest.raises(ValueError, match="features must be"):
        train_cluster_classifier(x[:, :3], y, CLUSTER_FEATURES, epochs=1)


def test_bad_classifier_files_are_config_errors(tmp_path):
    x, y = _toy_samples(100)
    good = json.loads(train_cluster_classifier(x, y, CLUSTER_FEATURES, hidden=(4,), epochs=5,
                                               members=1).save(tmp_path / "good.json").read_text())
    cases = {
        "missing": None,
        "not_json": "{not json",
        "format": {**good, "format": "other/1"},
        "features": {**good, "features": good["features"][::-1]},
        "shapes": {**good, "members": [[{"weight": [[1.0]], "bias": [0.0]}]]},
        "no_members": {**good, "members": []},
        "zero_std": {**good, "std": [0.0] * len(good["std"])},
    }
    for name, doc in cases.items():
        path = tmp_path / f"{name}.json"
        if doc is not None:
            path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
        with pytest.raises(ConfigError, match="lidar.classifier"):
            load_cluster_classifier(path, CLUSTER_FEATURES)
        with pytest.raises(ConfigError):
            LidarClusteringModel(LidarConfig(classifier=str(path)))


def test_choose_threshold_keeps_matched_objects_in_every_set():
    prob = np.array([0.9, 0.8, 0.3, 0.12, 0.05])
    smp = ClusterSamples(np.zeros((5, 1)), np.array([1, 1, 0, 1, 0], bool),
                         np.array([1, 1, 0, 1, 0], bool), np.zeros(5, int), 3)
    t, rows = choose_threshold([prob], [smp], max_matched_loss=0.0)
    assert t == pytest.approx(0.12)  # 0.13 would lose the object at 0.12
    t, _ = choose_threshold([prob], [smp], max_matched_loss=0.4)
    assert t == pytest.approx(0.8)  # one of three may go
    # a second set that needs a lower threshold wins
    t, _ = choose_threshold([prob, np.array([0.07])],
                            [smp, ClusterSamples(np.zeros((1, 1)), np.ones(1, bool),
                                                 np.ones(1, bool), np.zeros(1, int), 1)], 0.0)
    assert t == pytest.approx(0.07)
    row = rows[[r["threshold"] for r in rows].index(0.25)]
    assert row["sets"][0] == {"matched": 2, "clusters": 3, "junk": 1}


def _top_elevation_deg(xyz):
    return np.degrees(np.arcsin(xyz[:, 2] / np.linalg.norm(xyz, axis=1))).max()


def test_perturbed_street_sensor_differs_only_in_the_sensor():
    a, b = scan_street(7), scan_street(7, perturbed_hdl64_lidar())
    assert set(STREET_SENSORS) == {"hdl64", "hdl64-perturbed"}
    # pitched up 0.6 degrees, fewer azimuth steps and more dropout: fewer points
    assert 0.4 < _top_elevation_deg(b.xyz) - _top_elevation_deg(a.xyz) < 0.8
    assert len(b.xyz) < 0.9 * len(a.xyz)
    # the same street: most labelled things are seen by both
    things_a, things_b = set(np.unique(a.label >> 16)) - {0}, set(np.unique(b.label >> 16)) - {0}
    assert len(things_a & things_b) >= 0.8 * len(things_a) > 5


@pytest.fixture(scope="module")
def street_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("streets")
    for split, n in (("train", 3), ("val", 2)):
        assert main(["gen-data", str(root / split), "--street", "--split", split, "--scenes",
                     str(n), "--quiet"]) == 0
    return root


def test_train_clusters_cli_writes_a_classifier_the_preset_can_use(street_dirs, tmp_path, capsys):
    out = tmp_path / "clusters.json"
    assert main(["train-clusters", str(street_dirs / "train"), "--val", str(street_dirs / "val"),
                 "--out", str(out), "--epochs", "50", "--members", "1", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "chosen segment.score_threshold" in text and "<- chosen" in text
    clf = load_cluster_classifier(out, CLUSTER_FEATURES)
    assert clf.meta["train_scans"] == 3 and 0.0 <= clf.meta["score_threshold"] < 1.0
    # the lidar method uses it: the probability becomes the score
    scan = scan_street(100000)
    cfg = load_config(ROOT / "config" / "lidar_outdoor.yaml", {"lidar.classifier": str(out)})
    model = LidarClusteringModel(cfg.lidar)
    props = model.predict_points(scan.xyz)
    cand = model.candidate_clusters(scan.xyz, features=True)
    expected = clf.object_probability(cand.features[cand.plausible])
    assert len(props) and np.allclose(np.sort(props.scores), np.sort(expected), atol=1e-6)
    assert "classifier" in props.timing_ms
    # through the segmenter, segment.score_threshold is the classifier's threshold
    for threshold in (0.3, 0.7):
        cfg = load_config(ROOT / "config" / "lidar_outdoor.yaml",
                          {"lidar.classifier": str(out), "segment.score_threshold": threshold})
        inst = Segmenter(cfg).segment(scan.xyz, None)
        assert np.all(inst.scores >= threshold)
        assert len(inst.indices) == sum((p >= threshold) & (n >= cfg.segment.min_points)
                                for p, n in zip(props.scores, map(len, props.indices)))


def test_train_clusters_cli_bad_input_is_one_line(tmp_path, capsys):
    assert main(["train-clusters", str(tmp_path), "--out", str(tmp_path / "c.json")]) != 0
    err = capsys.readouterr().err
    assert "no .bin scans" in err and "Traceback" not in err
    assert main(["gen-data", str(tmp_path / "r"), "--street-sensor", "hdl64-perturbed",
                 "--scenes", "1", "--quiet"]) != 0
    assert "--street-sensor only apply to --street" in capsys.readouterr().err
    assert main(["gen-data", str(tmp_path / "r"), "--street-terrain", "terraced",
                 "--scenes", "1", "--quiet"]) != 0
    assert "--street-terrain only apply to --street" in capsys.readouterr().err


def test_shipped_classifier_removes_street_junk_and_keeps_the_objects():
    """The outdoor preset with the shipped classifier and its threshold (the README's opt-in),
    against the preset, on generated test-split streets (never trained or tuned on): less junk,
    as many objects."""
    base = load_config(ROOT / "config" / "lidar_outdoor.yaml")
    learned = load_config(ROOT / "config" / "lidar_outdoor.yaml",
                          {"lidar.classifier": "lidar_street_clusters.json",
                           "segment.score_threshold": 0.42})
    assert not base.lidar.classifier
    totals = {"base": np.zeros(3), "learned": np.zeros(3)}
    for seed in (200000, 200001, 200002):
        scan = scan_street(seed)
        for name, cfg in (("base", base), ("learned", learned)):
            row = kitti_object_scores(Segmenter(cfg).segment(scan.xyz, None).indices, scan.label)
            totals[name] += (row["matched"], row["instances"], row["junk"])
    (m0, n0, j0), (m1, n1, j1) = totals["base"], totals["learned"]
    assert m1 >= m0 - 1 and m1 > 0
    assert j1 / n1 < 0.7 * (j0 / n0), (totals, "junk share")
