"""pip install path of ros2_inst3d (use without ROS). colcon builds the same sources via CMakeLists.txt."""

import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).parent
# Folders a non-editable install copies into ros2_inst3d/share/ (see ros2_inst3d/resources.py).
DATA_DIRS = ("config", "msg", "launch", "rviz", "samples", "models")


class BuildWithData(build_py):
    def run(self):
        super().run()
        for name in DATA_DIRS:
            src = HERE / name
            if src.is_dir():
                shutil.copytree(src, Path(self.build_lib) / "ros2_inst3d" / "share" / name,
                                dirs_exist_ok=True)


SPCONV = "spconv{suffix}>=2.3.6"
# Patchwork++ ground segmentation for model.name lidar (lidar.ground auto/patchworkpp); without
# it `auto` falls back to the built-in polar-grid fit.
PATCHWORK = "pypatchworkpp>=1.4"

setup(
    name="ros2_inst3d",
    version="0.1.0",
    description="3D instance segmentation of PointCloud2 streams: ROS 2 node, offline tools, models",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["ros2_inst3d", "ros2_inst3d.*"]),
    package_data={"ros2_inst3d": ["ops/csrc/*", "interfaces/**/*", "synthetic/meshes/*"]},
    include_package_data=True,
    cmdclass={"build_py": BuildWithData},
    install_requires=[
        "numpy>=1.24",
        "scipy>=1.10",
        "pyyaml>=6",
        "tqdm>=4.60",
        "torch>=2.1",
        "open3d>=0.17",
        "rosbags>=0.11",
        "matplotlib>=3.6",
    ],
    extras_require={
        "cpu": [SPCONV.format(suffix="")],
        "cu118": [SPCONV.format(suffix="-cu118")],
        "cu121": [SPCONV.format(suffix="-cu121")],
        "cu124": [SPCONV.format(suffix="-cu124")],
        "cu126": [SPCONV.format(suffix="-cu126")],
        "lidar": [PATCHWORK],
        "dev": [SPCONV.format(suffix=""), PATCHWORK, "pytest>=7", "hypothesis>=6.80",
                "pytest-benchmark>=4"],
    },
    entry_points={"console_scripts": ["ros2-inst3d = ros2_inst3d.cli:main",
                                      "segment_node = ros2_inst3d.node:main"]},
)
