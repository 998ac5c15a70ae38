"""The ROS 2 environment of the real-node tests (scripts/ros_env.sh builds it), loopback-only DDS.

Imported as a plain module (pytest puts test/ on sys.path). The pytest process is the system
Python without rclpy; the node and the test driver (test/ros_driver.py) run as child processes
in the environment's venv, whose interpreter re-executes itself with the wheels' library path.
"""

from __future__ import annotations

import os
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("INST3D_ROS_VENV", REPO / ".ros_venv"))
VENV_PYTHON = VENV / "bin" / "python"
SEGMENT_NODE = VENV / "lib" / "ros2_inst3d" / "segment_node"
DRIVER = Path(__file__).resolve().parent / "ros_driver.py"
LOOPBACK_PROFILE = REPO / "config" / "dds" / "fastdds_loopback.xml"
# Fixed, and not 0 (the default every stray ROS process on a machine uses).
DOMAIN_ID = 73


def unavailable_reason() -> str | None:
    """Why the real-node tests cannot run here, or None when they can."""
    if not VENV_PYTHON.exists():
        return (f"no ROS 2 environment at {VENV} (build it: bash scripts/ros_env.sh, which "
                "scripts/install.sh runs)")
    if not SEGMENT_NODE.exists():
        return f"{SEGMENT_NODE} is missing: rebuild with bash scripts/ros_env.sh"
    probe = subprocess.run([str(VENV_PYTHON), "-c", "import rclpy, ros2_inst3d.msg, tf2_msgs.msg"],
                           env=ros_environment(), cwd=REPO, capture_output=True, text=True,
                           timeout=120)
    if probe.returncode != 0:
        tail = (probe.stderr.strip().splitlines() or ["?"])[-1]
        return f"the ROS 2 environment at {VENV} does not import: {tail}"
    return None


def loopback_profile_problems(path: Path = LOOPBACK_PROFILE) -> list[str]:
    """What keeps ``path`` from confining DDS to 127.0.0.1 (empty: nothing).

    Checked before any ROS process starts: Fast DDS answers a profile it cannot use with its
    defaults (every interface, multicast discovery) and only prints an XMLPARSER error.
    """
    ns = {"d": "http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles"}
    root = ET.parse(path).getroot()
    problems = []
    participants = [p for p in root.iterfind(".//d:participant", ns)
                    if p.get("is_default_profile") == "true"]
    if len(participants) != 1:
        return ["exactly one participant profile must be the default"]
    rtps = participants[0].find("d:rtps", ns)
    if rtps is None or rtps.findtext("d:useBuiltinTransports", namespaces=ns) != "false":
        problems.append("built-in transports are not switched off")
    used = {t.text for t in rtps.iterfind("d:userTransports/d:transport_id", ns)}
    descriptors = {d.findtext("d:transport_id", namespaces=ns): d
                   for d in root.iterfind(".//d:transport_descriptor", ns)}
    if not used or not used <= set(descriptors):
        problems.append(f"user transports {sorted(used)} are not all described")
    for name in used & set(descriptors):
        desc = descriptors[name]
        allowed = [a.text for a in desc.iterfind("d:interfaceWhiteList/d:address", ns)]
        if desc.findtext("d:type", namespaces=ns) != "UDPv4" or allowed != ["127.0.0.1"]:
            problems.append(f"transport {name} is not UDPv4 restricted to 127.0.0.1")
    for where in ("d:defaultUnicastLocatorList", "d:builtin/d:metatrafficUnicastLocatorList",
                  "d:builtin/d:initialPeersList"):
        addresses = [a.text for a in rtps.iterfind(f"{where}//d:address", ns)]
        if addresses != ["127.0.0.1"]:
            problems.append(f"{where.split(':')[-1]} is {addresses}, not [127.0.0.1]")
    if rtps.find(".//d:metatrafficMulticastLocatorList", ns) is not None:
        problems.append("a multicast locator list is configured")
    return problems


def ros_environment() -> dict[str, str]:
    """Environment of every ROS child process: the venv first, DDS on 127.0.0.1 only.

    ROS_AUTOMATIC_DISCOVERY_RANGE is SYSTEM_DEFAULT, not LOCALHOST: with LOCALHOST, rmw_fastrtps
    (8.4.3, participant.cpp) appends its own shared-memory and unrestricted UDPv4 transports to
    the profile's, which opened sockets on every interface here (0.0.0.0 and the eth0 address);
    with SYSTEM_DEFAULT the loopback profile alone decides (test_node_sockets_are_on_loopback).
    """
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ROS_", "RMW_", "FASTRTPS_", "FASTDDS_", "AMENT_", "COLCON_"))}
    env.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE", None)  # let the venv's interpreter set its paths
    env.update({
        "PATH": f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        "PYTHONPATH": str(REPO),
        "AMENT_PREFIX_PATH": str(VENV),
        "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp",
        "FASTRTPS_DEFAULT_PROFILES_FILE": str(LOOPBACK_PROFILE),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "SYSTEM_DEFAULT",
        "ROS_DOMAIN_ID": str(DOMAIN_ID),
        "ROS_LOG_DIR": os.environ.get("ROS_LOG_DIR", "/tmp/inst3d_ros_test_logs"),
        "RCUTILS_COLORIZED_OUTPUT": "0",
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "1",
    })
    return env


def process_sockets(pid: int) -> list[tuple[str, str, int]]:
    """``(protocol, local IPv4/IPv6 address, port)`` of every inet socket process ``pid`` holds.

    /proc/<pid>/net/* lists the whole network namespace; the process's own sockets are the
    ones whose inode is among its file descriptors.
    """
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    found = []
    for proto in ("udp", "tcp", "udp6", "tcp6"):
        table = Path(f"/proc/{pid}/net/{proto}")
        if not table.exists():
            continue
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                address, port = fields[1].split(":")
                found.append((proto, _ip(address), int(port, 16)))
    return found


def _ip(hex_address: str) -> str:
    """/proc/net's little-endian hex address -> dotted IPv4 (or the raw hex for IPv6)."""
    if len(hex_address) == 8:
        return ".".join(str(int(hex_address[i:i + 2], 16)) for i in (6, 4, 2, 0))
    return hex_address
