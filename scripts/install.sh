#!/usr/bin/env bash
# Installs ros2_inst3d and everything it needs on a fresh Debian 12 / Python 3.11 machine:
# the shared libraries open3d's wheel links (libusb, GL, OpenMP), the CPU build of torch, then this
# package in editable mode with its dev extras (spconv CPU wheel, pypatchworkpp, pytest,
# hypothesis), then the ROS 2 Jazzy environment the real-node tests run in (scripts/ros_env.sh:
# a venv in .ros_venv/, cached; INST3D_SKIP_ROS_ENV=1 skips it, and test/test_node_ros.py then
# skips with the reason).
# GPU hosts: afterwards `pip install -e .[cu121]` (or cu118/cu124/cu126) for the CUDA spconv wheel.
set -euo pipefail
cd "$(dirname "$0")/.."

# cmake and a C/C++ toolchain: scripts/ros_env.sh generates the ROS interfaces with rosidl.
apt_packages=(libusb-1.0-0 libgl1 libgomp1 cmake g++ make)
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Debian's system Python refuses pip installs (PEP 668) unless told otherwise.
export PIP_BREAK_SYSTEM_PACKAGES=1 PIP_DISABLE_PIP_VERSION_CHECK=1
python3 -c "import torch" 2>/dev/null || python3 -m pip install -q "torch==2.13.0"
python3 -m pip install -q -e ".[dev]"
echo "ros2_inst3d installed: $(python3 -c 'import ros2_inst3d; print(ros2_inst3d.__version__)')"
[ "${INST3D_SKIP_ROS_ENV:-0}" = 1 ] || bash scripts/ros_env.sh
