"""The resource backend interface and the sample every backend produces."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

NAN = math.nan


class BackendError(RuntimeError):
    """A backend that cannot deliver a sample (the node reports it and keeps running)."""


@dataclass
class ResourceSample:
    """One reading of the platform's resources.

    Unknown values are NaN (as sensor_msgs/BatteryState defines for unmeasured fields).
    ``power_w`` is the power drawn from the battery / supply, so energy = integral of power.
    ``deadline_ms`` is only set by backends that script it (trace, sim with a mission).
    """

    stamp: float
    battery_fraction: float = NAN
    battery_voltage: float = NAN
    power_w: float = NAN
    temperature_c: float = NAN
    cpu_load: float = NAN
    gpu_load: float = NAN
    deadline_ms: float | None = None

    @property
    def battery_current_a(self) -> float:
        """Current drawn (positive), from P = V * I; NaN when either is unknown."""
        if math.isfinite(self.power_w) and math.isfinite(self.battery_voltage) and self.battery_voltage > 0:
            return self.power_w / self.battery_voltage
        return NAN


class ResourceBackend(ABC):
    """Where resource readings come from (Jetson jtop, psutil, a simulation, a recorded trace)."""

    name: str = "backend"

    @abstractmethod
    def sample(self, now: float) -> ResourceSample:
        """Return the reading at time ``now`` (seconds, monotonic); raise BackendError on failure."""

    def set_utilization(self, u: float) -> None:
        """The perception node's applied utilization; only simulated backends use it."""

    def close(self) -> None:
        """Release devices / files (idempotent)."""
