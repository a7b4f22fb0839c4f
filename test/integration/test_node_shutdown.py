"""SIGINT / SIGTERM end the node executables with exit code 0 and without shutdown noise.

Covers the start-up window (a signal while the node still imports / builds itself) and repeated
signals during shutdown (the terminal and ``ros2 launch`` both send one), with frames in flight.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

NOISE = (
    "Traceback",
    "context is invalid",
    "never retrieved",
    "Failed to publish log message",
    "KeyboardInterrupt",
)


def executable(name: str) -> str:
    path = Path(sys.executable).with_name(name)
    if not path.exists():
        pytest.skip(f"console script {name} not installed (make setup)")
    return str(path)


def start(args, env, log):
    return subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_for(path: Path, text: str, process, timeout_s: float) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end and process.poll() is None:
        if text in path.read_text(errors="replace"):
            return True
        time.sleep(0.2)
    return text in path.read_text(errors="replace")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_start_up_exits_zero(sig, ros_env, tmp_path):
    log_path = tmp_path / "controller.log"
    with open(log_path, "w") as log:
        process = start([executable("controller")], ros_env, log)
        time.sleep(0.5)  # still importing rclpy / building the node
        os.killpg(process.pid, sig)
        code = process.wait(timeout=60)
    output = log_path.read_text(errors="replace")
    assert code == 0, output
    assert not [n for n in NOISE if n in output], output


def test_repeated_sigint_with_frames_in_flight_exits_zero(ros_env, tmp_path):
    log_path = tmp_path / "bringup.log"
    env = dict(ros_env, RCUTILS_LOGGING_BUFFERED_STREAM="0")
    with open(log_path, "w") as log:
        process = start(
            [executable("bringup"), "--backend", "sim", "--namespace", "shutdown_check"], env, log
        )
        try:
            assert wait_for(log_path, "active: processing frames", process, 180.0), log_path.read_text(
                errors="replace"
            )
            time.sleep(3.0)  # frames flowing through perception, timers publishing
            for _ in range(3):  # terminal + launch + an impatient user
                os.killpg(process.pid, signal.SIGINT)
                time.sleep(0.05)
            code = process.wait(timeout=60)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    output = log_path.read_text(errors="replace")
    assert code == 0, output
    assert "stopping after" in output
    assert not [n for n in NOISE if n in output], output
