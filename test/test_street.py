"""The outdoor street generator (``synthetic.street``), the SemanticKITTI object score and the
``lidar`` method on generated streets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ros2_inst3d.cli import main
from ros2_inst3d.config import load_config, parse_override
from ros2_inst3d.evaluation import KITTI_JUNK, kitti_object_scores
from ros2_inst3d.io import read_cloud
from ros2_inst3d.segmenter import Segmenter
from ros2_inst3d.synthetic.street import (SEMANTIC, SENSOR_HEIGHT, THING_CLASSES, build_street,
                                          hdl64_elevations_deg, scan_street)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def street():
    return scan_street(3)


def test_street_scan_is_deterministic_and_labelled_like_semantickitti(street):
    again = scan_street(3)
    assert np.array_equal(street.xyz, again.xyz) and np.array_equal(street.label, again.label)
    assert not np.array_equal(scan_street(4).xyz[:100], street.xyz[:100])
    semantic, instance = street.label & 0xFFFF, street.label >> 16
    assert set(np.unique(semantic)) <= set(SEMANTIC.values())
    things = np.isin(semantic, [SEMANTIC[c] for c in THING_CLASSES])
    assert np.all(instance[things] > 0) and np.all(instance[~things] == 0)
    for name in ("car", "road", "sidewalk", "building"):
        assert (semantic == SEMANTIC[name]).sum() > 500, name
    # one revolution of a 64-beam sensor, 1.73 m above the road
    assert 40_000 < len(street.xyz) < 64 * 2048
    near_road = (semantic == SEMANTIC["road"]) & (np.linalg.norm(street.xyz[:, :2], axis=1) < 10)
    assert abs(np.median(street.xyz[near_road, 2]) + SENSOR_HEIGHT) < 0.15
    elevation = np.degrees(np.arcsin(street.xyz[:, 2] / np.linalg.norm(street.xyz, axis=1)))
    top, bottom = hdl64_elevations_deg()[[0, -1]]
    assert elevation.max() < top + 0.2 and elevation.min() > bottom - 0.2


def test_street_files_read_back_as_a_kitti_scan(street, tmp_path):
    bin_path, label_path = street.save(tmp_path / "street_000003")
    cloud = read_cloud(bin_path)
    assert np.array_equal(cloud.xyz, street.xyz)
    assert np.array_equal(np.fromfile(label_path, dtype="<u4"), street.label)


def test_gen_data_street_writes_pairs(tmp_path, capsys):
    assert main(["gen-data", str(tmp_path / "s"), "--street", "--scenes", "2", "--split", "val",
                 "--quiet"]) == 0
    assert "wrote 2 street scans" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [
        "street_100000.bin", "street_100000.label", "street_100001.bin", "street_100001.label"]


def test_gen_data_street_rejects_room_options(tmp_path, capsys):
    assert main(["gen-data", str(tmp_path / "s"), "--street", "--bag", "--quiet"]) != 0
    err = capsys.readouterr().err
    assert "--bag only apply to rooms" in err and "Traceback" not in err
    assert not (tmp_path / "s").exists()


def test_kitti_object_scores_counts_matches_and_junk():
    car, person, hedge, pole = 10 | (1 << 16), 30 | (2 << 16), 70, 80
    label = np.array([car] * 100 + [person] * 40 + [hedge] * 60 + [pole] * 30 + [40] * 70,
                     dtype=np.uint32)
    indices = [np.arange(0, 80), np.arange(100, 140), np.arange(140, 200), np.arange(200, 230)]
    row = kitti_object_scores(indices, label)
    # the 40-point person is below the 50-point floor; the car is covered at IoU 0.8
    assert (row["objects"], row["matched"], row["instances"], row["junk"]) == (1, 1, 4, 1)
    assert row["per_object"][0]["best_iou"] == 0.8
    row = kitti_object_scores([np.arange(0, 35), np.arange(35, 70), np.arange(70, 100)], label)
    assert row["matched"] == 0 and row["junk"] == 0  # the car cut in three
    assert 70 in KITTI_JUNK and 80 not in KITTI_JUNK


def test_lidar_preset_on_a_generated_street(street):
    """The outdoor preset finds most labelled things of the generated street, and its
    surface-variation test removes vegetation junk without losing matched things."""
    semantic = street.label & 0xFFFF
    rows = {}
    for value in (1.0, None):
        overrides = {} if value is None else {"lidar.max_surface_variation": value}
        cfg = load_config(ROOT / "config" / "lidar_outdoor.yaml", overrides)
        inst = Segmenter(cfg).segment(street.xyz, None)
        rows[value] = kitti_object_scores(inst.indices, street.label), inst
    plain, preset = rows[1.0][0], rows[None][0]
    assert preset["objects"] >= 5 and preset["matched"] >= 0.6 * preset["objects"], preset
    assert preset["matched"] >= plain["matched"] - 1

    def vegetation(inst):
        return sum(np.bincount(semantic[ix]).argmax() == SEMANTIC["vegetation"]
                   for ix in inst.indices)

    assert vegetation(rows[None][1]) < vegetation(rows[1.0][1])


def test_parse_override():
    assert parse_override("lidar.max_height=3.5") == ("lidar.max_height", 3.5)
    assert parse_override("segment.roi_min=[-1, -2, -3]") == ("segment.roi_min", [-1, -2, -3])
    assert parse_override("tracking.enabled=false", prefix="tracking.") == ("tracking.enabled",
                                                                           False)
    for bad in ("lidar.max_height", "max_height=3"):
        with pytest.raises(ValueError):
            parse_override(bad)
    with pytest.raises(ValueError):
        parse_override("lidar.max_height=3", prefix="tracking.")


def test_lidar_street_benchmark_sweeps_a_parameter(street, tmp_path, capsys):
    import importlib.util
    import json

    street.save(tmp_path / "street_000003")
    scan_street(5).save(tmp_path / "street_000005")
    script = ROOT / "benchmarks" / "lidar_street.py"
    spec = importlib.util.spec_from_file_location("lidar_street_under_test", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main([str(tmp_path), "--quiet", "--json", str(tmp_path / "r.json"),
                        "--sweep", "lidar.max_surface_variation=1.0,0.08"]) == 0
    runs = json.loads((tmp_path / "r.json").read_text())
    assert [r["overrides"] for r in runs] == [{"lidar.max_surface_variation": 1.0},
                                              {"lidar.max_surface_variation": 0.08}]
    for run in runs:
        assert run["scans"] == 2 and 0 < run["matched"] <= run["objects"]
        assert run["junk"] <= run["instances"]
    off, on = runs
    assert on["junk_by_class"].get("vegetation", 0) < off["junk_by_class"].get("vegetation", 0)
    assert "matched" in capsys.readouterr().out


def test_terraced_streets_raise_the_lots_and_keep_the_layout():
    """``--street-terrain terraced``: the same street (parts, things, sensor) with lots that
    step up beyond the sidewalks; the road is where it was, and far walls stand higher."""
    flat, flat_y = build_street(11)
    terraced, terraced_y = build_street(11, "terraced")
    assert flat_y == terraced_y and terraced.num_things == flat.num_things
    assert len(terraced.parts) == len(flat.parts)
    assert np.any(terraced.terrace_rise >= 0.8) and np.all(flat.terrace_rise == 0)
    road_y = np.linspace(-flat.half_road + 0.1, flat.half_road - 0.1, 9)
    assert np.array_equal(terraced.ground_z(0.0, road_y), flat.ground_z(0.0, road_y))
    side = int(np.argmax(terraced.terrace_rise))
    beyond = (1 if side else -1) * (flat.half_road + flat.sidewalk + 40.0)
    rise = terraced.ground_z(0.0, beyond) - flat.ground_z(0.0, beyond)
    assert rise == pytest.approx(terraced.terrace_rise[side])
    # the things on the far lots are lifted with their ground
    lifted = [t[0][:, 2].min() - f[0][:, 2].min() for f, t in zip(flat.parts, terraced.parts)
              if f[3] > 0]
    assert max(lifted) > 0.5 and min(lifted) > -1e-9
    with pytest.raises(ValueError, match="unknown street terrain 'hilly'"):
        build_street(11, "hilly")


def test_gen_data_street_terrain(tmp_path, capsys):
    assert main(["gen-data", str(tmp_path / "t"), "--street", "--scenes", "1", "--split", "val",
                 "--street-terrain", "terraced", "--quiet"]) == 0
    terraced = read_cloud(tmp_path / "t" / "street_100000.bin")
    flat = scan_street(100000)
    assert len(terraced.xyz) and not np.array_equal(terraced.xyz, flat.xyz)
