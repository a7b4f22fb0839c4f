"""Resource monitor node: publishes battery, temperature, CPU load and the deadline from one backend.

A thin rclpy shell around :mod:`tnn_ros.resources`: the backend (auto | jtop | psutil | sim | trace)
is chosen by parameter and can be switched live; the sim backend is driven by the perception node's
measured per-frame CPU time (``cpu_ms``; ``utilization_applied`` only until the first one arrives)
and optionally by a mission file. A real energy meter (RAPL, jtop rails, battery) is read where one
is readable and published as ``energy_j``; ``energy_source`` in /diagnostics names what measures energy.
A backend that fails while running is reported in /diagnostics (and the log, rate limited) and
retried every tick; the node stays up.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections import Counter
from typing import Any, Mapping

from rclpy.node import Node
from sensor_msgs.msg import BatteryState, Temperature
from std_msgs.msg import Float32, Float64, Header

from tnn_ros import topics
from tnn_ros.nodes._spin import run_node
from tnn_ros.nodes.common import ERROR, LOG_THROTTLE_S, OK, WARN, DiagnosticsPublisher, replace_timer
from tnn_ros.nodes.params import LiveParameters, ParamSpec
from tnn_ros.resources import (
    BACKENDS,
    MISSION_STARTS,
    Mission,
    MissionError,
    ResourceBackend,
    SimParams,
    make_backend,
)
from tnn_ros.resources.meters import METERS, MeterError, MeterReader, make_energy_meter
from tnn_ros.resources.mission import find_mission_file
from tnn_ros.resources.sim import SimBackend
from tnn_ros.resources.trace import TraceFormatError, load_trace

SIM_PREFIX = "sim."

_SIM = SimParams()
PARAMETERS = (
    ParamSpec(
        "backend",
        "auto",
        "Resource source: auto (jtop > psutil > sim) | jtop | psutil | sim | trace",
        choices=BACKENDS,
    ),
    ParamSpec(
        "rate_hz",
        2.0,
        "Publish rate of battery / thermal / cpu_load / deadline_ms",
        min_value=0.1,
        max_value=50.0,
    ),
    ParamSpec(
        "deadline_ms",
        80.0,
        "Per-frame deadline published on deadline_ms (a trace or mission overrides it)",
        min_value=1.0,
        max_value=2000.0,
    ),
    ParamSpec("frame_id", "", "frame_id of the battery / thermal headers"),
    ParamSpec(
        "energy_meter",
        "auto",
        "Energy meter: auto (rapl > jtop > battery, else none) | rapl | jtop | "
        "battery | none. Applied at start-up",
        choices=METERS,
        read_only=True,
    ),
    ParamSpec("trace_file", "", "CSV / YAML resource trace for backend=trace (see docs/resources.md)"),
    ParamSpec("trace_loop", True, "Replay the trace in a loop"),
    ParamSpec(
        "mission_file", "", "Mission YAML driving the sim backend (path or a name in config/); empty = none"
    ),
    ParamSpec(
        "mission_duration_s",
        0.0,
        "Rescale the mission to this length (0 = its nominal duration)",
        min_value=0.0,
        max_value=86400.0,
    ),
    ParamSpec(
        "mission_start",
        "immediate",
        "When the sim's mission clock starts: immediate (first tick) | first_frame (first measured "
        "perception frame, cpu_ms; the start state is held and published until then)",
        choices=MISSION_STARTS,
    ),
    ParamSpec(
        "sim.capacity_wh",
        _SIM.capacity_wh,
        "Simulated battery capacity (a mission may resize it)",
        min_value=0.001,
        max_value=10000.0,
    ),
    ParamSpec(
        "sim.initial_fraction",
        _SIM.initial_fraction,
        "Simulated state of charge at start",
        min_value=0.0,
        max_value=1.0,
    ),
    ParamSpec(
        "sim.idle_power_w",
        _SIM.idle_power_w,
        "Simulated power at utilization 0",
        min_value=0.0,
        max_value=1000.0,
    ),
    ParamSpec(
        "sim.max_power_w",
        _SIM.max_power_w,
        "Simulated power at utilization 1",
        min_value=0.0,
        max_value=1000.0,
    ),
    ParamSpec(
        "sim.ambient_c", _SIM.ambient_c, "Simulated ambient temperature", min_value=-40.0, max_value=80.0
    ),
    ParamSpec(
        "sim.thermal_resistance_c_per_w",
        _SIM.thermal_resistance_c_per_w,
        "Steady-state temperature rise per watt",
        min_value=0.0,
        max_value=100.0,
    ),
    ParamSpec(
        "sim.thermal_time_constant_s",
        _SIM.thermal_time_constant_s,
        "Thermal time constant",
        min_value=0.1,
        max_value=36000.0,
    ),
)
# Changing these restarts the backend; other sim.* values are applied to the running simulation.
_RESTART_KEYS = {
    "backend",
    "trace_file",
    "trace_loop",
    "mission_file",
    "mission_duration_s",
    "mission_start",
    "sim.initial_fraction",
}


def sim_params_from(values: Mapping[str, Any]) -> SimParams:
    sim = {key[len(SIM_PREFIX) :]: value for key, value in values.items() if key.startswith(SIM_PREFIX)}
    return dataclasses.replace(_SIM, **sim)


def load_mission(values: Mapping[str, Any]) -> Mission | None:
    """The mission named by ``mission_file`` (scaled to ``mission_duration_s``), or None."""
    if not values["mission_file"]:
        return None
    try:
        path = find_mission_file(values["mission_file"])
    except FileNotFoundError as error:
        raise MissionError(str(error)) from error
    return Mission.load(path, duration_s=values["mission_duration_s"] or None)


def validate_parameters(values: Mapping[str, Any]) -> str | None:
    """Physical consistency of sim.*, a readable mission and (for backend=trace) a readable trace."""
    problem = sim_params_from(values).problem()
    if problem:
        return f"sim.{problem}"
    try:
        load_mission(values)
    except MissionError as error:
        return f"mission_file: {error}"
    if values["backend"] == "trace":
        if not values["trace_file"]:
            return "backend 'trace' needs trace_file"
        try:
            load_trace(values["trace_file"])
        except TraceFormatError as error:
            return f"trace_file: {error}"
    return None


def build_backend(values: Mapping[str, Any]) -> tuple[ResourceBackend, str]:
    """Create the backend the parameters ask for; raises with a reason when it cannot start."""
    return make_backend(
        values["backend"],
        sim=sim_params_from(values),
        mission=load_mission(values),
        mission_start=values["mission_start"],
        trace_file=values["trace_file"],
        trace_loop=values["trace_loop"],
    )


class ResourceMonitorNode(Node):
    """Node `resource_monitor`: utilization_applied in; battery, thermal, cpu_load, deadline_ms out."""

    def __init__(self, node_name: str = "resource_monitor", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.params = LiveParameters(
            self, PARAMETERS, validate=validate_parameters, on_change=self._on_parameters
        )
        self.errors: Counter[str] = Counter()
        self.last_error = ""
        self.samples = 0
        self.backend: ResourceBackend | None = None
        self.backend_why = ""
        self._start_backend()
        self.energy = self._start_meter(self.params["energy_meter"])

        self.battery_pub = self.create_publisher(BatteryState, topics.BATTERY, 10)
        self.thermal_pub = self.create_publisher(Temperature, topics.THERMAL, 10)
        self.cpu_pub = self.create_publisher(Float32, topics.CPU_LOAD, 10)
        self.deadline_pub = self.create_publisher(Float32, topics.DEADLINE_MS, 10)
        self.energy_pub = self.create_publisher(Float64, topics.ENERGY_J, 10)
        self.diagnostics = DiagnosticsPublisher(self, "resource_monitor", self._diagnostic_status)
        self.create_subscription(Float32, topics.UTILIZATION_APPLIED, self._on_utilization, 10)
        self.create_subscription(Float32, topics.CPU_MS, self._on_cpu_ms, 50)
        self.timer = replace_timer(self, None, self.params["rate_hz"], self._tick)

    # -- backend ----------------------------------------------------------------------------------
    def _start_backend(self) -> None:
        if self.backend is not None:
            self.backend.close()
            self.backend = None
        try:
            self.backend, self.backend_why = build_backend(self.params.as_dict())
            self.get_logger().info(f"backend {self.backend.name}: {self.backend_why}")
        except Exception as error:  # jtop / psutil start failures: report, keep the node up
            self.errors["backend_start"] += 1
            self.last_error = f"backend {self.params['backend']} failed to start: {error}"
            self.backend_why = self.last_error
            self.get_logger().error(self.last_error)

    def _start_meter(self, name: str) -> MeterReader:
        try:
            meter, why = make_energy_meter(name)
        except MeterError as error:  # a named meter that cannot start: report, fall back
            self.errors["meter_start"] += 1
            meter, why = None, f"{name} failed to start: {error}"
            self.get_logger().error(f"energy meter {why}")
        self.energy_why = why
        self.get_logger().info(f"energy meter: {meter.source if meter else 'none'} ({why})")
        return MeterReader(meter, fallback_source="none")

    @property
    def energy_source(self) -> str:
        """What measures energy now: the meter, else the sim (from measured CPU work or from u)."""
        if self.energy.meter is not None:
            return self.energy.meter.source
        if isinstance(self.backend, SimBackend):
            return "sim-from-measured-cpu" if self.backend.drive == "measured-cpu" else "sim-from-utilization"
        return "none"

    def _on_cpu_ms(self, msg: Float32) -> None:
        if not isinstance(self.backend, SimBackend):
            return
        problem = self.backend.add_cpu_time(msg.data, time.monotonic())
        if problem:
            self.errors["bad_cpu_ms"] += 1
            self.get_logger().warning(
                f"dropped cpu_ms: {problem}; {self.errors['bad_cpu_ms']} so far",
                throttle_duration_sec=LOG_THROTTLE_S,
            )

    def _on_utilization(self, msg: Float32) -> None:
        u = msg.data
        if not (math.isfinite(u) and 0.0 <= u <= 1.0):
            self.errors["bad_utilization"] += 1
            self.get_logger().warning(
                f"dropped utilization_applied {u} (not in [0, 1]); {self.errors['bad_utilization']} so far",
                throttle_duration_sec=LOG_THROTTLE_S,
            )
            return
        if self.backend is not None:
            self.backend.set_utilization(u)

    # -- publishing -------------------------------------------------------------------------------
    def _tick(self) -> None:
        header = Header(stamp=self.get_clock().now().to_msg(), frame_id=self.params["frame_id"])
        deadline = self.params["deadline_ms"]
        if self.backend is not None:
            try:
                sample = self.backend.sample(time.monotonic())
            except Exception as error:  # any backend failure is reported, never fatal
                self.errors["sample"] += 1
                self.last_error = f"{self.backend.name}: {error}"
                self.get_logger().error(
                    f"backend sample failed: {self.last_error} ({self.errors['sample']} failures)",
                    throttle_duration_sec=LOG_THROTTLE_S,
                )
            else:
                self.samples += 1
                self._publish_sample(sample, header)
                if sample.deadline_ms is not None:
                    deadline = sample.deadline_ms
        self.deadline_pub.publish(Float32(data=float(deadline)))
        energy_j, lost = self.energy.read(time.monotonic())
        if lost:
            self.errors["meter_lost"] += 1
            self.last_error = lost
            self.get_logger().error(lost)  # once: the reader drops the meter for good
        if math.isfinite(energy_j):
            self.energy_pub.publish(Float64(data=float(energy_j)))

    def _publish_sample(self, sample, header: Header) -> None:
        current = sample.battery_current_a
        battery = BatteryState(
            header=header,
            voltage=float(sample.battery_voltage),
            temperature=math.nan,
            current=-float(current) if math.isfinite(current) else math.nan,  # negative = discharging
            charge=math.nan,
            capacity=math.nan,
            design_capacity=math.nan,
            percentage=float(sample.battery_fraction),
            power_supply_status=(
                BatteryState.POWER_SUPPLY_STATUS_DISCHARGING
                if math.isfinite(current) and current > 0
                else BatteryState.POWER_SUPPLY_STATUS_UNKNOWN
            ),
            power_supply_health=BatteryState.POWER_SUPPLY_HEALTH_UNKNOWN,
            power_supply_technology=BatteryState.POWER_SUPPLY_TECHNOLOGY_UNKNOWN,
            present=math.isfinite(sample.battery_fraction),
        )
        if isinstance(self.backend, SimBackend):
            battery.capacity = float(self.backend.params.capacity_wh / self.backend.params.voltage_full)
            battery.charge = float(battery.capacity * sample.battery_fraction)
        self.battery_pub.publish(battery)
        self.thermal_pub.publish(
            Temperature(header=header, temperature=float(sample.temperature_c), variance=0.0)
        )
        self.cpu_pub.publish(Float32(data=float(sample.cpu_load)))

    def diagnostics_values(self) -> dict[str, str]:
        values: dict[str, Any] = {
            "backend": self.backend.name if self.backend else "none",
            "requested": self.params["backend"],
            "why": self.backend_why,
            "samples": self.samples,
            "errors.total": sum(self.errors.values()),
            "last_error": self.last_error or "none",
            "energy_source": self.energy_source,
            "energy_meter_why": self.energy.lost_reason or self.energy_why,
        }
        values.update({f"errors.{name}": count for name, count in sorted(self.errors.items())})
        if isinstance(self.backend, SimBackend):
            values["sim.utilization"] = f"{self.backend.utilization:.3f}"
            values["sim.battery_fraction"] = f"{self.backend.battery_fraction:.4f}"
            values["sim.temperature_c"] = f"{self.backend.temperature_c:.2f}"
            values["sim.drive"] = self.backend.drive
            values["sim.busy_fraction"] = f"{self.backend.busy_fraction:.3f}"
            values["sim.cpu_s_total"] = f"{self.backend.work.total_cpu_s:.3f}"
            values["sim.cpu_samples"] = self.backend.work.samples
            values["mission_start"] = self.backend.mission_start
            if self.backend.mission is not None:
                t = self.backend.mission_time(time.monotonic())
                values["mission"] = self.backend.mission.name
                if t is not None:
                    values["mission_time_s"] = f"{t:.1f}"
                else:
                    values["mission_time_s"] = (
                        "waiting for first frame" if self.backend.waiting_for_first_frame else "not started"
                    )
        return {key: str(value) for key, value in values.items()}

    def _diagnostic_status(self) -> tuple[int, str, dict]:
        values = self.diagnostics_values()
        if self.backend is None:
            level, message = ERROR, self.last_error
        elif (
            self.errors["sample"]
            or self.errors["bad_utilization"]
            or self.errors["bad_cpu_ms"]
            or self.errors["meter_lost"]
        ):
            level = WARN
            message = f"{values['errors.total']} errors; last: {self.last_error}"
        else:
            level, message = OK, f"{self.backend.name}: {self.backend_why}"
        return level, message, values

    # -- parameters -------------------------------------------------------------------------------
    def _on_parameters(self, changed: Mapping[str, Any]) -> None:
        if "rate_hz" in changed:
            self.timer = replace_timer(self, self.timer, self.params["rate_hz"], self._tick)
        if _RESTART_KEYS & set(changed):
            self._start_backend()
        elif isinstance(self.backend, SimBackend) and any(k.startswith(SIM_PREFIX) for k in changed):
            for key, value in changed.items():  # live physics change, battery state kept
                if key.startswith(SIM_PREFIX):
                    setattr(self.backend.params, key[len(SIM_PREFIX) :], value)
        self.get_logger().info("parameters applied: " + ", ".join(f"{k}={v}" for k, v in changed.items()))

    def destroy_node(self) -> None:
        if self.backend is not None:
            self.backend.close()
        self.energy.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Run the resource monitor until Ctrl-C; returns 2 when its start-up parameters are invalid."""
    return run_node(ResourceMonitorNode, args)


if __name__ == "__main__":
    sys.exit(main())
