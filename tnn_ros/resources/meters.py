"""Real energy meters, where the platform has one: RAPL counters, Jetson power rails, the laptop battery.

Every meter reports *cumulative joules since it was created* (:meth:`EnergyMeter.read_j`) and raises
:class:`MeterError` with the reason when it cannot (file gone, permission denied, service stopped).
:class:`MeterReader` wraps one meter for a node: the first failure is returned once for the log,
counted, and the reader then stays on its fallback (the sim's energy from measured CPU work), so a
meter that disappears mid-run never takes the node down and never mixes two sources in one total.

- ``rapl``: Intel/AMD RAPL package energy, ``/sys/class/powercap/intel-rapl:N/energy_uj`` (top-level
  package domains only, so sub-domains are not counted twice), with wrap-around at
  ``max_energy_range_uj``. Since Linux 5.10 ``energy_uj`` is readable by root only (CVE-2020-8694).
  It measures the whole CPU package: other processes' work is in it.
- ``jtop``: the Jetson's total board power (``power['tot']['power']``, mW) integrated over time.
- ``battery``: the laptop battery's remaining energy
  (``/sys/class/power_supply/BAT*/energy_now``, or ``charge_now`` x ``voltage_now``), only while
  discharging (on AC it does not see the draw); psutil's ``sensors_battery`` says whether the
  machine is plugged in. Resolution is coarse (the gauge updates every few seconds).
"""

from __future__ import annotations

import math
import pathlib
from abc import ABC, abstractmethod
from typing import Any, Callable

POWERCAP_ROOT = pathlib.Path("/sys/class/powercap")
POWER_SUPPLY_ROOT = pathlib.Path("/sys/class/power_supply")
METERS = ("auto", "rapl", "jtop", "battery", "none")


class MeterError(RuntimeError):
    """A meter that cannot be read (now or any more); the message says why."""


class EnergyMeter(ABC):
    """Cumulative energy since creation, in joules."""

    source: str = "meter"

    @abstractmethod
    def read_j(self, now: float) -> float:
        """Joules since the meter was created; ``now`` is monotonic seconds. Raises MeterError."""

    def close(self) -> None:
        """Release what the meter holds (idempotent)."""


def _read_int(path: pathlib.Path) -> int:
    try:
        return int(path.read_text().strip())
    except PermissionError as error:
        raise MeterError(
            f"{path}: permission denied (RAPL energy_uj is root-only since Linux 5.10)"
        ) from error
    except FileNotFoundError as error:
        raise MeterError(f"{path}: gone") from error
    except (OSError, ValueError) as error:
        raise MeterError(f"{path}: unreadable: {error}") from error


class RaplMeter(EnergyMeter):
    """Sum of the RAPL package domains' energy counters, wrap-around handled per domain."""

    source = "rapl"

    def __init__(self, root: pathlib.Path | str = POWERCAP_ROOT) -> None:
        root = pathlib.Path(root)
        # intel-rapl:0, intel-rapl:1 are packages; intel-rapl:0:0 etc. are parts of them.
        domains = sorted(p for p in root.glob("intel-rapl:*") if p.name.count(":") == 1)
        if not domains:
            raise MeterError(f"no RAPL package domains under {root}")
        self.domains = domains
        self._max_uj = []
        self._last_uj = []
        for domain in domains:
            range_file = domain / "max_energy_range_uj"
            self._max_uj.append(_read_int(range_file) if range_file.exists() else 0)
            self._last_uj.append(_read_int(domain / "energy_uj"))
        self.total_j = 0.0
        self.wraps = 0

    def read_j(self, now: float) -> float:
        for i, domain in enumerate(self.domains):
            value = _read_int(domain / "energy_uj")
            delta = value - self._last_uj[i]
            if delta < 0:  # the counter wrapped (or was reset): add the range it ran through
                if self._max_uj[i] <= 0:
                    raise MeterError(f"{domain}: counter went backwards and max_energy_range_uj is unknown")
                delta += self._max_uj[i]
                self.wraps += 1
            self._last_uj[i] = value
            self.total_j += delta / 1e6
        return self.total_j


class JtopPowerMeter(EnergyMeter):
    """Integrates the Jetson's total board power from a running jtop client (trapezoid rule)."""

    source = "jtop"

    def __init__(self, jtop_factory: Callable[[], Any] | None = None) -> None:
        try:
            if jtop_factory is None:
                from jtop import jtop as jtop_factory
            self._jetson = jtop_factory()
            self._jetson.start()
        except Exception as error:  # ImportError, JtopException, OSError
            raise MeterError(f"cannot start jtop: {error}") from error
        self.total_j = 0.0
        self._last: tuple[float, float] | None = None

    def power_w(self) -> float:
        try:
            if not self._jetson.ok():
                raise MeterError("jtop service stopped answering")
            total = (self._jetson.power or {}).get("tot", {})
            power_w = float(total["power"]) / 1000.0
        except MeterError:
            raise
        except Exception as error:
            raise MeterError(f"jtop has no total power reading: {error}") from error
        if not (math.isfinite(power_w) and power_w >= 0.0):
            raise MeterError(f"jtop total power {power_w} W is not a reading")
        return power_w

    def read_j(self, now: float) -> float:
        power = self.power_w()
        if self._last is not None:
            last_t, last_p = self._last
            self.total_j += 0.5 * (power + last_p) * max(now - last_t, 0.0)
        self._last = (now, power)
        return self.total_j

    def close(self) -> None:
        try:
            self._jetson.close()
        except Exception:  # noqa: BLE001 - a dead client must not fail shutdown
            pass


class BatteryMeter(EnergyMeter):
    """Energy taken from the battery: its remaining energy at start minus now (discharging only)."""

    source = "battery"

    def __init__(self, root: pathlib.Path | str = POWER_SUPPLY_ROOT, psutil_module: Any = None) -> None:
        root = pathlib.Path(root)
        batteries = sorted(p for p in root.glob("BAT*") if p.is_dir())
        if not batteries:
            raise MeterError(f"no battery under {root}")
        self.path = batteries[0]
        self._psutil = psutil_module
        self._check_discharging()
        self._start_j = self.remaining_j()

    def _check_discharging(self) -> None:
        status_file = self.path / "status"
        status = status_file.read_text().strip() if status_file.exists() else ""
        plugged = None
        psutil_module = self._psutil
        if psutil_module is None:
            try:
                import psutil as psutil_module
            except ImportError:
                psutil_module = None
        if psutil_module is not None and hasattr(psutil_module, "sensors_battery"):
            try:
                battery = psutil_module.sensors_battery()
                plugged = None if battery is None else battery.power_plugged
            except OSError:
                plugged = None
        if plugged or (status and status != "Discharging"):
            raise MeterError(
                f"{self.path.name} is not discharging (status {status or 'unknown'}, "
                f"plugged {plugged}): it does not measure the draw"
            )

    def remaining_j(self) -> float:
        if (self.path / "energy_now").exists():
            return _read_int(self.path / "energy_now") * 3.6e-3  # uWh -> J
        if (self.path / "charge_now").exists() and (self.path / "voltage_now").exists():
            charge_uah = _read_int(self.path / "charge_now")
            voltage_uv = _read_int(self.path / "voltage_now")
            return charge_uah * 1e-6 * voltage_uv * 1e-6 * 3600.0
        raise MeterError(f"{self.path}: neither energy_now nor charge_now + voltage_now")

    def read_j(self, now: float) -> float:
        self._check_discharging()
        return max(self._start_j - self.remaining_j(), 0.0)


def make_energy_meter(
    name: str,
    *,
    powercap_root: pathlib.Path | str = POWERCAP_ROOT,
    power_supply_root: pathlib.Path | str = POWER_SUPPLY_ROOT,
    jtop_factory: Callable[[], Any] | None = None,
    psutil_module: Any = None,
) -> tuple[EnergyMeter | None, str]:
    """The meter called ``name`` (or, for ``auto``, the first of rapl, jtop, battery that works); and why.

    Returns ``(None, why)`` for ``none`` and when no meter works; a named meter that cannot start
    raises MeterError.
    """
    if name not in METERS:
        raise ValueError(f"unknown energy meter {name!r}, expected one of {', '.join(METERS)}")
    if name == "none":
        return None, "no meter requested"

    def build(kind: str) -> EnergyMeter:
        if kind == "rapl":
            return RaplMeter(powercap_root)
        if kind == "jtop":
            if jtop_factory is None:
                from tnn_ros.resources.jtop_backend import JTOP_SOCKET, jtop_available

                available, why = jtop_available(JTOP_SOCKET)
                if not available:
                    raise MeterError(why)
            return JtopPowerMeter(jtop_factory)
        return BatteryMeter(power_supply_root, psutil_module)

    if name != "auto":
        return build(name), f"{name} requested"
    reasons = []
    for kind in ("rapl", "jtop", "battery"):
        try:
            meter = build(kind)
            meter.read_j(0.0)
            return meter, "auto: " + "; ".join(reasons + [f"{kind} readable"])
        except MeterError as error:
            reasons.append(f"{kind}: {error}")
    return None, "auto: no meter readable (" + "; ".join(reasons) + ")"


class MeterReader:
    """One meter with a fallback: a failure is reported once, counted, and the meter dropped for good.

    ``read(now)`` returns joules since the reader started, or NaN once on the fallback (and before
    any meter). :attr:`source` is the meter's name while it works, else ``fallback_source``.
    """

    def __init__(self, meter: EnergyMeter | None, fallback_source: str) -> None:
        self.meter = meter
        self.fallback_source = fallback_source
        self.errors = 0
        self.lost_reason = ""

    @property
    def source(self) -> str:
        return self.meter.source if self.meter is not None else self.fallback_source

    def read(self, now: float) -> tuple[float, str | None]:
        """(joules or NaN, a message to log once when the meter was just lost, else None)."""
        if self.meter is None:
            return math.nan, None
        try:
            return self.meter.read_j(now), None
        except MeterError as error:
            self.errors += 1
            self.lost_reason = f"{self.meter.source}: {error}"
            self.meter.close()
            self.meter = None
            return math.nan, f"energy meter lost ({self.lost_reason}); falling back to {self.fallback_source}"

    def close(self) -> None:
        if self.meter is not None:
            self.meter.close()
