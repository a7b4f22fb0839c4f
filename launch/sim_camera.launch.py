"""Simulated camera: ``ros2 launch tnn_ros sim_camera.launch.py fps:=15.0 width:=320 height:=240``.

Parameters: config/sim_camera.yaml, then ``params_file``, then the ``fps`` / ``width`` / ``height`` /
``encoding`` arguments if passed (docs/launch.md).
"""

OVERRIDES = (
    ("fps", "frames per second"),
    ("width", "frame width in pixels"),
    ("height", "frame height in pixels"),
    ("encoding", "rgb8 | bgr8 | mono8 | ..."),
)


def generate_launch_description():
    """Arguments: namespace, params_file, respawn, respawn_delay, fps, width, height, encoding."""
    from tnn_ros.nodes.launch_args import single_node_launch

    return single_node_launch("sim_camera", OVERRIDES)
