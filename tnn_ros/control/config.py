"""Controller configuration: every tunable number, with one validation used by code and node alike."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

STRATEGIES = ("manual", "rule", "deadline", "auto", "learned")


@dataclass
class ControllerConfig:
    """Tunables of the control policies (the controller node's parameters carry the same names).

    Battery levels are fractions 0..1, temperatures deg C. Each constraint has two thresholds
    (warning, critical) mapping to two utilization caps; the cap is lifted only once the value is
    ``*_hysteresis`` back on the safe side of the threshold. ``cpu_load_high`` = 1.0 disables the
    CPU cap (our own inference loads the CPU, so it is off by default). ``latency_*`` and
    ``contention_*`` tune the deadline policy's per-level latency quantiles
    (:class:`tnn_ros.control.latency.LatencyQuantiles`). ``learned_*`` configure the
    contextual-bandit strategy (``tnn_ros.control.learned``): its model file, the exploration weight
    of the upper confidence bound, and whether it keeps learning from measured latency.
    ``accuracy_tolerance`` lets ``auto`` run the cheapest level whose model-card accuracy is within
    that much (absolute, e.g. 0.02 = 2 points of mAP) of the best level ``max_utilization``
    allows; 0 runs the highest level the constraints allow, as before.
    """

    strategy: str = "auto"
    manual_utilization: float = 1.0
    manual_override: bool = False
    min_utilization: float = 0.1
    max_utilization: float = 1.0
    battery_low: float = 0.30
    battery_low_cap: float = 0.6
    battery_critical: float = 0.15
    battery_critical_cap: float = 0.3
    battery_hysteresis: float = 0.03
    thermal_warn_c: float = 70.0
    thermal_warn_cap: float = 0.6
    thermal_critical_c: float = 80.0
    thermal_critical_cap: float = 0.3
    thermal_hysteresis_c: float = 3.0
    cpu_load_high: float = 1.0
    cpu_load_cap: float = 0.5
    cpu_load_hysteresis: float = 0.1
    deadline_margin: float = 0.1
    latency_ema_alpha: float = 0.2
    latency_quantile: float = 0.99
    latency_window: int = 64
    latency_horizon_s: float = 10.0
    latency_min_samples: int = 20
    contention_window_s: float = 1.0
    contention_threshold: float = 1.5
    frame_period_ms: float = 0.0
    stale_timeout_s: float = 3.0
    safe_utilization: float = 0.3
    max_step_per_s: float = 0.5
    max_step_down_per_s: float = 2.0
    accuracy_tolerance: float = 0.02
    learned_model: str = ""
    learned_alpha: float = 0.1
    learned_online: bool = True
    learned_switch_margin: float = 0.02

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "ControllerConfig":
        """Build from a dict (e.g. node parameters); keys that are not fields are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in names})

    def replace(self, **changes: Any) -> "ControllerConfig":
        return dataclasses.replace(self, **changes)

    def problem(self) -> str | None:
        """Return why this configuration is unusable, or None when it is consistent."""
        if self.strategy not in STRATEGIES:
            return f"unknown strategy {self.strategy!r}, expected one of {', '.join(STRATEGIES)}"
        for name in (
            "manual_utilization",
            "min_utilization",
            "max_utilization",
            "safe_utilization",
            "battery_low",
            "battery_critical",
            "battery_low_cap",
            "battery_critical_cap",
            "thermal_warn_cap",
            "thermal_critical_cap",
            "cpu_load_high",
            "cpu_load_cap",
            "accuracy_tolerance",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                return f"{name} must be in [0, 1], got {value}"
        if self.min_utilization > self.max_utilization:
            return (
                f"min_utilization ({self.min_utilization}) must be <= "
                f"max_utilization ({self.max_utilization})"
            )
        if self.battery_critical >= self.battery_low:
            return f"battery_critical ({self.battery_critical}) must be < battery_low ({self.battery_low})"
        if self.battery_critical_cap > self.battery_low_cap:
            return (
                f"battery_critical_cap ({self.battery_critical_cap}) must be <= "
                f"battery_low_cap ({self.battery_low_cap})"
            )
        if self.thermal_warn_c >= self.thermal_critical_c:
            return (
                f"thermal_warn_c ({self.thermal_warn_c}) must be < "
                f"thermal_critical_c ({self.thermal_critical_c})"
            )
        if self.thermal_critical_cap > self.thermal_warn_cap:
            return (
                f"thermal_critical_cap ({self.thermal_critical_cap}) must be <= "
                f"thermal_warn_cap ({self.thermal_warn_cap})"
            )
        for name in ("battery_hysteresis", "thermal_hysteresis_c", "cpu_load_hysteresis", "deadline_margin"):
            if getattr(self, name) < 0.0:
                return f"{name} must be >= 0, got {getattr(self, name)}"
        if not 0.0 <= self.deadline_margin < 1.0:
            return f"deadline_margin must be in [0, 1), got {self.deadline_margin}"
        if not 0.0 < self.latency_ema_alpha <= 1.0:
            return f"latency_ema_alpha must be in (0, 1], got {self.latency_ema_alpha}"
        if not 0.5 <= self.latency_quantile < 1.0:
            return f"latency_quantile must be in [0.5, 1), got {self.latency_quantile}"
        if self.latency_window < 2 or self.latency_min_samples < 1:
            return (
                f"latency_window must be >= 2 and latency_min_samples >= 1, got "
                f"{self.latency_window}, {self.latency_min_samples}"
            )
        if not 0.0 < self.contention_window_s < self.latency_horizon_s:
            return (
                f"need 0 < contention_window_s ({self.contention_window_s}) < latency_horizon_s "
                f"({self.latency_horizon_s})"
            )
        if not 0.0 <= self.frame_period_ms <= 10000.0:
            return f"frame_period_ms must be in [0, 10000] (0: estimate), got {self.frame_period_ms}"
        if self.contention_threshold <= 1.0:
            return f"contention_threshold must be > 1, got {self.contention_threshold}"
        if not 0.0 <= self.learned_alpha <= 10.0:
            return f"learned_alpha must be in [0, 10], got {self.learned_alpha}"
        if not 0.0 <= self.learned_switch_margin <= 1.0:
            return f"learned_switch_margin must be in [0, 1], got {self.learned_switch_margin}"
        for name in ("stale_timeout_s", "max_step_per_s", "max_step_down_per_s"):
            if getattr(self, name) <= 0.0:
                return f"{name} must be > 0, got {getattr(self, name)}"
        return None

    def validate(self) -> "ControllerConfig":
        """Raise ValueError with the reason when inconsistent; return self otherwise."""
        problem = self.problem()
        if problem:
            raise ValueError(problem)
        return self
