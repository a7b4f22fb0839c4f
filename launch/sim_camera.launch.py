"""Simulated camera: ``ros2 launch tnn_ros sim_camera.launch.py fps:=15.0 width:=320 height:=240``.

Parameters: config/sim_camera.yaml, then ``params_file``, then the ``fps`` / ``width`` / ``height`` /
``encoding`` arguments if passed (docs/launch.md).
"""

from launch.actions import OpaqueFunction
from launch_ros.actions import Node

from launch import LaunchDescription

OVERRIDES = (
    ("fps", "frames per second"),
    ("width", "frame width in pixels"),
    ("height", "frame height in pixels"),
    ("encoding", "rgb8 | bgr8 | mono8 | ..."),
)


def launch_nodes(context, *args, **kwargs):
    """The sim_camera node with its merged parameters."""
    from tnn_ros.nodes.launch_args import passed_overrides, performed, respawn_options
    from tnn_ros.nodes.params import resolve_node_parameters

    arg = performed(context, ("namespace", "params_file"))
    overrides = passed_overrides(performed(context, [name for name, _ in OVERRIDES]))
    parameters = resolve_node_parameters("sim_camera", arg["namespace"], arg["params_file"], overrides)
    return [
        Node(
            package="tnn_ros",
            executable="sim_camera",
            name="sim_camera",
            namespace=arg["namespace"],
            output="screen",
            parameters=[parameters],
            **respawn_options(context),
        )
    ]


def generate_launch_description() -> LaunchDescription:
    """Arguments: namespace, params_file, respawn, respawn_delay, fps, width, height, encoding."""
    from tnn_ros.nodes.launch_args import common_arguments, override_argument

    return LaunchDescription(
        common_arguments("namespace of the node")
        + [override_argument(name, description) for name, description in OVERRIDES]
        + [OpaqueFunction(function=launch_nodes)]
    )
