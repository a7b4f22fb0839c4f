"""Resource readings on any Linux machine through psutil: CPU load, temperatures, battery if present."""

from __future__ import annotations

import math
from typing import Any

from tnn_ros.resources.base import BackendError, ResourceBackend, ResourceSample

# Sensor chips that report the CPU package / SoC, most specific first.
CPU_SENSOR_NAMES = ("coretemp", "k10temp", "zenpower", "cpu_thermal", "cpu-thermal", "soc_thermal", "acpitz")


def pick_temperature(sensors: dict[str, list[Any]]) -> float:
    """Highest current reading of the first CPU-like chip (any chip if none is known); NaN when none."""
    if not sensors:
        return math.nan
    chips = [name for name in CPU_SENSOR_NAMES if sensors.get(name)] or list(sensors)
    readings = [
        entry.current
        for entry in sensors[chips[0]]
        if entry.current is not None and math.isfinite(entry.current)
    ]
    return max(readings) if readings else math.nan


class PsutilBackend(ResourceBackend):
    """CPU load (all cores), CPU temperature and laptop battery where the kernel exposes them."""

    name = "psutil"

    def __init__(self, psutil_module: Any = None) -> None:
        if psutil_module is None:
            import psutil as psutil_module
        self._psutil = psutil_module
        self._psutil.cpu_percent(interval=None)  # the first call only starts the measurement window

    def sample(self, now: float) -> ResourceSample:
        try:
            cpu_load = self._psutil.cpu_percent(interval=None) / 100.0
        except Exception as error:  # psutil raises OSError and its own types
            raise BackendError(f"psutil cpu_percent failed: {error}") from error
        temperature = math.nan
        read_temperatures = getattr(self._psutil, "sensors_temperatures", None)  # absent on some OSes
        if read_temperatures is not None:
            try:
                temperature = pick_temperature(read_temperatures() or {})
            except OSError:
                temperature = math.nan
        battery_fraction = math.nan
        read_battery = getattr(self._psutil, "sensors_battery", None)
        if read_battery is not None:
            try:
                battery = read_battery()
            except OSError:
                battery = None
            if battery is not None and battery.percent is not None:
                battery_fraction = min(max(battery.percent / 100.0, 0.0), 1.0)
        return ResourceSample(
            stamp=now,
            battery_fraction=battery_fraction,
            temperature_c=temperature,
            cpu_load=min(max(cpu_load, 0.0), 1.0),
        )
