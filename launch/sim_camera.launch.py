"""Simulated camera: `ros2 launch tnn_ros sim_camera.launch.py fps:=15.0 width:=320 height:=240`."""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    """sim_camera with config/sim_camera.yaml; rate, size and encoding as arguments."""
    params = os.path.join(get_package_share_directory("tnn_ros"), "config", "sim_camera.yaml")
    return LaunchDescription([
        DeclareLaunchArgument("namespace", default_value="tnn"),
        DeclareLaunchArgument("params_file", default_value=params),
        DeclareLaunchArgument("fps", default_value="15.0"),
        DeclareLaunchArgument("width", default_value="320"),
        DeclareLaunchArgument("height", default_value="240"),
        DeclareLaunchArgument("encoding", default_value="rgb8"),
        Node(
            package="tnn_ros", executable="sim_camera", name="sim_camera",
            namespace=LaunchConfiguration("namespace"), output="screen",
            parameters=[LaunchConfiguration("params_file"), {
                "fps": ParameterValue(LaunchConfiguration("fps"), value_type=float),
                "width": ParameterValue(LaunchConfiguration("width"), value_type=int),
                "height": ParameterValue(LaunchConfiguration("height"), value_type=int),
                "encoding": LaunchConfiguration("encoding"),
            }],
        ),
    ])
