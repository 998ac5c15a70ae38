"""resources.data_dir in the layouts the package is installed in."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import ros2_inst3d.resources as resources


def test_checkout_layout_finds_the_folders_beside_the_package():
    assert resources.data_dir("msg") == resources.PACKAGE_DIR.parent / "msg"
    assert (resources.data_dir("msg") / "InstanceArray.msg").is_file()


def test_cmake_install_layout_is_found_relative_to_the_package(tmp_path):
    # What CMakeLists.txt installs: <prefix>/lib/pythonX.Y/site-packages/ros2_inst3d and
    # <prefix>/share/ros2_inst3d/msg, with no AMENT_PREFIX_PATH (a plain python3 -c ...).
    package = tmp_path / "lib" / "python3.11" / "site-packages" / "ros2_inst3d"
    package.mkdir(parents=True)
    shutil.copy(resources.__file__, package / "resources.py")
    (package / "__init__.py").write_text("")
    share_msg = tmp_path / "share" / "ros2_inst3d" / "msg"
    share_msg.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k not in ("AMENT_PREFIX_PATH", "PYTHONPATH")}
    found = subprocess.run(
        [sys.executable, "-S", "-c", "from ros2_inst3d.resources import data_dir; "
         "print(data_dir('msg'))"],
        cwd=package.parent, env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(found) == share_msg
