"""Closed-loop simulated resources: compute power drains a battery and heats a first-order thermal mass.

Power grows linearly with the *measured* busy fraction b of the perception worker (its CPU-seconds
per wall second, from the ``cpu_ms`` it publishes per frame, see :mod:`tnn_ros.resources.work`)::

    P(b) = idle_power_w + (max_power_w - idle_power_w) * b

so the energy over a run is ``idle_power_w * T + (max_power_w - idle_power_w) * cpu_s``: a level that
is not really cheaper does not save energy here either. b counts busy cores (the worker and its torch
helper threads may exceed 1), so ``max_power_w`` is the power with one core fully busy. Until the
first CPU sample arrives (a perception node that does not publish ``cpu_ms``), b falls back to the
applied utilization u and :attr:`SimBackend.drive` says so.

The battery integrates P (energy in joules, voltage from a linear open-circuit-voltage curve); the
temperature follows ``tau * dT/dt = ambient + R_th * (P + extra heat) - T``, integrated exactly
per step so large steps stay stable. A :class:`~tnn_ros.resources.mission.Mission` scripts the
initial charge, extra heat and the deadline over time.

When the mission clock starts (``mission_start``): ``immediate`` at the first :meth:`SimBackend.sample`
(the node's first tick), or ``first_frame`` at the first measured frame (the first valid ``cpu_ms``,
i.e. once the perception pipeline really processes camera frames). Until then the simulation holds
its start state (battery, temperature, the deadline at mission time 0) and publishes it: on a real
system the camera, perception and the monitor start in separate processes and their subscriptions
match over DDS a second or two apart, and a mission clock started before any frame can arrive would
count those start-up seconds against the controller.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any, Mapping

from tnn_ros.resources.base import ResourceBackend, ResourceSample
from tnn_ros.resources.mission import Mission
from tnn_ros.resources.work import MeasuredWork

DRIVE_MEASURED = "measured-cpu"
DRIVE_UTILIZATION = "utilization"
# A pause longer than this (debugger, suspended process) is not simulated as one huge step.
MAX_STEP_S = 5.0
MISSION_START_IMMEDIATE = "immediate"
MISSION_START_FIRST_FRAME = "first_frame"
MISSION_STARTS = (MISSION_START_IMMEDIATE, MISSION_START_FIRST_FRAME)


@dataclass
class SimParams:
    """Physical parameters of the simulated platform (the node exposes them as ``sim.*``)."""

    capacity_wh: float = 20.0
    initial_fraction: float = 1.0
    idle_power_w: float = 2.0
    max_power_w: float = 10.0
    ambient_c: float = 25.0
    thermal_resistance_c_per_w: float = 5.0
    thermal_time_constant_s: float = 30.0
    initial_temperature_c: float | None = None  # None: start at ambient
    voltage_full: float = 12.6
    voltage_empty: float = 10.5
    base_cpu_load: float = 0.05

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "SimParams":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown sim parameter(s) {unknown}; known: {sorted(names)}")
        return cls(**values)

    def problem(self) -> str | None:
        """Why these parameters are physically inconsistent, or None."""
        if self.capacity_wh <= 0:
            return f"capacity_wh must be > 0, got {self.capacity_wh}"
        if not 0.0 <= self.initial_fraction <= 1.0:
            return f"initial_fraction must be in [0, 1], got {self.initial_fraction}"
        if not 0.0 <= self.idle_power_w <= self.max_power_w:
            return f"need 0 <= idle_power_w ({self.idle_power_w}) <= max_power_w ({self.max_power_w})"
        if self.thermal_time_constant_s <= 0 or self.thermal_resistance_c_per_w < 0:
            return "thermal_time_constant_s must be > 0 and thermal_resistance_c_per_w >= 0"
        if not 0.0 < self.voltage_empty < self.voltage_full:
            return f"need 0 < voltage_empty ({self.voltage_empty}) < voltage_full ({self.voltage_full})"
        if not 0.0 <= self.base_cpu_load <= 1.0:
            return f"base_cpu_load must be in [0, 1], got {self.base_cpu_load}"
        return None

    def power_w(self, u: float) -> float:
        return self.idle_power_w + (self.max_power_w - self.idle_power_w) * u


class SimBackend(ResourceBackend):
    """Simulated battery, temperature, CPU load and (with a mission) deadline, driven by measured work.

    With a mission, its battery section sets the initial charge and sizes the capacity so that a busy
    fraction of ``nominal_utilization`` for the whole mission ends at ``final_fraction``; its ``sim`` section
    overrides parameters. Mission time starts at the first :meth:`sample` call (``mission_start``
    ``immediate``) or at the first measured frame (``first_frame``; see the module docstring).
    """

    name = "sim"

    def __init__(
        self,
        params: SimParams | None = None,
        mission: Mission | None = None,
        initial_utilization: float = 0.0,
        mission_start: str = MISSION_START_IMMEDIATE,
    ) -> None:
        if mission_start not in MISSION_STARTS:
            raise ValueError(
                f"mission_start must be one of {', '.join(MISSION_STARTS)}, got {mission_start!r}"
            )
        params = dataclasses.replace(params or SimParams())
        if mission is not None:
            params = dataclasses.replace(params, **mission.sim_overrides)
            if mission.battery_initial is not None:
                params.initial_fraction = mission.battery_initial
                if mission.battery_final is not None:
                    drained = mission.battery_initial - mission.battery_final
                    energy_j = params.power_w(mission.nominal_utilization) * mission.duration_s / drained
                    params.capacity_wh = energy_j / 3600.0
        problem = params.problem()
        if problem:
            raise ValueError(f"sim backend: {problem}")
        self.params = params
        self.mission = mission
        self.utilization = 0.0
        self.set_utilization(initial_utilization)
        # Worker + torch helper threads can keep more than one core busy: up to every core per second.
        self.work = MeasuredWork(max_busy=float(os.cpu_count() or 1))
        self.busy_fraction = 0.0
        self.energy_j = params.initial_fraction * params.capacity_wh * 3600.0
        self.temperature_c = (
            params.ambient_c if params.initial_temperature_c is None else params.initial_temperature_c
        )
        self.mission_start = mission_start
        self.first_work_at: float | None = None  # monotonic time of the first valid CPU sample
        self.start: float | None = None
        self.last: float | None = None

    @property
    def capacity_j(self) -> float:
        return self.params.capacity_wh * 3600.0

    @property
    def battery_fraction(self) -> float:
        return min(max(self.energy_j / self.capacity_j, 0.0), 1.0)

    def mission_time(self, now: float) -> float | None:
        """Seconds since the mission clock started, or None before it started."""
        return None if self.start is None else now - self.start

    @property
    def waiting_for_first_frame(self) -> bool:
        """Whether the clock waits for the first measured frame (``first_frame``, none yet)."""
        return self.mission_start == MISSION_START_FIRST_FRAME and self.first_work_at is None

    def set_utilization(self, u: float) -> None:
        """Set the compute load driving power; NaN raises ValueError, others are clamped to [0, 1]."""
        u = float(u)
        if math.isnan(u):
            raise ValueError("utilization is NaN")
        self.utilization = min(max(u, 0.0), 1.0)

    @property
    def drive(self) -> str:
        """What drives the power model: ``measured-cpu`` once a CPU sample arrived, else ``utilization``."""
        return DRIVE_MEASURED if self.work.heard else DRIVE_UTILIZATION

    def add_cpu_time(self, cpu_ms: float, now: float | None = None) -> str | None:
        """One frame's measured CPU time (ms), received at ``now`` (monotonic s; None: not known).

        Returns why it was rejected (NaN, inf, < 0), or None. The first valid one starts the
        ``first_frame`` mission clock (at ``now``, else at the next :meth:`sample`).
        """
        problem = self.work.add_cpu_ms(cpu_ms)
        if problem is None and self.first_work_at is None:
            self.first_work_at = math.nan if now is None else float(now)
        return problem

    def advance(self, dt: float, extra_heat_w: float = 0.0) -> float:
        """Integrate ``dt`` seconds of measured work (or the utilization, see :attr:`drive`); returns W."""
        self.busy_fraction = self.work.take(dt) if self.work.heard else self.utilization
        power = self.params.power_w(self.busy_fraction)
        self.energy_j = max(self.energy_j - power * dt, 0.0)
        steady_c = self.params.ambient_c + self.params.thermal_resistance_c_per_w * (power + extra_heat_w)
        approach = 1.0 - math.exp(-dt / self.params.thermal_time_constant_s)
        self.temperature_c += (steady_c - self.temperature_c) * approach
        return power

    def sample(self, now: float) -> ResourceSample:
        if self.start is None and not self.waiting_for_first_frame:
            start = now
            if self.mission_start == MISSION_START_FIRST_FRAME and math.isfinite(self.first_work_at):
                start = min(self.first_work_at, now)
            self.start = self.last = start
        if self.start is None:  # holding the start state until the first frame is measured
            dt, t = 0.0, 0.0
        else:
            dt = min(max(now - self.last, 0.0), MAX_STEP_S)
            self.last = now
            t = now - self.start
        extra = self.mission.extra_heat_w(t) if self.mission is not None else 0.0
        power = self.advance(dt, extra)
        fraction = self.battery_fraction
        params = self.params
        voltage = params.voltage_empty + (params.voltage_full - params.voltage_empty) * fraction
        cpu = self.params.base_cpu_load + (1.0 - self.params.base_cpu_load) * min(self.busy_fraction, 1.0)
        return ResourceSample(
            stamp=now,
            battery_fraction=fraction,
            battery_voltage=voltage,
            power_w=power,
            temperature_c=self.temperature_c,
            cpu_load=cpu,
            gpu_load=math.nan,
            deadline_ms=self.mission.deadline_at(t) if self.mission is not None else None,
        )
