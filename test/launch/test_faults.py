"""Faults under ``ros2 launch ... respawn:=true``: nodes killed with SIGKILL mid-run come back, and the
system degrades the documented way meanwhile (docs/launch.md, "Restarts").

One launch, faults in sequence (the perception start-up dominates the cost):
controller killed -> perception falls back to its safe_utilization once the setpoint is older than
its stale_timeout_s, and follows the controller again after the respawn; resource_monitor killed ->
the controller goes to safe mode (its safe_utilization) and recovers; the camera killed -> no frames,
then frames again; perception killed -> detections stop and resume after its respawn.
"""

import json
import os
import signal
import time

import pytest
import yaml

from ros_utils import RosHarness

pytestmark = pytest.mark.integration

NS = "fault_check"
# Utilizations that are exact levels of the 8-level schedule, so the applied value is unambiguous.
NORMAL_U, PERCEPTION_SAFE_U, CONTROLLER_SAFE_U = 1.0, 0.5, 0.25
PARAMS = {
    "/**/sim_camera": {"ros__parameters": {"fps": 8.0, "width": 160, "height": 120}},
    "/**/perception": {
        "ros__parameters": {
            "stale_timeout_s": 1.0,
            "safe_utilization": PERCEPTION_SAFE_U,
            "gesture": {"enabled": False},
        }
    },
    "/**/controller": {
        "ros__parameters": {
            "strategy": "rule",
            "max_utilization": NORMAL_U,
            "stale_timeout_s": 1.0,
            "safe_utilization": CONTROLLER_SAFE_U,
        }
    },
    "/**/resource_monitor": {"ros__parameters": {"backend": "sim", "rate_hz": 5.0}},
}


def node_pid(launch_pid: int, executable: str) -> int:
    """The pid of one node process started by the launch (matched by its executable path)."""
    import psutil

    for child in psutil.Process(launch_pid).children(recursive=True):
        try:
            command = child.cmdline()
        except psutil.NoSuchProcess:
            continue
        if len(command) > 1 and command[1].endswith(f"/lib/tnn_ros/{executable}"):
            return child.pid
    raise AssertionError(f"no {executable} process under launch pid {launch_pid}")


class Answers:
    """detections/json as received; ``mark()`` is a position, ``since(mark)`` the utilizations after it."""

    def __init__(self, ros: RosHarness) -> None:
        from std_msgs.msg import String

        self.raw = ros.collect(f"/{NS}/detections/json", String)

    def mark(self) -> int:
        return len(self.raw)

    def since(self, mark: int) -> list[float]:
        return [json.loads(m.data)["utilization"] for m in list(self.raw[mark:])]


def wait_for_utilization(ros, answers, start, value, timeout_s):
    return ros.wait_for(lambda: any(abs(u - value) < 1e-6 for u in answers.since(start)), timeout_s)


def test_kill_and_respawn_every_node(ros2_launch, tmp_path):
    params = tmp_path / "faults.yaml"
    params.write_text(yaml.safe_dump(PARAMS))
    launch = ros2_launch(
        "tnn_ros",
        "tnn.launch.py",
        f"namespace:={NS}",
        "use_sim_camera:=true",
        f"params_file:={params}",
        "respawn:=true",
        "respawn_delay:=4.0",
    )
    pid = launch.process.pid
    with RosHarness("fault_observer") as ros:
        answers = Answers(ros)
        start = answers.mark()
        assert wait_for_utilization(ros, answers, start, NORMAL_U, 240.0), launch.output()[-4000:]

        # controller down: perception falls back to its own safe utilization, then follows again
        start = answers.mark()
        os.kill(node_pid(pid, "controller"), signal.SIGKILL)
        assert wait_for_utilization(ros, answers, start, PERCEPTION_SAFE_U, 30.0), launch.output()[-4000:]
        assert launch.wait_for_output("process started with pid", 60.0, count=5)  # the respawn
        back = answers.mark()
        assert wait_for_utilization(ros, answers, back, NORMAL_U, 60.0), launch.output()[-4000:]

        # resource_monitor down: the controller's inputs go stale -> its safe mode, then recovery
        start = answers.mark()
        os.kill(node_pid(pid, "resource_monitor"), signal.SIGKILL)
        assert wait_for_utilization(ros, answers, start, CONTROLLER_SAFE_U, 30.0), launch.output()[-4000:]
        assert launch.wait_for_output("process started with pid", 60.0, count=6)
        back = answers.mark()
        assert wait_for_utilization(ros, answers, back, NORMAL_U, 60.0), launch.output()[-4000:]

        # camera stops and restarts: answers stop, then come again
        os.kill(node_pid(pid, "sim_camera"), signal.SIGKILL)
        time.sleep(1.0)
        quiet = answers.mark()
        assert launch.wait_for_output("process started with pid", 60.0, count=7)
        assert ros.wait_for(lambda: len(answers.since(quiet)) >= 3, 120.0), launch.output()[-4000:]

        # perception killed and respawned: a new process answers again
        old = node_pid(pid, "perception")
        os.kill(old, signal.SIGKILL)
        assert launch.wait_for_output("process started with pid", 60.0, count=8)
        assert node_pid(pid, "perception") != old
        again = answers.mark()
        assert ros.wait_for(lambda: len(answers.since(again)) >= 3, 240.0), launch.output()[-4000:]

    code = launch.ctrl_c()
    output = launch.output()
    assert code == 0, output[-4000:]
    assert output.count("exit code -9") == 4, output[-4000:]  # only the four processes killed here
    for noise in ("exit code -2", "exit code -15", "never retrieved", "context is invalid"):
        assert noise not in output, output[-4000:]
