"""Closed loop over DDS: resource_monitor (sim + a heat-then-deadline mission) -> controller -> a
stand-in perception node that applies the setpoint and reports a latency; the controller must follow
heat and deadline."""

import json
import os

import pytest
from rclpy.node import Node
from rclpy.parameter import Parameter
from std_msgs.msg import Float32, String

from tnn_ros.nodes.controller import ControllerNode
from tnn_ros.nodes.resource_monitor import ResourceMonitorNode
from tnn_ros.throttle import LevelSchedule

from ros_utils import RosHarness

pytestmark = pytest.mark.integration

SCHEDULE = LevelSchedule(8)

# The demo mission's heat spike and deadline step on a 6 s timeline, but the tight deadline then holds
# and the battery stays high: with the demo mission itself the deadline was binding only between its
# manual window and the battery reaching its critical cap, a window a busy CI runner missed (stop 24).
MISSION = """
mission:
  name: heat_then_deadline
  duration_s: 6.0
  battery: {initial_fraction: 0.95, final_fraction: 0.90, nominal_utilization: 0.7}
  sim: {ambient_c: 25.0, thermal_resistance_c_per_w: 4.0, thermal_time_constant_s: 0.4}
  heat:
    - {start_s: 1.2, end_s: 2.6, extra_w: 6.0}
  deadline_ms:
    - {t_s: 0.0, value: 80.0}
    - {t_s: 3.0, value: 80.0}
    - {t_s: 4.0, value: 30.0}
"""


class StandInPerception(Node):
    """Applies each setpoint's level and reports the latency a 1.2x slower device would measure."""

    def __init__(self, **kwargs):
        super().__init__("perception", **kwargs)
        self.applied_pub = self.create_publisher(Float32, "utilization_applied", 10)
        self.latency_pub = self.create_publisher(Float32, "latency_ms", 10)
        self.create_subscription(Float32, "utilization_setpoint", self.on_setpoint, 10)

    def on_setpoint(self, msg):
        applied = SCHEDULE.utilization_of(SCHEDULE.level_for(msg.data))
        self.applied_pub.publish(Float32(data=applied))
        self.latency_pub.publish(Float32(data=1.2 * 50.0 * (0.1 + 0.9 * applied**2)))


def test_closed_loop_follows_heat_and_deadline(tmp_path):
    namespace = f"/loop_{os.getpid()}"
    # The profile this "device" is 1.2x slower than (not the shipped card, whose numbers change with
    # every retraining).
    card = tmp_path / "profile.card.json"
    card.write_text(
        json.dumps(
            {
                "levels": [
                    {
                        "level": k,
                        "utilization": (k + 1) / 8,
                        "latency_ms": 50.0 * (0.1 + 0.9 * ((k + 1) / 8) ** 2),
                    }
                    for k in range(8)
                ]
            }
        )
    )
    mission = tmp_path / "heat_then_deadline.yaml"
    mission.write_text(MISSION)
    with RosHarness() as ros:
        reasons = ros.collect(f"{namespace}/controller/reason", String)
        setpoints = ros.collect(f"{namespace}/utilization_setpoint", Float32)
        ros.add(StandInPerception(context=ros.context, namespace=namespace))
        ros.add(
            ControllerNode(
                context=ros.context,
                namespace=namespace,
                parameter_overrides=[
                    Parameter("strategy", value="auto"),
                    Parameter("rate_hz", value=20.0),
                    Parameter("model_card", value=str(card)),
                    Parameter("max_step_per_s", value=5.0),
                    Parameter("max_step_down_per_s", value=10.0),
                ],
            )
        )
        ros.add(
            ResourceMonitorNode(
                context=ros.context,
                namespace=namespace,
                parameter_overrides=[
                    Parameter("backend", value="sim"),
                    Parameter("rate_hz", value=20.0),
                    Parameter("mission_file", value=str(mission)),
                ],
            )
        )
        assert ros.wait_for(lambda: any(r.data.startswith("thermal") for r in reasons), timeout_s=8.0), (
            sorted({r.data.split(":")[0] for r in reasons})
        )
        tight = ros.wait_for(lambda: reasons[-1].data.startswith("deadline 30.0 ms"), timeout_s=10.0)
        assert tight, reasons[-1].data
        # budget 27 ms on a device 1.2x slower than the profile: u 0.625 predicts 27.1 ms, 0.5 fits
        assert setpoints[-1].data == pytest.approx(0.5)
        assert "p99 19.5 ms" in reasons[-1].data  # 1.2 x the card at u 0.5, measured
        assert not any(r.data.startswith("stale") for r in reasons)
