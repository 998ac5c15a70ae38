"""The ``ros2-inst3d`` commands end to end, as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO

from ros2_inst3d.cli import main
from ros2_inst3d.config import ros_parameter_yaml
from ros2_inst3d.data.datasets import read_scene
from ros2_inst3d.resources import data_file


@pytest.mark.slow
def test_demo_writes_every_result_file_and_finds_objects(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "(4 test-time views)" in out  # the demo's offline setting for softgroup
    files = {p.name for p in tmp_path.iterdir()}
    assert files == {"demo_room.instances.ply", "demo_room.instances.json",
                     "demo_room.labels.npz", "demo_room.instances.png"}
    summary = json.loads((tmp_path / "demo_room.instances.json").read_text())
    scene = read_scene(data_file("samples", "demo_room.npz"))
    assert summary["num_points"] == scene.num_points
    assert summary["num_instances"] >= 3
    assert f"{summary['num_instances']} instances" in out
    labels = np.load(tmp_path / "demo_room.labels.npz")
    assert labels["instance"].shape == (scene.num_points,)
    assert len(labels["instance_class"]) == summary["num_instances"]
    # Most found instances lie mostly on one ground-truth object (the baseline merges objects
    # that touch, so not all of them).
    pure = 0
    for k in range(summary["num_instances"]):
        gt = scene.instance[labels["instance"] == k]
        gt = gt[gt >= 0]
        pure += bool(len(gt)) and np.bincount(gt).max() / len(gt) > 0.8
    assert pure >= summary["num_instances"] / 2


@pytest.mark.slow
def test_demo_views_follow_the_method_and_the_flag(tmp_path, capsys):
    """The demo's 4 views apply only to methods that average views (ISBNet refuses views, so
    forcing them would fail); --views overrides them."""
    assert main(["demo", "--model", "isbnet", "-o", str(tmp_path / "isbnet")]) == 0
    assert "test-time views" not in capsys.readouterr().out
    assert main(["demo", "--views", "2", "-o", str(tmp_path / "two")]) == 0
    assert "(2 test-time views)" in capsys.readouterr().out
    assert main(["demo", "--model", "isbnet", "--views", "4", "-o", str(tmp_path / "x")]) == 2
    assert "augmented_views" in capsys.readouterr().err


def test_segment_reads_a_pcd_and_reports_the_stages(tmp_path, capsys):
    rng = np.random.default_rng(0)
    # Two dense blobs (~1.5 cm apart) two metres from each other.
    pts = np.concatenate([rng.uniform(0, 0.2, (2000, 3)), rng.uniform(0, 0.2, (2000, 3)) + [2, 0, 0]])
    pcd = tmp_path / "two_boxes.pcd"
    header = ("# .PCD v0.7\nVERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\n"
              f"WIDTH {len(pts)}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {len(pts)}\nDATA binary\n")
    pcd.write_bytes(header.encode() + pts.astype("<f4").tobytes())
    # xyz only: the geometric method (the learned rgb weights need colour, see the next test).
    assert main(["segment", str(pcd), "-o", str(tmp_path / "out"), "--model", "geometric"]) == 0
    summary = json.loads((tmp_path / "out" / "two_boxes.instances.json").read_text())
    assert summary["num_instances"] == 2
    assert {"crop", "planes", "grouping", "total"} <= set(summary["timing_ms"])
    sizes = sorted(i["num_points"] for i in summary["instances"])
    assert sizes == [2000, 2000]


def test_learned_rgb_weights_explain_that_they_need_colour(tmp_path, capsys):
    pcd = tmp_path / "xyz_only.pcd"
    pts = np.random.default_rng(1).uniform(0, 1, (500, 3)).astype("<f4")
    pcd.write_text("# .PCD v0.7\nVERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\n"
                   f"WIDTH {len(pts)}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {len(pts)}\n"
                   "DATA ascii\n" + "\n".join(" ".join(map(str, p)) for p in pts) + "\n")
    # Chosen explicitly, the rgb weights are used as they are (the default would switch to the
    # xyz-only weights for this cloud).
    rgb_weights = REPO / "models" / "softgroup_synthetic.pth"
    assert main(["segment", str(pcd), "-o", str(tmp_path / "out"),
                 "--checkpoint", str(rgb_weights)]) == 2
    err = capsys.readouterr().err
    assert "needs colour" in err and "geometric" in err


def test_unreadable_input_is_one_line_and_exit_code_2(tmp_path):
    bad = tmp_path / "scan.xyz"
    bad.write_text("1 2 3\n")
    proc = subprocess.run([sys.executable, "-m", "ros2_inst3d.cli", "segment", str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "scan.xyz" in lines[0] and "extension" in lines[0]
    missing = subprocess.run([sys.executable, "-m", "ros2_inst3d.cli", "segment", "nope.ply"],
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


def test_bad_config_is_reported_with_the_key(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("segment: {score_treshold: 0.5}\n")
    proc = subprocess.run([sys.executable, "-m", "ros2_inst3d.cli", "demo", "-c", str(cfg),
                           "-o", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "segment.score_treshold" in proc.stderr and "Traceback" not in proc.stderr


def test_params_prints_the_shipped_yaml(capsys):
    assert main(["params", "--yaml"]) == 0
    assert capsys.readouterr().out == ros_parameter_yaml()


@pytest.mark.parametrize("argv", [["eval", "--pred", "x"], ["eval"]])
def test_eval_argument_errors_are_user_errors(argv, tmp_path, capsys):
    assert main(argv) == 2
