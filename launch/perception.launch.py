"""Perception node alone: ``ros2 launch tnn_ros perception.launch.py image:=/camera/image_raw``.

The node configures and activates itself (auto_activate); pass ``auto_activate:=false`` to leave it
to a lifecycle manager. Parameters: config/perception.yaml, then ``params_file``, then the ``mode`` /
``auto_activate`` arguments if passed (docs/launch.md).
"""

from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch_ros.actions import LifecycleNode

from launch import LaunchDescription

OVERRIDES = (
    ("mode", "auto | manual"),
    ("auto_activate", "configure and activate at start-up (true | false)"),
)


def launch_nodes(context, *args, **kwargs):
    """The perception lifecycle node with its merged parameters."""
    from tnn_ros.nodes.launch_args import passed_overrides, performed, respawn_options
    from tnn_ros.nodes.params import resolve_node_parameters

    arg = performed(context, ("namespace", "params_file", "image"))
    overrides = passed_overrides(performed(context, [name for name, _ in OVERRIDES]))
    parameters = resolve_node_parameters("perception", arg["namespace"], arg["params_file"], overrides)
    return [
        LifecycleNode(
            package="tnn_ros",
            executable="perception",
            name="perception",
            namespace=arg["namespace"],
            output="screen",
            parameters=[parameters],
            remappings=[("image", arg["image"])],
            **respawn_options(context),
        )
    ]


def generate_launch_description() -> LaunchDescription:
    """Arguments: namespace, params_file, respawn, respawn_delay, image, mode, auto_activate."""
    from tnn_ros.nodes.launch_args import common_arguments, override_argument

    return LaunchDescription(
        common_arguments("namespace of the node")
        + [DeclareLaunchArgument("image", default_value="image", description="camera image topic")]
        + [override_argument(name, description) for name, description in OVERRIDES]
        + [OpaqueFunction(function=launch_nodes)]
    )
