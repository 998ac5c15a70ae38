"""Static checks of launch/segment.launch.py (ROS' launch packages are not needed here): its
arguments, the presets it can pick and that every preset is a valid parameter file."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ros2_inst3d.config import load_config

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "launch" / "segment.launch.py"


def _literal(name: str):
    """The value of the module-level constant ``name`` in the launch file."""
    tree = ast.parse(LAUNCH.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name
                                                for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{LAUNCH.name} defines no {name}")


def _argument_names() -> list[str]:
    tree = ast.parse(LAUNCH.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "ARGUMENTS":
            return [ast.literal_eval(item.elts[0]) for item in node.value.elts]
    raise AssertionError("no ARGUMENTS list")


def test_launch_file_declares_its_arguments():
    names = _argument_names()
    for arg in ("preset", "params_file", "model", "checkpoint", "input_topic", "fixed_frame",
                "namespace", "use_sim_time", "log_level", "rviz"):
        assert arg in names
    compile(LAUNCH.read_text(), str(LAUNCH), "exec")  # at least valid Python


@pytest.mark.parametrize("preset", _literal("PRESETS"))
def test_every_preset_is_a_shipped_valid_parameter_file(preset):
    name = _literal("PRESET_FILES").get(preset, f"{preset}.yaml")
    path = ROOT / "config" / name
    assert path.is_file(), path
    cfg = load_config(path)  # the ROS parameter-file form, validated against the schema
    assert "ros__parameters" in path.read_text()  # a node parameter file, as launch passes it
    if preset.startswith("lidar"):
        assert cfg.model.name == "lidar"
    if preset == "tabletop":
        assert cfg.model.name == "geometric" and cfg.geometric.tabletop


def test_readme_names_every_preset():
    readme = (ROOT / "README.md").read_text()
    assert "Which preset when" in readme
    for preset in _literal("PRESETS"):
        assert f"`{preset}`" in readme
