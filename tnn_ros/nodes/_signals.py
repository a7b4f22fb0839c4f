"""The process-wide stop request of a node executable: SIGINT / SIGTERM set a flag, never raise.

Installed as early as possible (see tnn_ros/nodes/__init__.py) and read by the spin loop
(:mod:`tnn_ros.nodes._spin`). Signal handlers can only be installed from the main thread.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)

stop_event = threading.Event()
signal_name = ""
_previous: dict = {}
# True in a node executable (set by tnn_ros/nodes/__init__.py), False when nodes run inside a test.
executable = False


def _handle(signum: int, frame) -> None:
    global signal_name
    if not stop_event.is_set():
        signal_name = signal.Signals(signum).name
    stop_event.set()  # repeated signals (launch and the terminal both send one) change nothing


def install() -> threading.Event:
    """Route SIGINT / SIGTERM to :data:`stop_event` (idempotent); returns the event."""
    if not _previous and threading.current_thread() is threading.main_thread():
        _previous.update({sig: signal.signal(sig, _handle) for sig in SIGNALS})
    return stop_event


def is_installed() -> bool:
    return bool(_previous)


def restore() -> None:
    """Put the previous handlers back and clear the request (in-process callers such as tests)."""
    global signal_name
    for sig, handler in _previous.items():
        signal.signal(sig, handler)
    _previous.clear()
    stop_event.clear()
    signal_name = ""


def finish(code: int) -> int:
    """End a node executable right away with ``code`` once rclpy is shut down; returns ``code`` otherwise.

    Interpreter finalization after torch was imported took 4 s on a loaded 2-core machine (measured
    on sim_camera after SIGINT), past ``ros2 launch``'s 5 s SIGINT-to-SIGTERM escalation under more
    load; and finalization resets the signal handlers, so that SIGTERM then killed the process (exit
    code -15). Everything ROS is released by now, so the process skips finalization.
    """
    if not executable:
        return code
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
