"""Replays a recorded or hand-written resource time series from CSV or YAML.

CSV: a header row, then one row per sample; ``time_s`` is required and must increase, every other
column is optional (empty cell = unknown)::

    time_s,battery_fraction,temperature_c,deadline_ms,cpu_load,power_w,battery_voltage,gpu_load
    0,0.90,45.0,80,0.30,6.0,12.1,
    10,0.85,60.0,50,0.55,8.0,12.0,

YAML: ``samples:`` a list of mappings with the same keys. Values between rows are interpolated
linearly (``deadline_ms`` too); before the first row the first is held; after the last the trace
loops (``loop=True``, default) or holds the last row.
"""

from __future__ import annotations

import csv
import math
import pathlib
from typing import Any

import numpy as np
import yaml

from tnn_ros.resources.base import ResourceBackend, ResourceSample

TIME_COLUMN = "time_s"
VALUE_COLUMNS = (
    "battery_fraction",
    "battery_voltage",
    "power_w",
    "temperature_c",
    "cpu_load",
    "gpu_load",
    "deadline_ms",
)
_FRACTIONS = ("battery_fraction", "cpu_load", "gpu_load")


class TraceFormatError(ValueError):
    """A trace file that cannot be replayed; names the file, the row and the problem."""


def _cell(value: Any, where: str) -> float:
    if value is None or (isinstance(value, str) and not value.strip()):
        return math.nan
    if isinstance(value, bool):
        raise TraceFormatError(f"{where}: expected a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TraceFormatError(f"{where}: expected a number, got {value!r}") from None
    if math.isinf(number):
        raise TraceFormatError(f"{where}: infinite value")
    return number


def load_trace(path: str | pathlib.Path) -> dict[str, np.ndarray]:
    """Parse a CSV / YAML trace into column arrays (``time_s`` plus every value column, NaN = unknown)."""
    path = pathlib.Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise TraceFormatError(f"{path}: cannot read trace: {error}") from error
    rows: list[tuple[str, dict[str, Any]]] = []
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise TraceFormatError(f"{path}: invalid YAML: {error}") from error
        samples = data.get("samples") if isinstance(data, dict) else None
        if not isinstance(samples, list):
            raise TraceFormatError(f"{path}: expected a top-level 'samples' list")
        for i, sample in enumerate(samples):
            if not isinstance(sample, dict):
                raise TraceFormatError(f"{path}: samples[{i}] is not a mapping")
            rows.append((f"{path}: samples[{i}]", sample))
    else:
        reader = csv.DictReader(line for line in text.splitlines() if not line.lstrip().startswith("#"))
        if reader.fieldnames is None:
            raise TraceFormatError(f"{path}: empty trace")
        for i, row in enumerate(reader):
            if None in row:
                raise TraceFormatError(f"{path}: data row {i + 1} has more cells than the header")
            rows.append((f"{path}: data row {i + 1}", {k.strip(): v for k, v in row.items()}))
    if not rows:
        raise TraceFormatError(f"{path}: no samples")
    known = {TIME_COLUMN, *VALUE_COLUMNS}
    columns: dict[str, list[float]] = {name: [] for name in known}
    for where, row in rows:
        unknown = sorted(set(row) - known)
        if unknown:
            raise TraceFormatError(f"{where}: unknown column(s) {unknown}; known: {sorted(known)}")
        if TIME_COLUMN not in row:
            raise TraceFormatError(f"{where}: missing {TIME_COLUMN}")
        for name in known:
            value = _cell(row.get(name), f"{where}, {name}")
            if name in _FRACTIONS and not (math.isnan(value) or 0.0 <= value <= 1.0):
                raise TraceFormatError(f"{where}, {name}: {value} outside [0, 1]")
            columns[name].append(value)
    times = np.asarray(columns[TIME_COLUMN])
    if np.isnan(times).any():
        raise TraceFormatError(f"{path}: every row needs a {TIME_COLUMN}")
    if len(times) > 1 and not np.all(np.diff(times) > 0):
        raise TraceFormatError(f"{path}: {TIME_COLUMN} must strictly increase")
    return {name: np.asarray(values, dtype=float) for name, values in columns.items()}


def _interp(t: float, times: np.ndarray, values: np.ndarray) -> float:
    """Linear interpolation over the known (non-NaN) points; NaN when the column is all unknown."""
    known = ~np.isnan(values)
    if not known.any():
        return math.nan
    return float(np.interp(t, times[known], values[known]))


class TraceBackend(ResourceBackend):
    """Replays a trace file; trace time 0 is the first :meth:`sample` call."""

    name = "trace"

    def __init__(self, path: str | pathlib.Path, loop: bool = True) -> None:
        self.path = pathlib.Path(path)
        self.columns = load_trace(self.path)
        self.loop = loop
        times = self.columns[TIME_COLUMN]
        self.t0 = float(times[0])
        self.length_s = float(times[-1] - times[0])
        self.start: float | None = None

    def trace_time(self, now: float) -> float:
        if self.start is None:
            self.start = now
        elapsed = max(now - self.start, 0.0)
        if self.loop and self.length_s > 0:
            elapsed %= self.length_s
        return self.t0 + min(elapsed, self.length_s)

    def sample(self, now: float) -> ResourceSample:
        t = self.trace_time(now)
        times = self.columns[TIME_COLUMN]
        values = {name: _interp(t, times, self.columns[name]) for name in VALUE_COLUMNS}
        deadline = values.pop("deadline_ms")
        return ResourceSample(stamp=now, deadline_ms=None if math.isnan(deadline) else deadline, **values)
