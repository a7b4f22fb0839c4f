"""One-process bringup: sim camera, perception, resource monitor and controller on one executor.

For machines without a ROS install (pip-only): the same nodes as ``launch/tnn.launch.py``, reading the
same parameter files (``config/<node>.yaml`` defaults, then ``--params-file``, then the command line)::

    bringup [--params-file FILE] [--namespace tnn] [--backend sim] [--strategy auto]
            [--image TOPIC] [--no-sim-camera] [--no-perception] [--duration S] [--ros-args ...]

Ctrl-C or SIGTERM shuts every node down cleanly; ``--duration`` bounds the run (tests, demo).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Sequence

from tnn_ros.control.config import STRATEGIES

NODE_NAMES = ("sim_camera", "perception", "resource_monitor", "controller")
EXIT_OK, EXIT_USAGE, EXIT_MISSING_NODE = 0, 2, 3


class MissingNodeError(RuntimeError):
    """A node class that cannot be imported (e.g. the perception node is not installed)."""


def load_node_classes(names: Sequence[str]) -> dict[str, type]:
    """Import the node classes lazily so a missing or broken module gives one clear error."""
    where = {
        "sim_camera": ("tnn_ros.nodes.sim_camera", "SimCameraNode"),
        "perception": ("tnn_ros.nodes.perception", "PerceptionNode"),
        "resource_monitor": ("tnn_ros.nodes.resource_monitor", "ResourceMonitorNode"),
        "controller": ("tnn_ros.nodes.controller", "ControllerNode"),
    }
    import importlib

    classes = {}
    for name in names:
        module_name, class_name = where[name]
        try:
            classes[name] = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as error:
            raise MissingNodeError(
                f"cannot load the {name} node ({module_name}.{class_name}): {error}"
            ) from error
    return classes


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """Split our options from ROS arguments (everything from ``--ros-args`` on goes to rclpy)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    ros_args: list[str] = []
    if "--ros-args" in argv:
        index = argv.index("--ros-args")
        argv, ros_args = argv[:index], argv[index:]
    parser = argparse.ArgumentParser(prog="bringup", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--params-file", default="", help="ROS 2 parameter YAML applied on top of config/<node>.yaml"
    )
    parser.add_argument("--namespace", default="tnn", help="namespace of every node (default: tnn)")
    parser.add_argument(
        "--backend",
        default=None,
        choices=("auto", "jtop", "psutil", "sim", "trace"),
        help="resource_monitor backend (default: from the parameter files)",
    )
    parser.add_argument(
        "--strategy",
        default=None,
        choices=STRATEGIES,
        help="controller strategy (default: from the parameter files)",
    )
    parser.add_argument("--image", default="", help="image topic for perception (default: the sim camera's)")
    parser.add_argument("--no-sim-camera", action="store_true", help="do not start the simulated camera")
    parser.add_argument(
        "--no-perception",
        action="store_true",
        help="do not start perception (run it in its own process, where no other node's callbacks "
        "compete with its worker for the GIL)",
    )
    parser.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds")
    args = parser.parse_args(argv)
    if args.duration is not None and not args.duration > 0:
        parser.error(f"--duration must be > 0, got {args.duration}")
    return args, ros_args


def build_node_specs(args: argparse.Namespace) -> list[tuple[str, dict[str, Any], list[str]]]:
    """(node name, start-up parameters, extra ROS CLI args) per node to start, in start order."""
    from tnn_ros.nodes.params import resolve_node_parameters

    overrides = {"resource_monitor": {"backend": args.backend}, "controller": {"strategy": args.strategy}}
    specs = []
    for name in NODE_NAMES:
        if (name == "sim_camera" and args.no_sim_camera) or (name == "perception" and args.no_perception):
            continue
        parameters = resolve_node_parameters(name, args.namespace, args.params_file, overrides.get(name))
        cli = ["--ros-args", "-r", f"image:={args.image}"] if name == "perception" and args.image else []
        specs.append((name, parameters, cli))
    return specs


def main(argv: Sequence[str] | None = None) -> int:
    """Start the nodes, spin until Ctrl-C / SIGTERM / ``--duration``, shut down; returns the exit code."""
    args, ros_args = parse_args(argv)
    try:
        specs = build_node_specs(args)
        classes = load_node_classes([name for name, _, _ in specs])
    except MissingNodeError as error:
        print(f"bringup: {error}", file=sys.stderr)
        return EXIT_MISSING_NODE
    except ValueError as error:  # unreadable parameter file
        print(f"bringup: {error}", file=sys.stderr)
        return EXIT_USAGE

    import rclpy
    import rclpy.logging
    from rclpy.exceptions import NameValidationException, ParameterException
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
    from rclpy.parameter import Parameter
    from rclpy.signals import SignalHandlerOptions

    from tnn_ros.nodes import _signals
    from tnn_ros.nodes._spin import shutdown_nodes, spin_until_stopped

    # Our handler only requests the stop: the nodes are destroyed while the context is still valid
    # (see tnn_ros.nodes._spin), so no callback publishes into a shut-down context.
    installed_here = not _signals.is_installed()  # in-process callers (tests) get theirs back
    stop = _signals.install()
    rclpy.init(args=["bringup", *ros_args], signal_handler_options=SignalHandlerOptions.NO)
    executor = MultiThreadedExecutor()
    nodes = []
    code = EXIT_OK
    try:
        for name, parameters, cli in specs:
            node = classes[name](
                namespace=args.namespace,
                parameter_overrides=[Parameter(k, value=v) for k, v in parameters.items()],
                cli_args=cli or None,
            )
            nodes.append(node)
            executor.add_node(node)
        logger = rclpy.logging.get_logger("bringup")
        logger.info(
            f"{', '.join(n.get_fully_qualified_name() for n in nodes)} in one process"
            + (f" for {args.duration:g} s" if args.duration else "")
        )
        started = time.monotonic()
        spin_until_stopped(executor, stop, timeout_s=args.duration)
        logger.info(
            f"stopping after {time.monotonic() - started:.1f} s"
            + (f" ({_signals.signal_name})" if _signals.signal_name else "")
        )
    except ExternalShutdownException:
        pass
    except (ValueError, ParameterException, NameValidationException) as error:
        # a node rejected its start-up parameters (range, type, consistency) or the namespace
        print(f"bringup: {type(error).__name__}: {error}", file=sys.stderr)
        code = EXIT_USAGE
    finally:
        shutdown_nodes(executor, reversed(nodes))
        if installed_here:
            _signals.restore()
    return _signals.finish(code)


if __name__ == "__main__":
    sys.exit(main())
