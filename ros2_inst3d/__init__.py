"""ros2_inst3d: 3D instance segmentation of live PointCloud2 streams.

This module replaces the one rosidl generates for the package (see CMakeLists.txt), so it stays
light: importing it must not pull torch, open3d or any ROS package.
"""

__version__ = "0.1.0"
