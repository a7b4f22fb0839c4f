"""The shared ``main()`` body of the node executables: init, build, spin until Ctrl-C, shut down.

Shutdown order matters for a clean exit under ``ros2 launch``: rclpy's own SIGINT handler invalidates
the context the moment the signal arrives, so a worker thread or timer that is mid-publish fails
("publisher's context is invalid", "Failed to publish log message to rosout"), and a second SIGINT
(the terminal signals the whole process group, then ``ros2 launch`` signals each node again) raises
KeyboardInterrupt inside the cleanup, which ends the process with exit code -2. So the executables
install their own SIGINT/SIGTERM handler that only *requests* a stop; the spin loop sees the request,
the node is destroyed (perception stops its worker first) while the context is still valid, and only
then is rclpy shut down. Further signals during that cleanup are ignored.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterable

import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import Executor, ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from tnn_ros.nodes import _signals

# How often the spin loop looks at a stop request (a signal handler runs between two waits).
STOP_POLL_S = 0.1
EXIT_OK, EXIT_BAD_PARAMETERS = 0, 2


def spin_until_stopped(executor: Executor, stop: threading.Event, timeout_s: float | None = None) -> None:
    """Spin ``executor`` until ``stop`` is set, rclpy shuts down or ``timeout_s`` passes."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    context = executor.context
    while not stop.is_set() and context.ok():
        if deadline is not None and time.monotonic() >= deadline:
            return
        executor.spin_once(timeout_sec=STOP_POLL_S)


def shutdown_nodes(executor: Executor, nodes: Iterable[Node]) -> None:
    """Destroy ``nodes`` (in the order given) while the context is valid, then shut rclpy down."""
    for node in nodes:
        try:
            executor.remove_node(node)
        except Exception:  # already removed / executor shut down: nothing to undo
            pass
        node.destroy_node()
    executor.shutdown(timeout_sec=2.0)
    rclpy.try_shutdown()


def run_node(make_node: Callable[[], Node], args: list[str] | None = None) -> int:
    """Run one node until Ctrl-C / SIGTERM or an external shutdown.

    Returns 0 after a clean stop (also when the stop request came during start-up) and 2 when the
    node refuses its start-up parameters (the reason goes to stderr, without a traceback).
    """
    stop = _signals.install()
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    try:
        node = make_node()
    except (ValueError, ParameterException) as error:
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        rclpy.try_shutdown()
        return _signals.finish(EXIT_BAD_PARAMETERS)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        spin_until_stopped(executor, stop)
    except ExternalShutdownException:
        pass
    finally:
        if _signals.signal_name:
            node.get_logger().info(f"{_signals.signal_name}: shutting down")
        shutdown_nodes(executor, [node])
    return _signals.finish(EXIT_OK)
