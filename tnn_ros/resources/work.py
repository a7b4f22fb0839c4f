"""Measured compute work of the perception worker, as the sim's power model consumes it.

The perception node publishes the CPU time of every frame (``cpu_ms``, thread CPU time of the worker).
:class:`MeasuredWork` collects those samples and hands them out per simulation step as a *busy
fraction* (CPU-seconds per wall second). Samples arrive in bursts relative to the sim's steps, so
work that does not fit into one step (more than ``max_busy`` x dt) is carried over to the next step
instead of being clipped away: over a run, the integrated busy time equals the measured CPU time.
"""

from __future__ import annotations

import math
from collections import Counter

# A single frame costing more than this is a broken sender, not a measurement.
MAX_CPU_MS_PER_FRAME = 60_000.0


class MeasuredWork:
    """CPU time reported by the perception worker, consumed step by step as a busy fraction."""

    def __init__(self, max_busy: float = 1.0) -> None:
        if not max_busy > 0.0:
            raise ValueError(f"max_busy must be > 0, got {max_busy}")
        self.max_busy = max_busy
        self.pending_s = 0.0  # measured CPU time not yet turned into power
        self.total_cpu_s = 0.0  # every valid sample, ever
        self.samples = 0
        self.rejected: Counter[str] = Counter()
        self.last_busy = 0.0

    @property
    def heard(self) -> bool:
        """Whether any valid sample arrived (before that, the sim falls back to the utilization)."""
        return self.samples > 0

    def add_cpu_ms(self, cpu_ms: float) -> str | None:
        """Add one frame's CPU time; returns why it was rejected (NaN, inf, negative, huge), or None."""
        try:
            value = float(cpu_ms)
        except (TypeError, ValueError):
            return self._reject("not_a_number", f"cpu_ms {cpu_ms!r} is not a number")
        if math.isnan(value):
            return self._reject("nan", "cpu_ms is NaN")
        if math.isinf(value):
            return self._reject("inf", f"cpu_ms is {value}")
        if value < 0.0:
            return self._reject("negative", f"cpu_ms {value:g} < 0")
        if value > MAX_CPU_MS_PER_FRAME:
            return self._reject("too_large", f"cpu_ms {value:g} > {MAX_CPU_MS_PER_FRAME:g}")
        self.pending_s += value / 1e3
        self.total_cpu_s += value / 1e3
        self.samples += 1
        return None

    def take(self, dt: float) -> float:
        """Busy fraction over the next ``dt`` seconds, consuming the pending work (0 when none)."""
        if dt <= 0.0:
            return self.last_busy
        used = min(self.pending_s, self.max_busy * dt)
        self.pending_s -= used
        self.last_busy = used / dt
        return self.last_busy

    def _reject(self, reason: str, text: str) -> str:
        self.rejected[reason] += 1
        return text
