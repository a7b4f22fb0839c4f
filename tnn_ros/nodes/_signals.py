"""The process-wide stop request of a node executable: SIGINT / SIGTERM set a flag, never raise.

Installed as early as possible (see tnn_ros/nodes/__init__.py) and read by the spin loop
(:mod:`tnn_ros.nodes._spin`). Signal handlers can only be installed from the main thread.
"""

from __future__ import annotations

import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)

stop_event = threading.Event()
signal_name = ""
_previous: dict = {}


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
