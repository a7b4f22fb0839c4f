"""Helpers the launch files share: which launch arguments the user passed, as parameter values.

Parameter precedence (the same in every launch file and in ``bringup``; docs/launch.md):

1. the shipped ``config/<node>.yaml`` (the package's share directory or source tree),
2. the user's ``params_file`` (layered on top, never replacing the shipped file),
3. launch arguments the user actually passed on the command line.

Every parameter-setting launch argument therefore defaults to the empty string, meaning "not passed":
an unset argument never overrides a file. This module does not import ``launch`` at import time, so
the parsing rules are unit-testable without a ROS install.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import yaml

NOT_PASSED = ""
TRUE_WORDS = ("true", "1", "yes", "on")


def parse_argument_value(text: str) -> Any:
    """A launch argument string as a ROS parameter value, read like a YAML scalar (as launch_ros does).

    ``"5.0"`` -> 5.0, ``"320"`` -> 320, ``"true"`` -> True, ``"manual"`` -> "manual". Anything that
    is not a plain scalar (a list, a mapping, unparsable text) stays the string given.
    """
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (bool, int, float, str)) else text


def passed_overrides(arguments: Mapping[str, str]) -> dict[str, Any]:
    """The arguments the user passed (non-empty), parsed; unset (empty) ones are left out."""
    return {
        name: parse_argument_value(text)
        for name, text in arguments.items()
        if text is not None and text.strip() != NOT_PASSED
    }


def is_true(text: str) -> bool:
    """A launch argument's truth value (true | 1 | yes | on, any case)."""
    return text.strip().lower() in TRUE_WORDS


def performed(context, names: Iterable[str]) -> dict[str, str]:
    """The values of launch arguments ``names`` in a launch ``context`` (inside an OpaqueFunction)."""
    from launch.substitutions import LaunchConfiguration

    return {name: LaunchConfiguration(name).perform(context) for name in names}


def respawn_options(context) -> dict[str, Any]:
    """``respawn`` / ``respawn_delay`` keyword arguments for a launch_ros Node from the arguments."""
    values = performed(context, ("respawn", "respawn_delay"))
    return {"respawn": is_true(values["respawn"]), "respawn_delay": float(values["respawn_delay"] or 0.0)}


def common_arguments(node_description: str) -> list:
    """DeclareLaunchArgument actions every launch file has: namespace, params_file, respawn."""
    from launch.actions import DeclareLaunchArgument

    return [
        DeclareLaunchArgument("namespace", default_value="tnn", description=node_description),
        DeclareLaunchArgument(
            "params_file",
            default_value="",
            description="ROS 2 parameter YAML layered on top of the shipped "
            "config/<node>.yaml (launch arguments passed win over both)",
        ),
        DeclareLaunchArgument(
            "respawn",
            default_value="false",
            description="restart a node that exits or crashes (true | false)",
        ),
        DeclareLaunchArgument(
            "respawn_delay", default_value="1.0", description="seconds to wait before a respawn"
        ),
    ]


def override_argument(name: str, description: str) -> Any:
    """A DeclareLaunchArgument for a parameter override: empty default = not passed, the files decide."""
    from launch.actions import DeclareLaunchArgument

    return DeclareLaunchArgument(
        name, default_value=NOT_PASSED, description=f"{description} (unset: from the parameter files)"
    )


def single_node_launch(node: str, overrides: Sequence[tuple[str, str]]) -> Any:
    """The LaunchDescription of a per-node launch file for a plain (non-lifecycle) node.

    Arguments: the common ones, then one per ``(parameter, description)`` in ``overrides``; the node's
    parameters are merged as everywhere: shipped YAML < ``params_file`` < arguments actually passed.
    """
    from launch.actions import OpaqueFunction
    from launch_ros.actions import Node

    from launch import LaunchDescription
    from tnn_ros.nodes.params import resolve_node_parameters

    def launch_node(context, *args, **kwargs):
        arg = performed(context, ("namespace", "params_file"))
        passed = passed_overrides(performed(context, [name for name, _ in overrides]))
        parameters = resolve_node_parameters(node, arg["namespace"], arg["params_file"], passed)
        return [
            Node(
                package="tnn_ros",
                executable=node,
                name=node,
                namespace=arg["namespace"],
                output="screen",
                parameters=[parameters],
                **respawn_options(context),
            )
        ]

    return LaunchDescription(
        common_arguments("namespace of the node")
        + [override_argument(name, description) for name, description in overrides]
        + [OpaqueFunction(function=launch_node)]
    )
