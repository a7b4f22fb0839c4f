"""ROS domain ids for tests, unique on this machine: a lock file per id, held while in use.

Imported by conftest.py before anything imports rclpy, and by tests that need a domain of their
own for a module-scoped fixture (``allocate_domain_id`` / ``release_domain_id``).
"""

from __future__ import annotations

import fcntl
import os
import random
import tempfile
from pathlib import Path

# Domain ids 1..101 are the ones every RMW maps to ports clear of Linux's ephemeral range.
_DOMAIN_IDS = range(1, 102)
_LOCK_DIR = Path(tempfile.gettempdir()) / "tnn_ros_test_domains"
_held_locks: dict[int, int] = {}  # domain id -> open lock file descriptor (kept for the process)


def _try_lock(domain_id: int) -> bool:
    """Take the machine-wide lock of ``domain_id``; False if another process holds it."""
    _LOCK_DIR.mkdir(mode=0o777, exist_ok=True)
    fd = os.open(_LOCK_DIR / f"{domain_id}.lock", os.O_CREAT | os.O_RDWR, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    _held_locks[domain_id] = fd
    return True


def allocate_domain_id() -> int:
    """A ROS domain id no other process of any test run on this machine holds (held until released)."""
    candidates = [d for d in _DOMAIN_IDS if d not in _held_locks]
    random.SystemRandom().shuffle(candidates)  # unlocked old-style runs rarely pick the same one
    for domain_id in candidates:
        if _try_lock(domain_id):
            return domain_id
    raise RuntimeError(
        f"all ROS domain ids {_DOMAIN_IDS.start}..{_DOMAIN_IDS.stop - 1} are in use "
        f"by other test runs (locks in {_LOCK_DIR})"
    )


def release_domain_id(domain_id: int) -> None:
    """Give ``domain_id`` back (closing the lock file drops the lock)."""
    fd = _held_locks.pop(domain_id, None)
    if fd is not None:
        os.close(fd)  # closing drops the flock


def lock_forced_domain_id(domain_id: int) -> None:
    """Best effort lock of a forced id (TNN_TEST_DOMAIN_ID): keeps this run's own per-test ids off it."""
    _try_lock(domain_id)
