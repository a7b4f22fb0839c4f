"""Which utilization the next frame runs at: manual value, controller setpoint, or the safe fallback.

ROS-free so the rules (clamping, NaN rejection, staleness) are unit tested without DDS; the node
only feeds it setpoint messages and parameter values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MODES = ("auto", "manual")


@dataclass
class GateDecision:
    """The utilization to run the next frame at and where it came from."""

    utilization: float
    source: str  # "manual" | "setpoint" | "stale" (auto mode without a fresh setpoint)


class UtilizationGate:
    """Holds the newest controller setpoint and picks the utilization for each frame.

    In ``auto`` mode the newest setpoint is used while it is younger than ``stale_timeout_s``;
    without one (never received, or too old) the node falls back to ``safe_utilization``.
    In ``manual`` mode the ``utilization`` parameter is used and setpoints are only recorded.
    """

    def __init__(self, safe_utilization: float = 0.5, stale_timeout_s: float = 2.0) -> None:
        self.safe_utilization = safe_utilization
        self.stale_timeout_s = stale_timeout_s
        self.setpoint: float | None = None
        self.setpoint_stamp: float | None = None
        self.rejected = 0  # NaN / inf setpoints ignored
        self.clamped = 0  # finite setpoints outside [0, 1] clamped

    def offer_setpoint(self, value: float, now: float) -> str | None:
        """Record a setpoint received at monotonic time ``now``.

        Returns None when taken as is, otherwise a warning text: NaN / inf are rejected (the previous
        setpoint stays), values outside [0, 1] are clamped and then taken.
        """
        value = float(value)
        if not math.isfinite(value):
            self.rejected += 1
            return f"rejected setpoint {value}: not a finite number"
        warning = None
        if not 0.0 <= value <= 1.0:
            self.clamped += 1
            clamped = min(max(value, 0.0), 1.0)
            warning = f"setpoint {value} outside [0, 1], clamped to {clamped}"
            value = clamped
        self.setpoint = value
        self.setpoint_stamp = now
        return warning

    def decide(self, mode: str, manual_utilization: float, now: float) -> GateDecision:
        """The utilization for a frame processed at monotonic time ``now``."""
        if mode == "manual":
            return GateDecision(manual_utilization, "manual")
        if mode != "auto":
            raise ValueError(f"unknown mode {mode!r}, expected one of {MODES}")
        if self.setpoint is None or now - self.setpoint_stamp > self.stale_timeout_s:
            return GateDecision(self.safe_utilization, "stale")
        return GateDecision(self.setpoint, "setpoint")

    def reset(self) -> None:
        """Forget the setpoint (on cleanup); counters are kept for diagnostics."""
        self.setpoint = None
        self.setpoint_stamp = None
