"""The shared ``main()`` body of the node executables: init, build, spin until Ctrl-C, shut down."""

from __future__ import annotations

import sys
from collections.abc import Callable

import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node


def run_node(make_node: Callable[[], Node], args: list[str] | None = None) -> int:
    """Run one node until Ctrl-C or an external shutdown.

    Returns 0 after a clean stop and 2 when the node refuses its start-up parameters (the reason
    goes to stderr, without a traceback).
    """
    rclpy.init(args=args)
    try:
        node = make_node()
    except (ValueError, ParameterException) as error:
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
