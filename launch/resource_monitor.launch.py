"""The resource monitor alone: ``ros2 launch tnn_ros resource_monitor.launch.py backend:=jtop``.

Parameters: config/resource_monitor.yaml, then ``params_file``, then ``backend`` / ``mission_file`` /
``rate_hz`` if passed (docs/launch.md).
"""

OVERRIDES = (
    ("backend", "auto | jtop | psutil | sim | trace"),
    ("mission_file", "mission YAML for the sim backend, e.g. mission_demo.yaml"),
    ("rate_hz", "publish rate of the readings"),
)


def generate_launch_description():
    """Arguments: namespace, params_file, respawn, respawn_delay, backend, mission_file, rate_hz."""
    from tnn_ros.nodes.launch_args import single_node_launch

    return single_node_launch("resource_monitor", OVERRIDES)
