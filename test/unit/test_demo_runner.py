"""Demo plumbing without ROS: child-process groups, the environment, bringup's parameter file."""

import os
import signal
import sys
import time

import pytest
import yaml

from tnn_ros.demo.processes import ManagedProcess, wait_until
from tnn_ros.demo.runner import DemoError, DemoOptions, DemoRunner, RunSpec, demo_environment


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); it is gone for our purposes
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_stop_takes_down_the_whole_process_group_including_grandchildren(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    # the child ignores SIGINT and SIGTERM and starts a grandchild that does the same
    script = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN); signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
        "signal.signal(signal.SIGINT, signal.SIG_IGN); signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "time.sleep(60)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(60)\n"
    )
    process = ManagedProcess(
        "stubborn", [sys.executable, "-c", script], dict(os.environ), tmp_path / "log.txt"
    )
    assert wait_until(pid_file.exists, 20.0)
    time.sleep(0.2)
    grandchild = int(pid_file.read_text())
    started = time.monotonic()
    code = process.stop(interrupt_timeout_s=0.5, terminate_timeout_s=0.5)
    assert code == -signal.SIGKILL
    assert time.monotonic() - started < 30.0  # not the child's 60 s sleep: it was killed
    assert wait_until(lambda: not _alive(grandchild), 5.0), "grandchild survived"


def test_stop_lets_a_cooperative_child_exit_on_sigint(tmp_path):
    # A cooperative child handles SIGINT itself (as the node executables do): Python leaves SIGINT
    # ignored when the test runner was started with it ignored (a background job), so install it.
    script = (
        "import signal, time\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "try:\n    time.sleep(60)\nexcept KeyboardInterrupt:\n    print('bye')\n"
    )
    process = ManagedProcess(
        "polite", [sys.executable, "-u", "-c", script], dict(os.environ), tmp_path / "polite.log"
    )
    time.sleep(0.5)
    assert process.poll() is None
    assert process.stop() == 0
    assert "bye" in process.log_tail()


def test_demo_environment_is_loopback_only_and_keeps_a_given_domain():
    env = demo_environment({"ROS_DOMAIN_ID": "42", "ROS_STATIC_PEERS": "10.0.0.1", "PATH": "/bin"})
    assert env["ROS_DOMAIN_ID"] == "42"
    assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert "ROS_STATIC_PEERS" not in env
    chosen = demo_environment({"PATH": "/bin"})
    assert 1 <= int(chosen["ROS_DOMAIN_ID"]) <= 100


def test_bringup_gets_the_mission_and_the_run_strategy_through_a_params_file(tmp_path):
    user = tmp_path / "user.yaml"
    user.write_text(yaml.safe_dump({"/**/perception": {"ros__parameters": {"score_threshold": 0.4}}}))
    runner = DemoRunner(DemoOptions(duration_s=30.0, output=tmp_path / "out", params_file=str(user)))
    spec = RunSpec("static_full", "manual", manual_windows=False, record_images=False, fixed_utilization=1.0)
    params_file = runner._params_file(spec)
    command = runner._bringup_command(spec, params_file)
    assert command[command.index("--params-file") + 1] == str(params_file)
    assert "--no-sim-camera" in command  # the camera runs in its own process
    camera = runner._camera_command(params_file)
    assert camera[-1] == str(params_file) and "__ns:=/tnn" in camera
    # perception runs in its own process too (no other node's callbacks compete for its GIL)
    assert "--no-perception" in command
    perception = runner._perception_command(params_file)
    assert perception[perception.index("-m") + 1] == "tnn_ros.nodes.perception"
    assert perception[-1] == str(params_file) and "__ns:=/tnn" in perception
    assert perception[-3].endswith("perception.yaml")  # shipped defaults first, the run's file on top
    params = yaml.safe_load(params_file.read_text())
    perception = params["/**/perception"]["ros__parameters"]
    assert perception["score_threshold"] == 0.4
    assert 1 <= perception["num_threads"] <= 2  # never more torch threads than free cores
    monitor = params["/**/resource_monitor"]["ros__parameters"]
    assert monitor["backend"] == "sim" and monitor["mission_duration_s"] == 30.0
    assert monitor["mission_file"].endswith("mission_demo.yaml")
    assert monitor["mission_start"] == "first_frame"  # the demo's clock starts at the first measured frame
    assert params["/**/controller"]["ros__parameters"] == {"strategy": "manual", "manual_utilization": 1.0}
    assert command[command.index("--strategy") + 1] == "manual"
    # the camera holds frame 0 until the recorder matched its ground truth
    assert params["/**/sim_camera"]["ros__parameters"] == {"wait_for_subscribers": True}


def test_bad_options_are_refused_early(tmp_path):
    with pytest.raises(DemoError):
        DemoRunner(DemoOptions(duration_s=0.0, output=tmp_path))
    with pytest.raises(FileNotFoundError):
        DemoRunner(DemoOptions(mission="no_such_mission.yaml", output=tmp_path))
    with pytest.raises(DemoError, match="mission_start"):
        DemoRunner(DemoOptions(mission_start="later", output=tmp_path))
