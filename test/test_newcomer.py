"""What a new user trips on first (issue 12, item 5): version, help texts, method list, config
names that work from any directory, a CLI way to make a test bag, singular counts."""

from __future__ import annotations

import json

import pytest

from ros2_inst3d.cli import build_parser, count_noun, main
from ros2_inst3d.config import MODEL_NAMES, load_config
from ros2_inst3d.model.registry import METHOD_NAMES
from ros2_inst3d.resources import config_path


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.startswith("ros2-inst3d 0.")


@pytest.mark.parametrize("command", ["segment", "demo", "bag", "eval"])
def test_help_gives_every_default_and_lists_only_runnable_methods(command, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    # The choices are the registry's: every listed method builds and runs (isbnet and mtml
    # with a trained model.checkpoint); hais, registered only for its checkpoints, is not one.
    assert "{" + ",".join(MODEL_NAMES) + "}" in text and "hais" not in text
    assert "--model-config MODEL_YAML" in text
    if command in ("segment", "demo"):
        assert "output directory (default:" in text
    assert MODEL_NAMES == METHOD_NAMES


def test_package_config_names_resolve_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for value in ("softgroup_scannet", "softgroup_scannet.yaml",
                  "config/models/softgroup_scannet.yaml"):
        path = config_path(value, "models")
        assert path.is_file() and path.name == "softgroup_scannet.yaml", value
    assert load_config("segment").model.name == "softgroup"
    assert not config_path("no_such_model", "models").exists()   # left for the caller's error


def test_model_yaml_has_its_own_flag(tmp_path, capsys):
    # the official-size SoftGroup config against the small shipped weights: refused with the
    # key report, which shows the flag reached model.config (and -c stayed the pipeline config)
    import numpy as np

    np.save(tmp_path / "c.npy", np.random.default_rng(0).uniform(0, 1, (200, 6)))
    rc = main(["segment", str(tmp_path / "c.npy"), "--model-config", "softgroup_scannet",
               "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "softgroup_scannet.yaml" in err and "does not fit" in err


def test_gen_data_bag_makes_a_bag_the_bag_command_segments(tmp_path, capsys):
    assert main(["gen-data", str(tmp_path / "gd"), "--scenes", "1", "--small", "--bag",
                 "--quiet"]) == 0
    bag = tmp_path / "gd" / "scene_000000_bag"
    assert (bag / "metadata.yaml").is_file()
    assert main(["bag", str(bag), str(tmp_path / "out"), "--model", "geometric", "--limit", "4",
                 "--no-progress"]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["scans"]["total"] == 4 and summary["scans"]["skipped"] == 0
    assert summary["segmentations"]


def test_counts_are_singular_for_one():
    assert count_noun(1, "instance") == "1 instance"
    assert count_noun(0, "instance") == "0 instances"
    assert count_noun(2, "instance") == "2 instances"


def test_organised_cloud_labels_map_back_to_every_pixel(tmp_path, capsys):
    import numpy as np

    h, w = 12, 16
    rng = np.random.default_rng(4)
    xyz = rng.uniform(0, 2, (h * w, 3)).astype(np.float32)
    invalid = rng.random(h * w) < 0.3          # pixels without depth, as a camera writes them
    xyz[invalid] = np.nan
    header = (f"VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH {w}\n"
              f"HEIGHT {h}\nPOINTS {h * w}\nDATA binary\n").encode()
    (tmp_path / "cam.pcd").write_bytes(header + xyz.astype("<f4").tobytes())
    assert main(["segment", str(tmp_path / "cam.pcd"), "--model", "geometric", "-o",
                 str(tmp_path / "o")]) == 0
    labels = np.load(tmp_path / "o" / "cam.labels.npz")
    assert labels["instance"].shape == (int((~invalid).sum()),)
    assert int(labels["source_points"]) == h * w
    assert labels["organized_shape"].tolist() == [h, w]
    np.testing.assert_array_equal(labels["source_index"], np.flatnonzero(~invalid))
    full = np.full(int(labels["source_points"]), -2)
    full[labels["source_index"]] = labels["instance"]
    image = full.reshape(labels["organized_shape"])
    assert (image == -2).sum() == invalid.sum()   # exactly the pixels without a point


def test_png_view_keeps_a_room_whole_and_cuts_far_lidar_returns():
    import numpy as np

    from ros2_inst3d.instances import Box3D
    from ros2_inst3d.render import view_bounds

    rng = np.random.default_rng(5)
    room = rng.uniform([0, 0, 0], [7, 4, 2.5], (20_000, 3))
    lo, hi = view_bounds(room)
    assert (lo <= room.min(axis=0)).all() and (hi >= room.max(axis=0)).all()
    # a scan: dense within 20 m of the sensor, 3 % of the returns out to 200 m
    r = np.concatenate([rng.uniform(1, 20, 19_400), rng.uniform(20, 200, 600)])
    angle = rng.uniform(0, 2 * np.pi, r.size)
    scan = np.column_stack([r * np.cos(angle), r * np.sin(angle), rng.uniform(-2, 8, r.size)])
    lo, hi = view_bounds(scan)
    assert (hi[:2] - lo[:2] < 100).all() and (hi[:2] > 18).all() and (lo[:2] < -18).all()
    assert lo[2] < -1.8 and hi[2] > 7.8                      # heights are kept
    far_box = Box3D(center=np.array([150.0, 0, 1]), size=np.array([4.0, 2, 2]), yaw=0.0)
    assert view_bounds(scan, [far_box])[1][0] >= 152        # boxes are always in view
