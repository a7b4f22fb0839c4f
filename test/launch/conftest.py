"""Fixtures for the tests that run the launch files under the real ROS 2 ``launch``.

They need ``launch``, ``launch_ros``, ``launch_testing`` and ``ros2launch``: a ROS 2 install (then its
own launch is used) or the upstream wheels that ``make setup`` installs from ../shared/ros2-cli-wheels
when that folder exists. Without them every test here is skipped with that reason. The package is
built with colcon from a copy of the checkout into a temporary prefix, once per session.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from colcon_utils import colcon_build_copy, colcon_executable

REPO = Path(__file__).resolve().parents[2]
REQUIRED = ("launch", "launch_ros", "launch_testing", "ros2launch", "ros2cli")
RESTORE_SIGINT_AND_EXEC = (
    "import os, signal, sys\n"
    "signal.signal(signal.SIGINT, signal.SIG_DFL)\n"
    "os.execvp(sys.argv[1], sys.argv[1:])"
)


def missing_launch_modules() -> list[str]:
    return [name for name in REQUIRED if importlib.util.find_spec(name) is None]


@pytest.fixture(scope="session")
def colcon_install(tmp_path_factory) -> Path:
    """``colcon build`` of a copy of the checkout; returns the install prefix (holds setup.bash)."""
    missing = missing_launch_modules()
    if missing:
        pytest.skip(
            f"the real ROS 2 launch is not installed (missing {', '.join(missing)}): source a "
            "ROS 2 install, or run `make setup` with ../shared/ros2-cli-wheels present"
        )
    colcon = colcon_executable()
    if not colcon:
        pytest.skip("colcon is not installed (make setup installs it)")
    work = colcon_build_copy(colcon, tmp_path_factory.mktemp("launch_colcon"), timeout=300)
    assert (work / "install" / "setup.bash").is_file(), "no install/setup.bash (colcon-bash missing?)"
    return work / "install"


@pytest.fixture
def launch_env(colcon_install, ros_env) -> dict:
    """The test environment plus what ``source install/setup.bash`` sets (AMENT_PREFIX_PATH, PATH, ...)."""
    env = dict(ros_env, PATH=f"{Path(sys.executable).parent}:{ros_env.get('PATH', '')}")
    dump = subprocess.run(
        ["bash", "-c", f"source '{colcon_install}/setup.bash' && env -0"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    sourced = dict(line.split("=", 1) for line in dump.split("\0") if "=" in line)
    sourced["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    sourced["ROS_DOMAIN_ID"] = ros_env["ROS_DOMAIN_ID"]
    return sourced


class LaunchProcess:
    """``ros2 launch ...`` in its own process group (like a terminal), output collected to a file."""

    def __init__(self, args: list[str], env: dict, log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "w")
        # As from a terminal: SIGINT at its default. A test runner started with SIGINT ignored (a
        # background job) would pass that on to launch and, through respawned nodes, keep Ctrl-C from
        # stopping it; exec keeps the pid.
        self.process = subprocess.Popen(
            [sys.executable, "-c", RESTORE_SIGINT_AND_EXEC, "ros2", "launch", *args],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout_s: float, count: int = 1) -> bool:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self.output().count(text) >= count:
                return True
            if self.process.poll() is not None:
                return False
            time.sleep(0.2)
        return self.output().count(text) >= count

    def ctrl_c(self, timeout_s: float = 40.0) -> int:
        """SIGINT to the whole process group, as a terminal's Ctrl-C does; returns launch's exit code."""
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            return self.process.wait(timeout=timeout_s)
        finally:
            self.close()

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self._log.close()


@pytest.fixture
def ros2_launch(launch_env, tmp_path):
    """Start ``ros2 launch`` processes; anything left running is killed at the end of the test."""
    started: list[LaunchProcess] = []

    def start(*args: str) -> LaunchProcess:
        launched = LaunchProcess(list(args), launch_env, tmp_path / f"launch_{len(started)}.log")
        started.append(launched)
        return launched

    yield start
    for launched in started:
        launched.close()
