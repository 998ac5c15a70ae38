"""launch/segment.launch.py, package.xml and the Fast DDS profiles, checked statically against the README, the parameter
schema and what the code imports (launch_ros is not on PyPI, so the launch file cannot run here;
on Humble it was run by hand: see README, ROS 2 usage)."""

from __future__ import annotations

import ast
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ros2_inst3d.config import Config, schema
from ros2_inst3d.model.registry import METHOD_NAMES, METHODS
from ros2_inst3d.pipeline import OUTPUT_TYPES

REPO = Path(__file__).resolve().parent.parent
LAUNCH = REPO / "launch" / "segment.launch.py"


@pytest.fixture(scope="module")
def launch_tree() -> ast.Module:
    return ast.parse(LAUNCH.read_text(encoding="utf-8"))


def _assigned(tree: ast.Module, name: str) -> ast.expr:
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return node.value
    raise AssertionError(f"{name} is not assigned in {LAUNCH.name}")


@pytest.fixture(scope="module")
def arguments(launch_tree) -> dict[str, tuple[str | None, str]]:
    """``{name: (literal default or None for a substitution, description)}``."""
    found = {}
    for entry in _assigned(launch_tree, "ARGUMENTS").elts:
        name, default, doc = entry.elts
        found[ast.literal_eval(name)] = (
            ast.literal_eval(default) if isinstance(default, ast.Constant) else None,
            ast.literal_eval(doc))
    return found


def _calls(tree: ast.Module, func_name: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)
            and getattr(n.func, "id", getattr(n.func, "attr", None)) == func_name]


def test_readme_lists_exactly_the_launch_arguments(arguments):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    paragraph = re.search(r"Launch arguments:(.*?)\n\n", readme, re.S)
    assert paragraph, "README has no 'Launch arguments:' paragraph"
    listed = set(re.findall(r"`([a-z_]+)`", paragraph.group(1)))
    assert set(arguments) <= listed
    # Anything else named there must be a parameter or path, not a stale argument.
    assert listed - set(arguments) <= {"rviz2"}, listed - set(arguments)


def test_parameter_overrides_name_schema_leaves(launch_tree, arguments):
    leaves = {leaf.name: leaf for leaf in schema()}
    # _node's `for arg, param in (("model", "model.name"), ...)` loop.
    loop = next(n for n in ast.walk(launch_tree) if isinstance(n, ast.For)
                and isinstance(n.iter, ast.Tuple))
    pairs = [tuple(ast.literal_eval(e) for e in t.elts) for t in loop.iter.elts]
    assert pairs, "no argument -> parameter overrides found"
    for arg, param in pairs:
        assert arg in arguments, arg
        assert param in leaves, param
        default, doc = arguments[arg]
        assert default == "", f"{arg}: an empty default keeps the parameter file's value"
        assert param in doc, f"{arg}'s description should name {param}"
    # The documented methods are the registry's, split as they start: without a checkpoint, or
    # only with one (a learned method without shipped weights).
    model_doc = arguments["model"][1]
    # (the second list is left out when every learned method ships weights).
    ready, needs_checkpoint = (
        found.group(1).split(", ") if (found := re.search(rf"{label}: ([a-z, ]+)\.", model_doc))
        else [] for label in ("Ready to run", "Only with a checkpoint"))
    assert ready + needs_checkpoint == list(leaves["model.name"].choices) == list(METHOD_NAMES)
    assert ready == [n for n, m in METHODS.items() if m.runs_without_checkpoint]


def test_remapping_and_node_match_the_schema_and_the_package(launch_tree, arguments):
    node = next(c for c in _calls(launch_tree, "Node")
                if any(k.arg == "executable" and ast.literal_eval(k.value) == "segment_node"
                       for k in c.keywords))
    kw = {k.arg: k.value for k in node.keywords}
    assert ast.literal_eval(kw["package"]) == "ros2_inst3d"
    node_py = ast.parse((REPO / "ros2_inst3d" / "node.py").read_text(encoding="utf-8"))
    assert ast.literal_eval(kw["name"]) == ast.literal_eval(_assigned(node_py, "NODE_NAME"))
    # `points`, the schema's default input topic, is what input_topic remaps.
    (remap,) = kw["remappings"].elts
    assert ast.literal_eval(remap.elts[0]) == Config().input.topics[0] == "points"
    assert arguments["input_topic"][0] == "points"
    assert "install(PROGRAMS scripts/segment_node DESTINATION lib/${PROJECT_NAME})" in \
        (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    assert arguments["use_sim_time"][0] == "false" and arguments["namespace"][0] == ""


def _imported_top_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_package_xml_declares_what_the_node_and_launch_file_use():
    root = ET.parse(REPO / "package.xml").getroot()
    depend = {e.text for e in root.iter("depend")}
    exec_depend = {e.text for e in root.iter("exec_depend")}
    not_ros = set(sys.stdlib_module_names) | {"ros2_inst3d", "numpy", "yaml", "__future__"}
    used = set()
    for path in (REPO / "ros2_inst3d" / "node.py", LAUNCH):
        used |= _imported_top_modules(path) - not_ros
    # Message packages the node builds through MessageFactory (type names, not imports).
    used |= {type_name.split("/")[0] for type_name in OUTPUT_TYPES.values()} - {"ros2_inst3d"}
    assert used <= depend | exec_depend, f"used but not declared: {used - depend - exec_depend}"
    ros_exec = {d for d in exec_depend if not d.startswith("python3-")
                and d != "rosidl_default_runtime"}  # interface runtime of the generated msgs
    assert ros_exec <= used, f"declared but never used: {ros_exec - used}"


def test_loopback_profile_confines_dds_to_127_0_0_1(tmp_path):
    import ros_harness

    assert ros_harness.loopback_profile_problems() == []
    # The check can fail: an unrestricted transport, as Fast DDS' defaults would be.
    text = ros_harness.LOOPBACK_PROFILE.read_text(encoding="utf-8")
    loose = tmp_path / "loose.xml"
    loose.write_text(text.replace("<address>127.0.0.1</address>\n        </interfaceWhiteList>",
                                  "<address>0.0.0.0</address>\n        </interfaceWhiteList>"))
    assert ros_harness.loopback_profile_problems(loose) == [
        "transport inst3d_udp_loopback is not UDPv4 restricted to 127.0.0.1"]


def test_large_clouds_profile_has_4_mib_socket_buffers():
    ns = {"d": "http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles"}
    root = ET.parse(REPO / "config" / "dds" / "fastdds_large_clouds.xml").getroot()
    (udp,) = [d for d in root.iterfind(".//d:transport_descriptor", ns)
              if d.findtext("d:type", namespaces=ns) == "UDPv4"]
    for tag in ("sendBufferSize", "receiveBufferSize"):
        assert int(udp.findtext(f"d:{tag}", namespaces=ns)) == 4 * 1024 * 1024
    used = {t.text for t in root.iterfind(".//d:userTransports/d:transport_id", ns)}
    assert udp.findtext("d:transport_id", namespaces=ns) in used
