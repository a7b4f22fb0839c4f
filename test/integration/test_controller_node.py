"""Controller node over real DDS (loopback): reactions, parameters, NaN inputs, safe mode."""

import math

import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.parameter import Parameter
from sensor_msgs.msg import BatteryState, Temperature
from std_msgs.msg import Float32, String

from tnn_ros.nodes.controller import ControllerNode

from ros_utils import RosHarness, unique_namespace

pytestmark = pytest.mark.integration


def start_controller(ros, **overrides):
    namespace = unique_namespace("ctl")
    parameters = [Parameter(name, value=value) for name, value in {"rate_hz": 20.0, **overrides}.items()]
    node = ros.add(ControllerNode(context=ros.context, namespace=namespace, parameter_overrides=parameters))
    return node, namespace


def battery(fraction, present=True):
    return BatteryState(percentage=fraction, present=present, voltage=12.0, current=-0.5)


def publish_until(ros, predicate, publish, timeout_s=8.0):
    def step():
        publish()
        return predicate()

    return ros.wait_for(step, timeout_s=timeout_s, period_s=0.05)


def test_setpoint_and_reason_follow_battery_and_thermal():
    with RosHarness() as ros:
        _, ns = start_controller(ros, strategy="rule", thermal_warn_c=75.0, thermal_warn_cap=0.4)
        setpoints = ros.collect(f"{ns}/utilization_setpoint", Float32)
        reasons = ros.collect(f"{ns}/controller/reason", String)
        battery_pub = ros.publisher(f"{ns}/battery", BatteryState)
        thermal_pub = ros.publisher(f"{ns}/thermal", Temperature)

        def send(fraction, temperature):
            battery_pub.publish(battery(fraction))
            thermal_pub.publish(Temperature(temperature=temperature))

        assert publish_until(
            ros, lambda: setpoints and setpoints[-1].data == pytest.approx(1.0), lambda: send(0.9, 50.0)
        ), "no uncapped setpoint"
        assert publish_until(
            ros,
            lambda: reasons and reasons[-1].data == "thermal 78.0C > 75.0C cap 0.40",
            lambda: send(0.9, 78.0),
        ), [r.data for r in reasons[-3:]]
        assert publish_until(ros, lambda: setpoints[-1].data == pytest.approx(0.4), lambda: send(0.9, 78.0))
        # the battery becomes critical: its cap (0.3) is tighter
        assert publish_until(
            ros, lambda: reasons[-1].data.startswith("battery 10% < 15% cap 0.30"), lambda: send(0.10, 78.0)
        ), reasons[-1].data
        assert publish_until(ros, lambda: setpoints[-1].data == pytest.approx(0.3), lambda: send(0.10, 78.0))


def test_parameters_have_ranges_reject_bad_values_and_apply_live():
    with RosHarness() as ros:
        node, ns = start_controller(ros, strategy="rule")
        fqn = node.get_fully_qualified_name()
        descriptors = {
            d.name: d
            for d in ros.describe_parameters(
                fqn, ["manual_utilization", "thermal_warn_c", "rate_hz", "strategy"]
            )
        }
        assert descriptors["manual_utilization"].floating_point_range[0].to_value == 1.0
        assert descriptors["thermal_warn_c"].floating_point_range[0].to_value == 150.0
        assert descriptors["rate_hz"].floating_point_range[0].from_value == 0.5
        assert descriptors["manual_utilization"].description
        assert "manual" in descriptors["strategy"].additional_constraints

        assert ros.set_parameters(fqn, {"max_utilization": 0.5})[0].successful
        rejected = ros.set_parameters(fqn, {"min_utilization": 0.9})[0]
        assert not rejected.successful and "max_utilization" in rejected.reason
        assert node.params["min_utilization"] == pytest.approx(0.1)
        rejected = ros.set_parameters(fqn, {"manual_utilization": 1.5})[0]
        assert not rejected.successful
        rejected = ros.set_parameters(fqn, {"strategy": "fastest"})[0]
        assert not rejected.successful and "fastest" in rejected.reason
        rejected = ros.set_parameters(fqn, {"thermal_warn_c": 85.0})[0]
        assert not rejected.successful and "thermal_critical_c" in rejected.reason
        rejected = ros.set_parameters(fqn, {"model_card": "/nonexistent/card.json"})[0]
        assert not rejected.successful and "card" in rejected.reason

        setpoints = ros.collect(f"{ns}/utilization_setpoint", Float32)
        reasons = ros.collect(f"{ns}/controller/reason", String)
        changes = {"strategy": "manual", "max_utilization": 1}  # an int for a double is accepted
        assert all(r.successful for r in ros.set_parameters(fqn, changes))
        assert all(r.successful for r in ros.set_parameters(fqn, {"manual_utilization": 0.35}))
        assert ros.wait_for(lambda: setpoints and setpoints[-1].data == pytest.approx(0.35), 5.0)
        assert reasons[-1].data == "manual 0.35"
        assert node.params["strategy"] == "manual"


def test_nan_inputs_are_dropped_counted_and_node_stays_up():
    with RosHarness() as ros:
        node, ns = start_controller(ros, strategy="rule")
        diagnostics = ros.collect("/diagnostics", DiagnosticArray)
        setpoints = ros.collect(f"{ns}/utilization_setpoint", Float32)
        battery_pub = ros.publisher(f"{ns}/battery", BatteryState)
        thermal_pub = ros.publisher(f"{ns}/thermal", Temperature)
        latency_pub = ros.publisher(f"{ns}/latency_ms", Float32)
        cpu_pub = ros.publisher(f"{ns}/cpu_ms", Float32)
        name = f"{node.get_fully_qualified_name()}: controller"

        def dropped_total():
            for array in reversed(diagnostics):
                for status in array.status:
                    if status.name == name:
                        return int({kv.key: kv.value for kv in status.values}["dropped.total"])
            return 0

        def send_bad():
            battery_pub.publish(battery(math.nan))
            thermal_pub.publish(Temperature(temperature=math.inf))
            latency_pub.publish(Float32(data=math.nan))
            cpu_pub.publish(Float32(data=-5.0))  # a negative CPU time: a broken sender

        assert publish_until(ros, lambda: dropped_total() >= 4, send_bad, timeout_s=10.0)
        assert node.controller.tracker.dropped["battery"] >= 1
        assert node.controller.tracker.dropped["thermal"] >= 1
        assert node.controller.tracker.dropped["latency"] >= 1
        assert ros.wait_for(lambda: node.controller.tracker.dropped["frame_cpu"] >= 1, 5.0)
        # perception's measured CPU time of a frame, sent until stored: on CI (stop 23) a single one
        # was not stored within 5 s while the node kept dropping the bad inputs still queued; what
        # this checks is that a valid value after bad ones is stored, not one message's delivery
        assert publish_until(
            ros,
            lambda: node.controller.tracker.inputs.frame_cpu_ms == pytest.approx(12.5),
            lambda: cpu_pub.publish(Float32(data=12.5)),
            timeout_s=10.0,
        ), "a valid CPU time after bad ones was never stored"
        count = len(setpoints)
        assert ros.wait_for(lambda: len(setpoints) > count + 3, 3.0), "node stopped publishing"
        assert all(math.isfinite(s.data) for s in setpoints)
        # "no battery here" (present=False, NaN) is not an error: once the node has positively
        # heard it (the input's heard stamp moves), nothing more was dropped
        tracker = node.controller.tracker
        # NaN batteries sent by publish_until may still be in flight: a valid marker after them
        # (one publisher, reliable, in order) shows when all of them were handled
        battery_pub.publish(battery(0.77))
        assert ros.wait_for(lambda: tracker.inputs.battery_fraction == pytest.approx(0.77), 5.0)
        dropped_before, heard_before = tracker.dropped["battery"], tracker.inputs.heard.get("battery")
        battery_pub.publish(battery(math.nan, present=False))
        assert ros.wait_for(lambda: tracker.inputs.heard.get("battery") != heard_before, 5.0), (
            "the present=False battery message never reached the node"
        )
        assert tracker.dropped["battery"] == dropped_before


def test_stale_inputs_put_controller_in_safe_mode():
    with RosHarness() as ros:
        _, ns = start_controller(ros, strategy="rule", stale_timeout_s=0.5, safe_utilization=0.25)
        setpoints = ros.collect(f"{ns}/utilization_setpoint", Float32)
        reasons = ros.collect(f"{ns}/controller/reason", String)
        assert ros.wait_for(lambda: reasons and reasons[-1].data.startswith("stale:"), 5.0)
        assert setpoints[-1].data == pytest.approx(0.25)
        assert "battery" in reasons[-1].data and "thermal" in reasons[-1].data
        battery_pub = ros.publisher(f"{ns}/battery", BatteryState)
        thermal_pub = ros.publisher(f"{ns}/thermal", Temperature)

        def send():
            battery_pub.publish(battery(0.9))
            thermal_pub.publish(Temperature(temperature=40.0))

        assert publish_until(ros, lambda: setpoints[-1].data == pytest.approx(1.0), send)
