"""NVIDIA Jetson readings through jtop (jetson-stats): power rails, GPU load, temperatures.

jtop is imported lazily (only on a Jetson with the jtop service running does it work); tests pass a
fake through ``jtop_factory``. jtop reports power in mW, voltage in mV and temperatures in deg C;
offline sensors read -256.
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable

from tnn_ros.resources.base import BackendError, ResourceBackend, ResourceSample

JTOP_SOCKET = "/run/jtop.sock"
# Thermal zones that describe the compute silicon (names differ between Jetson generations).
COMPUTE_ZONES = ("cpu", "gpu", "soc", "tj", "cv")


def jtop_available(socket_path: str = JTOP_SOCKET) -> tuple[bool, str]:
    """Whether the jtop backend can work here, and why (package importable, service socket present)."""
    try:
        import jtop  # noqa: F401
    except ImportError:
        return False, "jtop (jetson-stats) is not installed"
    if not os.path.exists(socket_path):
        return False, f"no {socket_path}: not a Jetson or the jtop service is not running"
    return True, f"jtop service socket {socket_path} found"


def _online_temperatures(temperatures: dict[str, Any]) -> dict[str, float]:
    readings = {}
    for name, entry in (temperatures or {}).items():
        if isinstance(entry, dict):
            if not entry.get("online", True):
                continue
            value = entry.get("temp")
        else:  # older jtop: plain numbers
            value = entry
        if isinstance(value, (int, float)) and math.isfinite(value) and value > -200:
            readings[name.lower()] = float(value)
    return readings


class JtopBackend(ResourceBackend):
    """Reads a running jtop client; raises BackendError when the service stops answering."""

    name = "jtop"

    def __init__(self, jtop_factory: Callable[[], Any] | None = None) -> None:
        if jtop_factory is None:
            from jtop import jtop as jtop_factory
        try:
            self._jetson = jtop_factory()
            self._jetson.start()
        except Exception as error:  # jtop raises JtopException, OSError, ...
            raise BackendError(f"cannot start jtop: {error}") from error

    def sample(self, now: float) -> ResourceSample:
        jetson = self._jetson
        try:
            if not jetson.ok():
                raise BackendError("jtop service stopped answering")
            power = jetson.power or {}
            temperatures = _online_temperatures(jetson.temperature)
            cpu = jetson.cpu or {}
            gpus = jetson.gpu or {}
        except BackendError:
            raise
        except Exception as error:
            raise BackendError(f"jtop read failed: {error}") from error
        total = power.get("tot", {}) if isinstance(power, dict) else {}
        power_w = total.get("power", math.nan) / 1000.0 if "power" in total else math.nan
        voltage = total.get("volt", math.nan) / 1000.0 if "volt" in total else math.nan
        compute = [t for name, t in temperatures.items() if name.startswith(COMPUTE_ZONES)]
        temperature = max(compute or list(temperatures.values()) or [math.nan])
        idle = cpu.get("total", {}).get("idle") if isinstance(cpu, dict) else None
        cpu_load = min(max(1.0 - idle / 100.0, 0.0), 1.0) if isinstance(idle, (int, float)) else math.nan
        gpu_load = math.nan
        for gpu in gpus.values() if isinstance(gpus, dict) else []:
            load = gpu.get("status", {}).get("load") if isinstance(gpu, dict) else None
            if isinstance(load, (int, float)):
                gpu_load = min(max(load / 100.0, 0.0), 1.0)
                break
        return ResourceSample(
            stamp=now,
            battery_voltage=voltage,
            power_w=power_w,
            temperature_c=temperature,
            cpu_load=cpu_load,
            gpu_load=gpu_load,
        )

    def close(self) -> None:
        try:
            self._jetson.close()
        except Exception:  # noqa: BLE001 - closing a dead client must not raise during shutdown
            pass
