"""The controller alone: ``ros2 launch tnn_ros controller.launch.py strategy:=deadline``.

Parameters: config/controller.yaml, then ``params_file``, then ``strategy`` / ``rate_hz`` if passed
(docs/launch.md).
"""

OVERRIDES = (("strategy", "manual | rule | deadline | auto | learned"), ("rate_hz", "setpoint publish rate"))


def generate_launch_description():
    """Arguments: namespace, params_file, respawn, respawn_delay, strategy, rate_hz."""
    from tnn_ros.nodes.launch_args import single_node_launch

    return single_node_launch("controller", OVERRIDES)
