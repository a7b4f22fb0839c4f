"""The controller alone: ``ros2 launch tnn_ros controller.launch.py strategy:=deadline``.

Parameters: config/controller.yaml, then ``params_file``, then ``strategy`` / ``rate_hz`` if passed
(docs/launch.md).
"""

from launch.actions import OpaqueFunction
from launch_ros.actions import Node

from launch import LaunchDescription

OVERRIDES = (("strategy", "manual | rule | deadline | auto | learned"), ("rate_hz", "setpoint publish rate"))


def launch_nodes(context, *args, **kwargs):
    """The controller node with its merged parameters."""
    from tnn_ros.nodes.launch_args import passed_overrides, performed, respawn_options
    from tnn_ros.nodes.params import resolve_node_parameters

    arg = performed(context, ("namespace", "params_file"))
    overrides = passed_overrides(performed(context, [name for name, _ in OVERRIDES]))
    parameters = resolve_node_parameters("controller", arg["namespace"], arg["params_file"], overrides)
    return [
        Node(
            package="tnn_ros",
            executable="controller",
            name="controller",
            namespace=arg["namespace"],
            output="screen",
            parameters=[parameters],
            **respawn_options(context),
        )
    ]


def generate_launch_description() -> LaunchDescription:
    """Arguments: namespace, params_file, respawn, respawn_delay, strategy, rate_hz."""
    from tnn_ros.nodes.launch_args import common_arguments, override_argument

    return LaunchDescription(
        common_arguments("namespace of the node")
        + [override_argument(name, description) for name, description in OVERRIDES]
        + [OpaqueFunction(function=launch_nodes)]
    )
