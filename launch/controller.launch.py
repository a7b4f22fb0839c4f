"""The controller alone: ``ros2 launch tnn_ros controller.launch.py strategy:=deadline``.

Parameters: config/controller.yaml, then ``params_file``, then ``strategy`` (see tnn.launch.py).
"""

from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription


def launch_nodes(context, *args, **kwargs):
    """The controller node with its merged parameters."""
    from tnn_ros.nodes._params import resolve_node_parameters

    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    namespace = arg("namespace")
    parameters = resolve_node_parameters("controller", namespace, arg("params_file"),
                                         {"strategy": arg("strategy")})
    return [Node(package="tnn_ros", executable="controller", name="controller", namespace=namespace,
                 output="screen", parameters=[parameters])]


def generate_launch_description() -> LaunchDescription:
    """Arguments: namespace, params_file, strategy."""
    return LaunchDescription([
        DeclareLaunchArgument("namespace", default_value="tnn", description="namespace of the node"),
        DeclareLaunchArgument("params_file", default_value="", description="extra parameter YAML"),
        DeclareLaunchArgument("strategy", default_value="",
                              description="manual | rule | deadline | auto (empty: from the YAML)"),
        OpaqueFunction(function=launch_nodes),
    ])
