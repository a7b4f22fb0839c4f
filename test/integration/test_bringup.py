"""One-process bringup: publishes, stops on SIGTERM / --duration, clear errors for missing nodes."""

import os
import re
import signal
import subprocess
import sys

import pytest
from sensor_msgs.msg import BatteryState
from std_msgs.msg import Float32, String

from tnn_ros.nodes import bringup

from ros_utils import RosHarness

pytestmark = pytest.mark.integration


def start(ros_env, *args):
    return subprocess.Popen(
        [sys.executable, "-m", "tnn_ros.nodes.bringup", *args],
        env=ros_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def stop(proc, timeout_s=20.0):
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def test_bringup_runs_the_loop_and_stops_cleanly_on_sigterm(ros_env):
    namespace = f"bringup_{os.getpid()}"
    proc = start(ros_env, "--namespace", namespace, "--backend", "sim", "--strategy", "rule")
    try:
        with RosHarness() as ros:
            setpoints = ros.collect(f"/{namespace}/utilization_setpoint", Float32)
            reasons = ros.collect(f"/{namespace}/controller/reason", String)
            battery = ros.collect(f"/{namespace}/battery", BatteryState)
            got = ros.wait_for(lambda: len(setpoints) >= 5 and len(battery) >= 2 and reasons, timeout_s=60.0)
            assert proc.poll() is None, f"bringup exited early:\n{proc.stdout.read()}"
            assert got, "no setpoints / battery from the bringup process"
            # battery, thermal and deadline arrive from the in-process monitor: no safe mode
            assert not reasons[-1].data.startswith("stale"), reasons[-1].data
        proc.send_signal(signal.SIGTERM)
        code = stop(proc)
        output = proc.stdout.read()
        assert code == 0, output
        assert "stopping after" in output
    finally:
        if proc.poll() is None:
            proc.kill()


def test_bringup_duration_bounds_the_run(ros_env):
    proc = start(
        ros_env,
        "--namespace",
        f"bringup_d_{os.getpid()}",
        "--duration",
        "1.5",
        "--no-sim-camera",
        "--backend",
        "sim",
    )
    code = stop(proc, timeout_s=90.0)
    output = proc.stdout.read()
    assert code == 0, output
    announced = output.index("in one process for 1.5 s")  # raises if the run was not announced
    stopped = re.search(r"stopping after ([0-9.]+) s", output)
    assert stopped and stopped.start() > announced, output
    # causality, not timing: it never stops before the duration; the upper bound only catches a
    # duration that was ignored (a scheduler hiccup on a busy machine is seconds, not a minute)
    assert 1.5 <= float(stopped.group(1)) < 1.5 + 60.0, output
    assert "sim_camera" not in output.split("in one process")[0].split("[bringup]:")[-1]


def test_missing_perception_node_gives_a_clear_error(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tnn_ros.nodes.perception", None)  # import raises ImportError
    code = bringup.main(["--duration", "1"])
    assert code == bringup.EXIT_MISSING_NODE
    error = capsys.readouterr().err
    assert "cannot load the perception node (tnn_ros.nodes.perception.PerceptionNode)" in error


def test_bad_params_file_and_arguments(capsys, tmp_path):
    assert bringup.main(["--params-file", str(tmp_path / "missing.yaml")]) == bringup.EXIT_USAGE
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bringup.main(["--backend", "quantum"])
    with pytest.raises(SystemExit):
        bringup.main(["--duration", "-1"])


def test_node_specs_merge_yaml_params_file_and_command_line(tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text("/**/controller:\n  ros__parameters:\n    rate_hz: 4.0\n    strategy: rule\n")
    args, ros_args = bringup.parse_args(
        [
            "--params-file",
            str(params),
            "--strategy",
            "deadline",
            "--image",
            "/cam/image",
            "--no-sim-camera",
            "--ros-args",
            "--log-level",
            "warn",
        ]
    )
    assert ros_args == ["--ros-args", "--log-level", "warn"]
    specs = {name: (parameters, cli) for name, parameters, cli in bringup.build_node_specs(args)}
    assert set(specs) == {"perception", "resource_monitor", "controller"}
    controller = specs["controller"][0]
    assert controller["rate_hz"] == 4.0 and controller["strategy"] == "deadline"  # CLI wins over the file
    assert controller["stale_timeout_s"] == 3.0  # shipped default from config/controller.yaml
    assert specs["perception"][1] == ["--ros-args", "-r", "image:=/cam/image"]


def test_bringup_refuses_bad_start_up_parameters(ros_env, tmp_path):
    params = tmp_path / "bad.yaml"
    params.write_text(
        "/**/controller:\n  ros__parameters:\n    min_utilization: 0.9\n    max_utilization: 0.5\n"
    )
    proc = start(ros_env, "--no-sim-camera", "--duration", "5", "--params-file", str(params))
    code = stop(proc, timeout_s=90.0)
    output = proc.stdout.read()
    assert code == bringup.EXIT_USAGE, output
    assert "min_utilization (0.9) must be <= max_utilization (0.5)" in output
