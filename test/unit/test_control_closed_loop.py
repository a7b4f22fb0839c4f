"""Controller + sim backend + demo mission in closed loop (no ROS): the loop does what the demo claims."""

import pytest

from tnn_ros.control import Controller, ControllerConfig, LatencyProfile
from tnn_ros.resources import Mission, SimBackend, find_mission_file
from tnn_ros.throttle import LevelSchedule

SCHEDULE = LevelSchedule(8)
DEVICE_SLOWDOWN = 1.5  # the "device" is 1.5x slower than the card's training machine


def run_mission(fixed_utilization=None, dt=0.1):
    mission = Mission.load(find_mission_file("mission_demo.yaml"))
    card = LatencyProfile.synthetic(SCHEDULE.utilizations(), full_ms=40.0)
    backend = SimBackend(mission=mission)
    controller = Controller(
        ControllerConfig(strategy="auto"), LatencyProfile.synthetic(SCHEDULE.utilizations(), full_ms=40.0)
    )
    applied, trace = 1.0, []
    for step in range(int(round(mission.duration_s / dt)) + 1):
        t = step * dt
        backend.set_utilization(applied)
        sample = backend.sample(t)
        for name, value in (
            ("battery", sample.battery_fraction),
            ("thermal", sample.temperature_c),
            ("deadline", sample.deadline_ms),
            ("cpu_load", sample.cpu_load),
        ):
            controller.update(name, value, t)
        manual = mission.manual_utilization_at(t)  # what the demo does through parameters
        if (manual is not None) != controller.config.manual_override:
            controller.reconfigure(
                controller.config.replace(
                    manual_override=manual is not None, manual_utilization=manual or 1.0
                ),
                t,
            )
        decision = controller.step(t)
        u = decision.setpoint if fixed_utilization is None else fixed_utilization
        applied = SCHEDULE.utilization_of(SCHEDULE.level_for(u))
        latency = DEVICE_SLOWDOWN * card.base_ms(applied)
        controller.update("applied", applied, t)
        controller.update("latency", latency, t)
        trace.append((t, sample, decision, applied, latency))
    return mission, trace


def test_auto_controller_protects_battery_temperature_and_deadline():
    mission, adaptive = run_mission()
    _, full = run_mission(fixed_utilization=1.0)

    def misses(trace):
        return sum(latency > sample.deadline_ms for _, sample, _, _, latency in trace) / len(trace)

    assert misses(full) > 0.3
    assert misses(adaptive) == 0.0
    assert max(s.temperature_c for _, s, *_ in adaptive) < max(s.temperature_c for _, s, *_ in full) - 10.0
    assert adaptive[-1][1].battery_fraction > full[-1][1].battery_fraction + 0.1
    bindings = {d.binding for _, _, d, _, _ in adaptive}
    assert {"thermal", "deadline", "manual"} <= bindings
    # the thermal cap binds during the heat spike, the override is honoured inside its window
    t0, t1, _ = mission.heat_events[0]
    assert any(d.binding == "thermal" for t, _, d, _, _ in adaptive if t0 <= t <= t1)
    m0, m1, u = mission.manual_windows[0]
    inside = [a for t, _, d, a, _ in adaptive if m0 + 0.2 <= t < m1]
    assert inside and all(a == pytest.approx(SCHEDULE.utilization_of(SCHEDULE.level_for(u))) for a in inside)
    # the deadline policy predicts from this device's measured latency (1.5x the card at u 0.5)
    _, _, decision, _, _ = adaptive[-1]
    card = LatencyProfile.synthetic(SCHEDULE.utilizations(), full_ms=40.0)
    assert f"u 0.50 predicts p99 {DEVICE_SLOWDOWN * card.base_ms(0.5):.1f} ms (measured" in decision.reason


def test_auto_setpoint_does_not_oscillate():
    _, trace = run_mission()
    setpoints = [d.setpoint for _, _, d, _, _ in trace]
    reversals = sum(1 for a, b, c in zip(setpoints, setpoints[1:], setpoints[2:]) if (b - a) * (c - b) < 0)
    assert reversals <= 10, reversals
