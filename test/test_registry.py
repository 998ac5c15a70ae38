"""The method registry is the one list of methods: every entry builds, and every list of methods in
the package (config choices, CLI choices, benchmark defaults, learned front end) is derived from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from ros2_inst3d import bench, config, tracking_eval
from ros2_inst3d.cli import build_parser
from ros2_inst3d.config import Config, ConfigError, schema
from ros2_inst3d.model.geometric import GeometricModel
from ros2_inst3d.model.inference import LearnedModel, shipped_weights
from ros2_inst3d.model.lidar import LidarClusteringModel
from ros2_inst3d.model.registry import (
    BENCHMARK_METHODS,
    LEARNED_METHODS,
    METHOD_NAMES,
    METHODS,
    NETWORKS,
    build_network,
    method,
)
from ros2_inst3d.segmenter import build_point_model

REPO = Path(__file__).resolve().parents[1]


def test_every_list_of_methods_is_the_registry_s():
    leaves = {leaf.name: leaf for leaf in schema()}
    assert tuple(leaves["model.name"].choices) == config.MODEL_NAMES == METHOD_NAMES
    assert LEARNED_METHODS == tuple(n for n in METHOD_NAMES if METHODS[n].network)
    assert bench.PIPELINE_MODELS == tracking_eval.TRACKING_MODELS == BENCHMARK_METHODS
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # noqa: SLF001 (argparse has no API)
    for command in ("segment", "demo", "eval", "bag"):
        (model,) = [a for a in commands[command]._actions if a.dest == "model"]
        assert tuple(model.choices) == METHOD_NAMES, command
    (models,) = [a for a in commands["bench"]._actions if a.dest == "models"]
    assert tuple(models.choices) == METHOD_NAMES
    # The parameter's documentation names every method.
    assert all(name in leaves["model.name"].doc for name in METHOD_NAMES)


def test_learned_methods_run_registered_networks_and_shipped_weights_are_in_the_repo():
    for name, entry in METHODS.items():
        if entry.network is not None:
            assert entry.network in NETWORKS, name
            assert build_network({"name": entry.network}, device="meta").name == name
        assert entry.weights_shipped == (REPO / "models" / f"{name}_synthetic.pth").is_file(), name
    # A network that is no method (no inference stage) cannot be picked.
    assert "hais" in NETWORKS and "hais" not in METHODS
    with pytest.raises(ConfigError, match="not a segmentation method.*'geometric'"):
        method("hais")
    with pytest.raises(ConfigError, match="must be one of geometric, lidar"):
        Config().replace(**{"model.name": "hais"})


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_every_method_builds_from_its_entry_or_says_what_it_needs(name):
    cfg = Config().replace(**{"model.name": name, "model.device": "cpu"})
    entry = METHODS[name]
    if entry.runs_without_checkpoint:
        model = build_point_model(cfg)
        assert model.name == name
        expected = {"geometric": GeometricModel, "lidar": LidarClusteringModel}.get(name, LearnedModel)
        assert isinstance(model, expected)
        assert (shipped_weights(name) is not None) == entry.needs_weights
    else:
        with pytest.raises(ConfigError, match=f"ros2-inst3d train config/train/{name}_synthetic"):
            build_point_model(cfg)


def test_readme_method_table_lists_every_method():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    for name, entry in METHODS.items():
        (row,) = [r for r in rows if r.startswith((f"| `{name}` |", f"| `{name}` (default) |"))]
        assert ("none needed" in row) == (not entry.needs_weights), name
        assert ("(shipped)" in row) == entry.weights_shipped, name


@pytest.mark.parametrize("name", ["pointgroup", "softgroup", "isbnet", "mtml"])
def test_build_network_applies_fixed_modules_for_every_learned_method(name):
    """`fixed_modules` is one training setting for all methods: the registry sets it on the
    network (the trainer freezes those modules), and refuses anything but a list of names."""
    from ros2_inst3d.model.registry import load_model_config
    from ros2_inst3d.resources import data_dir

    cfg = load_model_config(data_dir("config") / "models" / f"{name}_synthetic.yaml")
    cfg = {**cfg, "fixed_modules": ["input_conv", "unet"]}
    assert build_network(cfg, device="meta").fixed_modules == ["input_conv", "unet"]
    assert build_network({**cfg, "fixed_modules": []}, device="meta").fixed_modules == []
    with pytest.raises(ConfigError, match="fixed_modules must be a list"):
        build_network({**cfg, "fixed_modules": "unet"}, device="meta")
