"""Resource monitor node over real DDS (loopback): sim backend closed loop, parameters, failures."""

import math

import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.parameter import Parameter
from rclpy.time import Time
from sensor_msgs.msg import BatteryState, Temperature
from std_msgs.msg import Float32

from tnn_ros.nodes.resource_monitor import ResourceMonitorNode
from tnn_ros.resources import BackendError, ResourceBackend

from ros_utils import RosHarness, unique_namespace

pytestmark = pytest.mark.integration


def start_monitor(ros, **overrides):
    namespace = unique_namespace("rm")
    values = {"backend": "sim", "rate_hz": 20.0, **overrides}
    parameters = [Parameter(k, value=v) for k, v in values.items()]
    node = ResourceMonitorNode(context=ros.context, namespace=namespace, parameter_overrides=parameters)
    ros.add(node)
    return node, namespace


def status_of(diagnostics, name):
    for array in reversed(diagnostics):
        for status in array.status:
            if status.name == name:
                return status, {kv.key: kv.value for kv in status.values}
    return None, {}


def test_sim_publishes_all_topics_and_drains_faster_at_full_utilization():
    with RosHarness() as ros:
        sim = {"sim.capacity_wh": 0.05, "sim.max_power_w": 10.0, "sim.idle_power_w": 1.0}
        fast_node, fast = start_monitor(ros, **sim)
        slow_node, slow = start_monitor(ros, **sim)
        diagnostics = ros.collect("/diagnostics", DiagnosticArray)
        batteries = {ns: ros.collect(f"{ns}/battery", BatteryState) for ns in (fast, slow)}
        thermal = ros.collect(f"{fast}/thermal", Temperature)
        cpu = ros.collect(f"{fast}/cpu_load", Float32)
        deadline = ros.collect(f"{fast}/deadline_ms", Float32)
        utilization = {
            fast: ros.publisher(f"{fast}/utilization_applied", Float32),
            slow: ros.publisher(f"{slow}/utilization_applied", Float32),
        }

        def drive():
            utilization[fast].publish(Float32(data=1.0))
            utilization[slow].publish(Float32(data=0.2))
            return fast_node.backend.utilization == 1.0 and slow_node.backend.utilization == pytest.approx(
                0.2
            )

        assert ros.wait_for(drive, 5.0), "utilization_applied did not reach the sim backends"
        start = {ns: len(batteries[ns]) for ns in (fast, slow)}
        assert ros.wait_for(lambda: all(len(batteries[ns]) >= start[ns] + 20 for ns in (fast, slow)), 5.0)

        def drain_per_s(ns):
            """Charge lost per second of the node's own clock (header stamps), not per message:
            how often each node's timer fired on a busy machine does not enter."""
            received = batteries[ns][start[ns] :]
            seconds = (
                Time.from_msg(received[-1].header.stamp).nanoseconds
                - Time.from_msg(received[0].header.stamp).nanoseconds
            ) / 1e9
            assert seconds > 0.0, "battery stamps do not advance"
            return (received[0].percentage - received[-1].percentage) / seconds

        # sim power: 10 W at u = 1 and 1 + 0.2 * (10 - 1) = 2.8 W at u = 0.2, a 3.6x faster drain
        assert drain_per_s(fast) > 2.0 * drain_per_s(slow) > 0.0
        last = batteries[fast][-1]
        assert 0.0 <= last.percentage <= 1.0 and last.present
        assert last.current < 0.0  # discharging
        assert abs(last.voltage * last.current) == pytest.approx(10.0, rel=0.01)  # P = V * |I| at u = 1
        assert thermal and math.isfinite(thermal[-1].temperature)
        assert cpu and 0.0 <= cpu[-1].data <= 1.0
        assert deadline and deadline[-1].data == pytest.approx(80.0)
        name = f"{fast}/resource_monitor: resource_monitor"
        assert ros.wait_for(lambda: status_of(diagnostics, name)[0], 3.0)
        _, values = status_of(diagnostics, name)
        assert values["backend"] == "sim" and values["why"] == "sim requested"


def test_parameters_validated_and_applied_live():
    with RosHarness() as ros:
        node, ns = start_monitor(ros)
        fqn = node.get_fully_qualified_name()
        descriptor = ros.describe_parameters(fqn, ["deadline_ms"])[0]
        assert descriptor.floating_point_range[0].to_value == 2000.0 and descriptor.description
        rejected = ros.set_parameters(fqn, {"backend": "trace"})[0]
        assert not rejected.successful and "trace_file" in rejected.reason
        rejected = ros.set_parameters(fqn, {"sim.idle_power_w": 50.0})[0]
        assert not rejected.successful and "max_power_w" in rejected.reason
        rejected = ros.set_parameters(fqn, {"mission_file": "no_such_mission.yaml"})[0]
        assert not rejected.successful and "not found" in rejected.reason
        rejected = ros.set_parameters(fqn, {"backend": "gpu"})[0]
        assert not rejected.successful and "expected one of" in rejected.reason
        assert node.backend.name == "sim"

        deadline = ros.collect(f"{ns}/deadline_ms", Float32)
        assert ros.set_parameters(fqn, {"deadline_ms": 42.0})[0].successful
        assert ros.wait_for(lambda: deadline and deadline[-1].data == pytest.approx(42.0), 3.0)
        # switching to a mission restarts the sim with the mission's battery and scripted deadline
        battery = ros.collect(f"{ns}/battery", BatteryState)
        assert ros.set_parameters(fqn, {"mission_file": "mission_demo.yaml"})[0].successful
        assert node.backend.mission is not None
        assert ros.wait_for(lambda: deadline[-1].data == pytest.approx(80.0), 3.0)
        assert ros.wait_for(lambda: battery and battery[-1].percentage == pytest.approx(0.6, abs=0.01), 3.0)


class FailingBackend(ResourceBackend):
    name = "failing"

    def sample(self, now):
        raise BackendError("sensor unplugged")


def test_failing_backend_is_reported_and_node_keeps_running():
    with RosHarness() as ros:
        node, ns = start_monitor(ros)
        diagnostics = ros.collect("/diagnostics", DiagnosticArray)
        deadline = ros.collect(f"{ns}/deadline_ms", Float32)
        bad_pub = ros.publisher(f"{ns}/utilization_applied", Float32)
        node.backend = FailingBackend()
        bad_pub.publish(Float32(data=math.nan))
        name = f"{ns}/resource_monitor: resource_monitor"

        def reported():
            status, values = status_of(diagnostics, name)
            failures = int(values.get("errors.sample", 0))
            return status is not None and status.level == status.WARN and failures > 0

        assert ros.wait_for(reported, 5.0)
        _, values = status_of(diagnostics, name)
        assert "sensor unplugged" in values["last_error"]
        count = len(deadline)
        assert ros.wait_for(lambda: len(deadline) > count + 3, 3.0), "deadline_ms stopped"


def test_sim_is_driven_by_measured_cpu_and_names_the_energy_source():
    with RosHarness() as ros:
        node, ns = start_monitor(
            ros,
            **{
                "sim.capacity_wh": 0.05,
                "sim.idle_power_w": 1.0,
                "sim.max_power_w": 10.0,
                "energy_meter": "none",
            },
        )
        diagnostics = ros.collect("/diagnostics", DiagnosticArray)
        cpu_pub = ros.publisher(f"{ns}/cpu_ms", Float32)
        applied_pub = ros.publisher(f"{ns}/utilization_applied", Float32)
        name = f"{ns}/resource_monitor: resource_monitor"
        assert ros.wait_for(
            lambda: status_of(diagnostics, name)[1].get("energy_source") == "sim-from-utilization", 5.0
        )
        assert ros.wait_for(lambda: cpu_pub.get_subscription_count() > 0, 5.0)
        applied_pub.publish(Float32(data=1.0))  # the commanded level says full; measured work is small
        for value in (5.0, math.nan, math.inf, -1.0, 5.0):
            cpu_pub.publish(Float32(data=value))
        assert ros.wait_for(lambda: node.errors["bad_cpu_ms"] == 3 and node.backend.work.samples == 2, 5.0)
        assert ros.wait_for(
            lambda: status_of(diagnostics, name)[1].get("energy_source") == "sim-from-measured-cpu", 5.0
        )
        _, values = status_of(diagnostics, name)
        assert values["sim.drive"] == "measured-cpu"
        assert float(values["sim.cpu_s_total"]) == pytest.approx(0.01)
        assert node.backend.busy_fraction < 0.5  # 10 ms of CPU over the ticks since: not "full"


def test_first_frame_mission_start_waits_for_the_first_cpu_sample():
    with RosHarness() as ros:
        node, ns = start_monitor(
            ros, mission_file="mission_demo.yaml", mission_start="first_frame", energy_meter="none"
        )
        fqn = node.get_fully_qualified_name()
        rejected = ros.set_parameters(fqn, {"mission_start": "later"})[0]
        assert not rejected.successful and "expected one of" in rejected.reason
        diagnostics = ros.collect("/diagnostics", DiagnosticArray)
        deadline = ros.collect(f"{ns}/deadline_ms", Float32)
        name = f"{ns}/resource_monitor: resource_monitor"
        assert ros.wait_for(
            lambda: status_of(diagnostics, name)[1].get("mission_time_s") == "waiting for first frame", 5.0
        )
        assert status_of(diagnostics, name)[1]["mission_start"] == "first_frame"
        assert ros.wait_for(lambda: deadline and deadline[-1].data == pytest.approx(80.0), 3.0)  # t = 0 value
        cpu_pub = ros.publisher(f"{ns}/cpu_ms", Float32)
        assert ros.wait_for(lambda: cpu_pub.get_subscription_count() > 0, 5.0)
        cpu_pub.publish(Float32(data=12.0))
        assert ros.wait_for(lambda: node.backend.mission_time(node.backend.last or 0.0) is not None, 5.0)

        def started() -> bool:
            value = status_of(diagnostics, name)[1].get("mission_time_s", "")
            return value.replace(".", "", 1).isdigit()

        assert ros.wait_for(started, 5.0)
