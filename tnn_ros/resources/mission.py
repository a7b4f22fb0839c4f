"""Scripted resource scenarios ("missions") for the sim backend and the demo.

A mission file is YAML with one top-level ``mission`` mapping. All times are seconds on the
mission's nominal timeline (``duration_s``); loading with another duration scales every time
(and the sim's thermal time constant) by the same factor, so the shape of the scenario is kept::

    mission:
      name: demo
      duration_s: 60.0              # nominal length
      battery:                      # closed loop: the sim drains the battery with compute power
        initial_fraction: 0.60      # state of charge at t = 0
        final_fraction: 0.15        # reached at the end if run at nominal_utilization throughout
        nominal_utilization: 0.7    # (sets the battery capacity; running lower u drains slower)
      sim:                          # optional overrides of the sim backend's parameters
        ambient_c: 25.0
        thermal_time_constant_s: 6.0   # scaled with the duration like every time
      heat:                         # extra heat (W) into the thermal model, e.g. sun / a hot motor
        - {start_s: 14.0, end_s: 30.0, extra_w: 9.0}
      deadline_ms:                  # piecewise-linear keyframes; held before the first / after the last
        - {t_s: 0.0, value: 80.0}
        - {t_s: 32.0, value: 80.0}
        - {t_s: 42.0, value: 30.0}
      manual:                       # windows where the demo sets the utilization by hand
        - {start_s: 46.0, end_s: 54.0, utilization: 0.5}

Every section except ``duration_s`` is optional. Unknown keys are errors (a typo must not silently
drop part of a scenario).
"""

from __future__ import annotations

import math
import pathlib
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import yaml

from tnn_ros.paths import find_config_file

DEFAULT_MISSION_FILE = "mission_demo.yaml"

_SIM_KEYS = {
    "capacity_wh",
    "idle_power_w",
    "max_power_w",
    "ambient_c",
    "thermal_resistance_c_per_w",
    "thermal_time_constant_s",
    "initial_temperature_c",
    "voltage_full",
    "voltage_empty",
}
_SCALED_SIM_KEYS = {"thermal_time_constant_s"}


class MissionError(ValueError):
    """A mission file that cannot be used; the message names the file and the problem."""


@dataclass
class Mission:
    """A scenario on a timeline of ``duration_s`` seconds (times already scaled)."""

    name: str
    duration_s: float
    battery_initial: float | None = None
    battery_final: float | None = None
    nominal_utilization: float = 0.7
    heat_events: list[tuple[float, float, float]] = field(default_factory=list)  # (t0, t1, extra_w)
    deadline_keyframes: list[tuple[float, float]] = field(default_factory=list)  # (t, deadline_ms)
    manual_windows: list[tuple[float, float, float]] = field(default_factory=list)  # (t0, t1, u)
    sim_overrides: dict[str, float] = field(default_factory=dict)
    time_scale: float = 1.0
    source: str = ""

    @classmethod
    def load(cls, path: str | pathlib.Path, duration_s: float | None = None) -> "Mission":
        """Read a mission YAML file; ``duration_s`` rescales its timeline (None keeps the nominal)."""
        path = pathlib.Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as error:
            raise MissionError(f"{path}: cannot read mission: {error}") from error
        return cls.from_dict(data, duration_s=duration_s, source=str(path))

    @classmethod
    def from_dict(cls, data: Any, duration_s: float | None = None, source: str = "mission") -> "Mission":
        """Build from the parsed YAML (``{"mission": {...}}``), checking every field."""
        if not isinstance(data, Mapping) or not isinstance(data.get("mission"), Mapping):
            raise MissionError(f"{source}: expected a top-level 'mission' mapping")
        spec = dict(data["mission"])
        _no_unknown(spec, {"name", "duration_s", "battery", "sim", "heat", "deadline_ms", "manual"}, source)
        nominal = _number(spec.get("duration_s"), f"{source}: mission.duration_s", low=1e-3)
        if duration_s is not None and not (math.isfinite(duration_s) and duration_s > 0):
            raise MissionError(f"{source}: duration must be > 0, got {duration_s}")
        scale = (duration_s / nominal) if duration_s is not None else 1.0
        mission = cls(
            name=str(spec.get("name", pathlib.Path(source).stem)),
            duration_s=nominal * scale,
            time_scale=scale,
            source=source,
        )

        battery = spec.get("battery") or {}
        where = f"{source}: battery"
        _no_unknown(battery, {"initial_fraction", "final_fraction", "nominal_utilization"}, where)
        if battery:
            mission.battery_initial = _number(
                battery.get("initial_fraction"), f"{where}.initial_fraction", low=0.0, high=1.0
            )
            if "final_fraction" in battery:
                mission.battery_final = _number(
                    battery["final_fraction"], f"{where}.final_fraction", low=0.0, high=1.0
                )
                if mission.battery_final >= mission.battery_initial:
                    raise MissionError(f"{where}: final_fraction must be < initial_fraction")
            mission.nominal_utilization = _number(
                battery.get("nominal_utilization", 0.7), f"{where}.nominal_utilization", low=0.0, high=1.0
            )

        sim = spec.get("sim") or {}
        _no_unknown(sim, _SIM_KEYS, f"{source}: sim")
        for key, value in sim.items():
            value = _number(value, f"{source}: sim.{key}")
            mission.sim_overrides[key] = value * scale if key in _SCALED_SIM_KEYS else value

        for i, event in enumerate(_list(spec.get("heat"), f"{source}: heat")):
            where = f"{source}: heat[{i}]"
            _no_unknown(event, {"start_s", "end_s", "extra_w"}, where)
            t0, t1 = _window(event, where)
            extra_w = _number(event.get("extra_w"), f"{where}.extra_w")
            mission.heat_events.append((t0 * scale, t1 * scale, extra_w))

        last_t = -math.inf
        for i, key in enumerate(_list(spec.get("deadline_ms"), f"{source}: deadline_ms")):
            where = f"{source}: deadline_ms[{i}]"
            _no_unknown(key, {"t_s", "value"}, where)
            t = _number(key.get("t_s"), f"{where}.t_s", low=0.0)
            if t < last_t:
                raise MissionError(f"{where}: keyframes must be in time order")
            last_t = t
            deadline = _number(key.get("value"), f"{where}.value", low=1e-3)
            mission.deadline_keyframes.append((t * scale, deadline))

        for i, window in enumerate(_list(spec.get("manual"), f"{source}: manual")):
            where = f"{source}: manual[{i}]"
            _no_unknown(window, {"start_s", "end_s", "utilization"}, where)
            t0, t1 = _window(window, where)
            u = _number(window.get("utilization"), f"{where}.utilization", low=0.0, high=1.0)
            mission.manual_windows.append((t0 * scale, t1 * scale, u))
        return mission

    def deadline_at(self, t: float) -> float | None:
        """Scripted deadline (ms) at mission time ``t``; None when the mission scripts none."""
        if not self.deadline_keyframes:
            return None
        times, values = zip(*self.deadline_keyframes)
        return float(np.interp(t, times, values))

    def extra_heat_w(self, t: float) -> float:
        """Extra heat (W) injected at mission time ``t`` (overlapping events add up)."""
        return sum(watts for t0, t1, watts in self.heat_events if t0 <= t < t1)

    def manual_utilization_at(self, t: float) -> float | None:
        """The hand-set utilization if ``t`` falls in a manual window, else None."""
        for t0, t1, u in self.manual_windows:
            if t0 <= t < t1:
                return u
        return None


def find_mission_file(name: str = DEFAULT_MISSION_FILE) -> pathlib.Path:
    """Locate a mission file (see :func:`find_config_file`)."""
    return find_config_file(name)


def _no_unknown(mapping: Any, allowed: set[str], where: str) -> None:
    if not isinstance(mapping, Mapping):
        raise MissionError(f"{where}: expected a mapping, got {type(mapping).__name__}")
    unknown = sorted(set(mapping) - allowed)
    if unknown:
        raise MissionError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def _list(value: Any, where: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise MissionError(f"{where}: expected a list")
    return value


def _number(value: Any, where: str, low: float = -math.inf, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise MissionError(f"{where}: expected a finite number, got {value!r}")
    if not low <= value <= high:
        raise MissionError(f"{where}: {value} outside [{low}, {high}]")
    return float(value)


def _window(event: Mapping, where: str) -> tuple[float, float]:
    t0 = _number(event.get("start_s"), f"{where}.start_s", low=0.0)
    t1 = _number(event.get("end_s"), f"{where}.end_s", low=0.0)
    if t1 <= t0:
        raise MissionError(f"{where}: end_s must be > start_s")
    return t0, t1
