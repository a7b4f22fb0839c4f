"""Perception node alone: `ros2 launch tnn_ros perception.launch.py image:=/camera/image_raw`.

The node configures and activates itself (auto_activate); pass `auto_activate:=false` to leave it
to a lifecycle manager.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode

from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    """Perception with config/perception.yaml, image topic and namespace as arguments."""
    params = os.path.join(get_package_share_directory("tnn_ros"), "config", "perception.yaml")
    return LaunchDescription([
        DeclareLaunchArgument("namespace", default_value="tnn"),
        DeclareLaunchArgument("image", default_value="image", description="camera image topic"),
        DeclareLaunchArgument("params_file", default_value=params),
        DeclareLaunchArgument("mode", default_value="auto", description="auto | manual"),
        DeclareLaunchArgument("auto_activate", default_value="true"),
        LifecycleNode(
            package="tnn_ros", executable="perception", name="perception",
            namespace=LaunchConfiguration("namespace"), output="screen",
            parameters=[LaunchConfiguration("params_file"),
                        {"mode": LaunchConfiguration("mode"),
                         "auto_activate": LaunchConfiguration("auto_activate")}],
            remappings=[("image", LaunchConfiguration("image"))],
        ),
    ])
