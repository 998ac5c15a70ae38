"""Start the ros2_inst3d node (and optionally RViz).

    ros2 launch ros2_inst3d segment.launch.py input_topic:=/camera/depth/points fixed_frame:=odom
    ros2 launch ros2_inst3d segment.launch.py model:=softgroup rviz:=true use_sim_time:=true
    ros2 launch ros2_inst3d segment.launch.py preset:=lidar_outdoor input_topic:=/velodyne_points

``preset`` picks one of the shipped parameter files (config/<preset>.yaml, see README: Which
preset when); otherwise ``params_file`` is used. Arguments left empty keep the file's value.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

PRESETS = ("rgbd", "tabletop", "lidar_outdoor", "lidar_indoor")
"""Shipped presets: ``config/<name>.yaml`` (``rgbd`` is the full default file, segment.yaml)."""
PRESET_FILES = {"rgbd": "segment.yaml"}

ARGUMENTS = [
    ("preset", "", "Shipped parameter file to use: rgbd, tabletop, lidar_outdoor, lidar_indoor; "
     "empty: params_file."),
    ("params_file", PathJoinSubstitution([FindPackageShare("ros2_inst3d"), "config", "segment.yaml"]),
     "Node parameter file (see README: Parameters)."),
    ("model", "", "model.name override. Ready to run: geometric, lidar, pointgroup, softgroup, "
     "isbnet, mtml."),
    ("checkpoint", "", "model.checkpoint override: path to a weights file."),
    ("input_topic", "points", "PointCloud2 topic the node's `points` input is remapped to."),
    ("fixed_frame", "", "input.fixed_frame override (e.g. map, odom)."),
    ("namespace", "", "Namespace of the node and its topics."),
    ("use_sim_time", "false", "Use /clock (bag replay)."),
    ("log_level", "info", "Logger level: debug, info, warn, error."),
    ("rviz", "false", "Also start RViz with the shipped view."),
]


def _node(context, *args, **kwargs):
    def value(name):
        return LaunchConfiguration(name).perform(context)

    preset = value("preset")
    if preset and preset not in PRESETS:
        raise RuntimeError(f"preset:={preset!r} is not one of {', '.join(PRESETS)}")
    params_file = (PathJoinSubstitution([FindPackageShare("ros2_inst3d"), "config",
                                         PRESET_FILES.get(preset, f"{preset}.yaml")]
                                        ).perform(context) if preset else value("params_file"))
    overrides = {"use_sim_time": value("use_sim_time").lower() in ("true", "1", "yes")}
    for arg, param in (("model", "model.name"), ("checkpoint", "model.checkpoint"),
                       ("fixed_frame", "input.fixed_frame")):
        if value(arg):
            overrides[param] = value(arg)
    return [Node(
        package="ros2_inst3d", executable="segment_node", name="ros2_inst3d",
        namespace=value("namespace"), output="screen", emulate_tty=True,
        parameters=[params_file, overrides],
        remappings=[("points", value("input_topic"))],
        # ros_arguments= (launch_ros#249, in Humble and later) adds the --ros-args itself.
        ros_arguments=["--log-level", value("log_level")])]


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=doc)
         for name, default, doc in ARGUMENTS]
        + [OpaqueFunction(function=_node),
           Node(package="rviz2", executable="rviz2", name="rviz2", output="screen",
                arguments=["-d", PathJoinSubstitution([FindPackageShare("ros2_inst3d"), "rviz",
                                                       "segment.rviz"])],
                parameters=[{"use_sim_time": LaunchConfiguration("use_sim_time")}],
                condition=IfCondition(LaunchConfiguration("rviz")))])
