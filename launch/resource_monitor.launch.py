"""The resource monitor alone: ``ros2 launch tnn_ros resource_monitor.launch.py backend:=jtop``.

Parameters: config/resource_monitor.yaml, then ``params_file``, then ``backend`` / ``mission_file``.
"""

from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription


def launch_nodes(context, *args, **kwargs):
    """The resource_monitor node with its merged parameters."""
    from tnn_ros.nodes._params import resolve_node_parameters

    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    namespace = arg("namespace")
    parameters = resolve_node_parameters("resource_monitor", namespace, arg("params_file"),
                                         {"backend": arg("backend"), "mission_file": arg("mission_file")})
    return [Node(package="tnn_ros", executable="resource_monitor", name="resource_monitor",
                 namespace=namespace, output="screen", parameters=[parameters])]


def generate_launch_description() -> LaunchDescription:
    """Arguments: namespace, params_file, backend, mission_file."""
    return LaunchDescription([
        DeclareLaunchArgument("namespace", default_value="tnn", description="namespace of the node"),
        DeclareLaunchArgument("params_file", default_value="", description="extra parameter YAML"),
        DeclareLaunchArgument("backend", default_value="",
                              description="auto | jtop | psutil | sim | trace (empty: from the YAML)"),
        DeclareLaunchArgument("mission_file", default_value="",
                              description="mission YAML for the sim backend, e.g. mission_demo.yaml"),
        OpaqueFunction(function=launch_nodes),
    ])
