"""The whole tnn_ros system: perception, resource_monitor and controller (+ sim_camera).

    ros2 launch tnn_ros tnn.launch.py image:=/camera/image_raw
    ros2 launch tnn_ros tnn.launch.py use_sim_camera:=true backend:=sim strategy:=auto

Each node reads its shipped defaults (config/<node>.yaml), then ``params_file`` if given, then the
``backend`` / ``strategy`` arguments if given: the same merge as the one-process ``bringup``
(tnn_ros.nodes._params.resolve_node_parameters), so both read the same files the same way.
"""

from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node

from launch import LaunchDescription

ARGUMENTS = (
    ("namespace", "tnn", "namespace of every node"),
    ("image", "image", "camera image topic perception subscribes to (remap of its `image`)"),
    ("params_file", "", "ROS 2 parameter YAML applied on top of the shipped config/<node>.yaml"),
    ("backend", "", "resource_monitor backend: auto | jtop | psutil | sim | trace (empty: from the YAML)"),
    ("strategy", "", "controller strategy: manual | rule | deadline | auto (empty: from the YAML)"),
    ("use_sim_camera", "false", "also start the simulated camera (true | false)"),
)


def launch_nodes(context, *args, **kwargs):
    """Resolve the arguments and build the node actions (an OpaqueFunction: parameters are merged here)."""
    from tnn_ros.nodes._params import resolve_node_parameters

    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    namespace, params_file = arg("namespace"), arg("params_file")

    def parameters(node: str, overrides: dict | None = None) -> list:
        return [resolve_node_parameters(node, namespace, params_file, overrides)]

    nodes = [
        LifecycleNode(package="tnn_ros", executable="perception", name="perception", namespace=namespace,
                      output="screen", parameters=parameters("perception"),
                      remappings=[("image", arg("image"))]),
        Node(package="tnn_ros", executable="resource_monitor", name="resource_monitor", namespace=namespace,
             output="screen", parameters=parameters("resource_monitor", {"backend": arg("backend")})),
        Node(package="tnn_ros", executable="controller", name="controller", namespace=namespace,
             output="screen", parameters=parameters("controller", {"strategy": arg("strategy")})),
    ]
    if arg("use_sim_camera").strip().lower() in ("true", "1", "yes", "on"):
        nodes.insert(0, Node(package="tnn_ros", executable="sim_camera", name="sim_camera",
                             namespace=namespace, output="screen", parameters=parameters("sim_camera")))
    return nodes


def generate_launch_description() -> LaunchDescription:
    """Arguments: namespace, image, params_file, backend, strategy, use_sim_camera."""
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=description)
         for name, default, description in ARGUMENTS]
        + [OpaqueFunction(function=launch_nodes)])
