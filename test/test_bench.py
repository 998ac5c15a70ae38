"""``ros2-inst3d bench --pipeline``: per-stage table and JSON for the geometric baseline and a
learned model (no timing asserts: the numbers depend on the machine and its load)."""

from __future__ import annotations

import json

import pytest

from ros2_inst3d.bench import BENCH_SCENE_SEED, PIPELINE_STAGES
from ros2_inst3d.cli import main

from conftest import REPO


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    code = main(["bench", "--pipeline", "--models", "geometric", "softgroup", "--devices", "cpu",
                 "--cpu-threads", "1", "2", "--repeats", "1", "--json", str(out)])
    return code, json.loads(out.read_text())


@pytest.mark.slow
def test_bench_json_has_one_run_per_method_with_shares_summing_to_one(bench_run):
    code, report = bench_run
    assert code == 0
    assert set(report) == {"pipeline"}  # --pipeline: no decode or ops sections
    pipeline = report["pipeline"]
    assert pipeline["scene"]["seed"] == BENCH_SCENE_SEED
    assert 90_000 <= pipeline["scene"]["points"] <= 130_000
    assert pipeline["stages"] == list(PIPELINE_STAGES)
    runs = {r["model"]: r for r in pipeline["runs"]}
    assert set(runs) == {"geometric", "softgroup"}
    # one learned run per thread count, the same instances whatever the count
    learned = [r for r in pipeline["runs"] if r["model"] == "softgroup"]
    assert [r["cpu_threads"] for r in learned] == [1, 2]
    assert learned[0]["instances"] == learned[1]["instances"]
    for run in pipeline["runs"]:
        assert run["cpu_ms"] > 0.0
        assert run["device"] == "cpu"
        assert run["points"] == pipeline["scene"]["points"]
        assert 0 < run["accumulated_points"] <= run["points"]
        assert run["instances"] >= 0 and run["weights"]
        assert sum(s["share"] for s in run["stages"].values()) == pytest.approx(1.0, abs=1e-9)
        assert sum(s["ms"] for s in run["stages"].values()) == pytest.approx(run["total_ms"])
        assert all(s["ms"] >= 0.0 for s in run["stages"].values())
        assert list(run["stages"]) == [s for s in PIPELINE_STAGES if s in run["stages"]]
    common = {"decode", "accumulate", "crop", "fusion", "encode"}
    assert set(runs["geometric"]["stages"]) == common | {"planes", "grouping"}
    assert set(runs["softgroup"]["stages"]) == common | {"voxelize", "backbone", "grouping",
                                                         "refinement"}


def test_bench_table_marks_stages_a_method_lacks(bench_run):
    from ros2_inst3d.bench import format_pipeline

    _, report = bench_run
    lines = format_pipeline(report["pipeline"]).splitlines()
    rows = {line.split()[0]: line for line in lines if line.split()}
    assert lines[1].split()[1:] == ["geometric/cpu", "softgroup/cpu/1t", "softgroup/cpu/2t"]
    planes = rows["planes"].split()
    assert planes[-2:] == ["-", "-"] and planes[-3].endswith("%")  # geometric has it, softgroup not
    backbone = rows["backbone"].split()
    assert backbone[-1].endswith("%") and backbone[-5] == "-"
    assert len(rows["cpu"].split()) == len("cpu process CPU time per run".split()) + 3
    assert rows["total"].split()[-1] == "100%"
    assert any("random init" in line or "shipped" in line for line in lines)


def test_bench_runs_on_a_saved_room_and_names_it(tmp_path, capsys):
    from ros2_inst3d.data.datasets import read_scene

    room = REPO / "samples" / "demo_room.npz"
    out = tmp_path / "bench.json"
    assert main(["bench", "--pipeline", "--models", "geometric", "--scene", str(room),
                 "--repeats", "1", "--json", str(out)]) == 0
    pipeline = json.loads(out.read_text())["pipeline"]
    assert pipeline["scene"] == {"seed": None, "file": str(room),
                                 "points": read_scene(room).num_points}
    assert pipeline["runs"][0]["points"] == pipeline["scene"]["points"]
    assert f"room {room}" in capsys.readouterr().out


def test_bench_refuses_a_seed_and_a_saved_room_together(capsys):
    code = main(["bench", "--pipeline", "--models", "geometric", "--seed", "3",
                 "--scene", str(REPO / "samples" / "demo_room.npz")])
    assert code != 0
    assert "give one" in capsys.readouterr().err


def test_bench_times_each_view_count_of_the_models_that_average_views(tmp_path, capsys):
    """--augmented-views runs softgroup once per view count; the geometric baseline and ISBNet
    (which do not average views) once, and the table names the view count of each column."""
    out = tmp_path / "bench.json"
    assert main(["bench", "--pipeline", "--models", "geometric", "isbnet", "softgroup",
                 "--devices", "cpu", "--scene", str(REPO / "samples" / "demo_room.npz"),
                 "--augmented-views", "1", "2", "--repeats", "1", "--json", str(out)]) == 0
    runs = json.loads(out.read_text())["pipeline"]["runs"]
    assert [(r["model"], r["augmented_views"]) for r in runs] == [
        ("geometric", 1), ("isbnet", 1), ("softgroup", 1), ("softgroup", 2)]
    header = next(line for line in capsys.readouterr().out.splitlines()
                  if line.startswith("stage"))
    assert header.split()[1:] == ["geometric/cpu", "isbnet/cpu/1v", "softgroup/cpu/1v",
                                  "softgroup/cpu/2v"]
