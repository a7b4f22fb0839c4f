"""Controller inputs and decisions: the latest values the controller has heard, checked on arrival."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

# Input names, in the order diagnostics list them.
BATTERY = "battery"
THERMAL = "thermal"
DEADLINE = "deadline"
CPU_LOAD = "cpu_load"
LATENCY = "latency"
APPLIED = "applied"
QUEUE = "queue"  # the frame's queueing delay before processing, ms (sent just before its latency)
FRAME_CPU = "frame_cpu"  # the frame's measured CPU time, ms (sent just before its latency)
INPUT_NAMES = (BATTERY, THERMAL, DEADLINE, CPU_LOAD, LATENCY, APPLIED, QUEUE, FRAME_CPU)

# Plausible value ranges; anything outside is a broken sender, not a reading to act on.
_VALID_RANGES = {
    BATTERY: (0.0, 1.0),
    THERMAL: (-60.0, 200.0),
    DEADLINE: (1e-3, 60_000.0),
    CPU_LOAD: (0.0, 1.0),
    LATENCY: (1e-6, 60_000.0),
    APPLIED: (0.0, 1.0),
    QUEUE: (0.0, 60_000.0),
    FRAME_CPU: (0.0, 600_000.0),
}
# Field names of ControlInputs per input: (value, stamp).
_FIELDS = {
    BATTERY: ("battery_fraction", "battery_stamp"),
    THERMAL: ("temperature_c", "temperature_stamp"),
    DEADLINE: ("deadline_ms", "deadline_stamp"),
    CPU_LOAD: ("cpu_load", "cpu_load_stamp"),
    LATENCY: ("latency_ms", "latency_stamp"),
    APPLIED: ("applied_utilization", "applied_stamp"),
    QUEUE: ("queue_ms", "queue_stamp"),
    FRAME_CPU: ("frame_cpu_ms", "frame_cpu_stamp"),
}


@dataclass
class ControlInputs:
    """Latest valid value of every input; None = never received. Stamps are monotonic seconds.

    ``heard`` holds, per input name, when the last message arrived at all (valid or not): a sender
    that keeps publishing "unknown" (NaN) is alive, one that stopped is stale.
    """

    battery_fraction: float | None = None
    battery_stamp: float | None = None
    temperature_c: float | None = None
    temperature_stamp: float | None = None
    deadline_ms: float | None = None
    deadline_stamp: float | None = None
    cpu_load: float | None = None
    cpu_load_stamp: float | None = None
    latency_ms: float | None = None
    latency_stamp: float | None = None
    applied_utilization: float | None = None
    applied_stamp: float | None = None
    queue_ms: float | None = None
    queue_stamp: float | None = None
    frame_cpu_ms: float | None = None
    frame_cpu_stamp: float | None = None
    heard: dict[str, float] = field(default_factory=dict)


@dataclass
class Decision:
    """What the controller commands and why.

    ``binding`` names the constraint that set the value: "battery" | "thermal" | "deadline" | "cpu" |
    "efficiency" (auto's accuracy tolerance) | "manual" | "stale" | "none" (nothing binds:
    max_utilization).
    """

    setpoint: float
    reason: str
    binding: str


class InputTracker:
    """Keeps :class:`ControlInputs` up to date and drops (and counts) values that cannot be used."""

    def __init__(self) -> None:
        self.inputs = ControlInputs()
        self.dropped: Counter[str] = Counter()
        self.received: Counter[str] = Counter()
        self.unknown: Counter[str] = Counter()

    def update(self, name: str, value: float, now: float) -> str | None:
        """Store ``value`` for input ``name``; return why it was dropped, or None when stored."""
        if name not in _FIELDS:
            raise KeyError(f"unknown input {name!r}, expected one of {', '.join(INPUT_NAMES)}")
        self.mark_heard(name, now)
        try:
            value = float(value)
        except (TypeError, ValueError):
            return self._drop(name, f"{name}: not a number ({value!r})")
        if not math.isfinite(value):
            return self._drop(name, f"{name}: non-finite value {value}")
        low, high = _VALID_RANGES[name]
        if not low <= value <= high:
            return self._drop(name, f"{name}: {value:g} outside the plausible range [{low:g}, {high:g}]")
        value_field, stamp_field = _FIELDS[name]
        setattr(self.inputs, value_field, value)
        setattr(self.inputs, stamp_field, now)
        self.received[name] += 1
        return None

    def mark_heard(self, name: str, now: float) -> None:
        """Record that a message for ``name`` arrived (e.g. a BatteryState saying "no battery")."""
        self.inputs.heard[name] = now

    def mark_unknown(self, name: str, now: float) -> None:
        """A sender says it does not know the value now (e.g. NaN temperature: no sensor).

        The sender is alive (not stale) and the last value is forgotten, since it no longer describes
        the present; counted in ``unknown``, not as a dropped (bad) input.
        """
        self.mark_heard(name, now)
        value_field, stamp_field = _FIELDS[name]
        setattr(self.inputs, value_field, None)
        setattr(self.inputs, stamp_field, None)
        self.unknown[name] += 1

    def _drop(self, name: str, reason: str) -> str:
        self.dropped[name] += 1
        return reason
