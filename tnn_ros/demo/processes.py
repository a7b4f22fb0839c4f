"""Child processes that never outlive the demo.

Each child runs in its own session (so its own process group): stopping it signals the whole group
(SIGINT first so recorders close their bags, then SIGTERM, then SIGKILL). Every started group is
also killed from an ``atexit`` hook, so an exception or a second Ctrl-C leaves nothing behind.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import IO

_LIVE: set["ManagedProcess"] = set()


def _kill_all_at_exit() -> None:
    for process in list(_LIVE):
        process.kill()


atexit.register(_kill_all_at_exit)


class ManagedProcess:
    """A child process in its own process group, with its output going to a log file."""

    def __init__(
        self,
        name: str,
        command: list[str],
        env: dict[str, str],
        log_path: str | Path,
        cwd: str | Path | None = None,
    ) -> None:
        self.name = name
        self.command = command
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log: IO[bytes] = self.log_path.open("wb")
        self.popen = subprocess.Popen(
            command,
            env=env,
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        _LIVE.add(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def poll(self) -> int | None:
        """Exit code, or None while running."""
        return self.popen.poll()

    def _signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.popen.pid, signum)  # the child is its group's leader (start_new_session)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, interrupt_timeout_s: float = 15.0, terminate_timeout_s: float = 5.0) -> int | None:
        """Stop the whole group: SIGINT, then SIGTERM, then SIGKILL; returns the exit code."""
        for signum, timeout in ((signal.SIGINT, interrupt_timeout_s), (signal.SIGTERM, terminate_timeout_s)):
            if self.popen.poll() is not None:
                break
            self._signal_group(signum)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                continue
        self.kill()
        return self.popen.returncode

    def kill(self) -> None:
        """SIGKILL the group (also any grandchildren still in it) and reap the child."""
        self._signal_group(signal.SIGKILL)
        if self.popen.poll() is None:
            try:
                self.popen.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                pass
        _LIVE.discard(self)
        if not self._log.closed:
            self._log.close()

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the child's output (for error messages)."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def wait_until(predicate, timeout_s: float, period_s: float = 0.1, abort=None) -> bool:
    """Poll ``predicate`` until true, ``timeout_s`` passes or ``abort()`` is true."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        if abort is not None and abort():
            return False
        time.sleep(period_s)
    return bool(predicate())
