"""The whole tnn_ros system: perception, resource_monitor and controller (+ sim_camera).

    ros2 launch tnn_ros tnn.launch.py image:=/camera/image_raw
    ros2 launch tnn_ros tnn.launch.py use_sim_camera:=true backend:=sim strategy:=auto respawn:=true

Each node reads its shipped defaults (config/<node>.yaml), then ``params_file`` if given, then the
``backend`` / ``strategy`` / ``mode`` / ``fps`` arguments if passed: the same merge as the one-process
``bringup`` (tnn_ros.nodes.params.resolve_node_parameters); the order is documented in docs/launch.md.
"""

from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch_ros.actions import LifecycleNode, Node

from launch import LaunchDescription

# (argument, node, parameter, description): launch arguments that override one node's parameter.
OVERRIDES = (
    ("backend", "resource_monitor", "backend", "resource_monitor backend: auto, jtop, psutil, sim, trace"),
    ("strategy", "controller", "strategy", "controller strategy: manual | rule | deadline | auto | learned"),
    ("mode", "perception", "mode", "perception mode: auto | manual"),
    ("fps", "sim_camera", "fps", "sim_camera frames per second"),
)


def launch_nodes(context, *args, **kwargs):
    """Resolve the arguments and build the node actions (an OpaqueFunction: parameters are merged here)."""
    from tnn_ros.nodes.launch_args import is_true, passed_overrides, performed, respawn_options
    from tnn_ros.nodes.params import resolve_node_parameters

    arg = performed(context, ("namespace", "params_file", "image", "use_sim_camera"))
    passed = passed_overrides(performed(context, [name for name, *_ in OVERRIDES]))
    namespace, respawn = arg["namespace"], respawn_options(context)

    def parameters(node: str) -> list:
        overrides = {
            parameter: passed[name]
            for name, owner, parameter, _ in OVERRIDES
            if owner == node and name in passed
        }
        return [resolve_node_parameters(node, namespace, arg["params_file"], overrides)]

    nodes = [
        LifecycleNode(
            package="tnn_ros",
            executable="perception",
            name="perception",
            namespace=namespace,
            output="screen",
            parameters=parameters("perception"),
            remappings=[("image", arg["image"])],
            **respawn,
        ),
        Node(
            package="tnn_ros",
            executable="resource_monitor",
            name="resource_monitor",
            namespace=namespace,
            output="screen",
            parameters=parameters("resource_monitor"),
            **respawn,
        ),
        Node(
            package="tnn_ros",
            executable="controller",
            name="controller",
            namespace=namespace,
            output="screen",
            parameters=parameters("controller"),
            **respawn,
        ),
    ]
    if is_true(arg["use_sim_camera"]):
        nodes.insert(
            0,
            Node(
                package="tnn_ros",
                executable="sim_camera",
                name="sim_camera",
                namespace=namespace,
                output="screen",
                parameters=parameters("sim_camera"),
                **respawn,
            ),
        )
    return nodes


def generate_launch_description() -> LaunchDescription:
    """Arguments: namespace, params_file, respawn, respawn_delay, image, use_sim_camera + OVERRIDES."""
    from tnn_ros.nodes.launch_args import common_arguments, override_argument

    return LaunchDescription(
        common_arguments("namespace of every node")
        + [
            DeclareLaunchArgument(
                "image",
                default_value="image",
                description="camera image topic for perception (remap of `image`)",
            ),
            DeclareLaunchArgument(
                "use_sim_camera",
                default_value="false",
                description="also start the simulated camera (true | false)",
            ),
        ]
        + [override_argument(name, description) for name, _, _, description in OVERRIDES]
        + [OpaqueFunction(function=launch_nodes)]
    )
