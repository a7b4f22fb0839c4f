"""First real ROS check: a node from the package, in its own process, reaches this process over DDS."""

import os
import subprocess
import sys

import pytest
from sensor_msgs.msg import BatteryState

from ros_utils import RosHarness

pytestmark = [pytest.mark.integration, pytest.mark.smoke]


def test_resource_monitor_process_publishes_over_loopback_dds(ros_env):
    assert ros_env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    namespace = f"/smoke_{os.getpid()}"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tnn_ros.nodes.resource_monitor",
            "--ros-args",
            "-r",
            f"__ns:={namespace}",
            "-p",
            "backend:=sim",
            "-p",
            "rate_hz:=10.0",
        ],
        env=ros_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        with RosHarness() as ros:
            received = ros.collect(f"{namespace}/battery", BatteryState)
            got = ros.wait_for(lambda: len(received) >= 3, timeout_s=30.0)
            assert proc.poll() is None, f"node exited early:\n{proc.stdout.read()}"
            assert got, "no BatteryState arrived from the resource_monitor process"
            assert 0.0 <= received[-1].percentage <= 1.0
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
