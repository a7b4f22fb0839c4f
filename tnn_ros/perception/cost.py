"""Measured cost of one frame: CPU time of the threads that did the work, wall time and queueing delay.

Energy and the controller's latency model are derived from these numbers, never from the commanded
utilization, so a level that is not really cheaper shows up as not cheaper. CPU time comes from
``time.thread_time_ns`` (the calling thread's user + system time) plus, with :class:`WorkerClock`,
the CPU time of the helper threads torch's intra-op pool started for that thread (with
``num_threads`` = 2 they use as much CPU as the worker itself, much of it spin-waiting between ops).
Other threads of the process (the ROS executor, other nodes in ``bringup``) do not count, and time
spent waiting for a core while other processes run does not count either, unlike wall time.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass
from typing import Callable

_TASKS = "/proc/self/task"


@dataclass(frozen=True)
class FrameCost:
    """What one frame cost, in milliseconds. ``queue_ms`` is NaN when the receive time is unknown."""

    cpu_ms: float  # CPU time of the worker thread while it worked on the frame
    wall_ms: float  # wall time of the same stretch
    queue_ms: float  # frame received -> work started (waiting for the worker)

    @property
    def response_ms(self) -> float:
        """Queueing delay + work: how late the result is relative to the frame's arrival."""
        queue = self.queue_ms if math.isfinite(self.queue_ms) else 0.0
        return queue + self.wall_ms


def thread_ids() -> set[int]:
    """Native ids of this process's threads (Linux); empty where /proc is not available."""
    try:
        return {int(name) for name in os.listdir(_TASKS)}
    except (OSError, ValueError):
        return set()


def thread_cpu_ns(tid: int) -> int | None:
    """On-CPU nanoseconds of thread ``tid`` of this process (schedstat), None once it is gone."""
    try:
        with open(f"{_TASKS}/{tid}/schedstat") as handle:
            return int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class WorkerClock:
    """CPU clock of the calling (worker) thread plus the helper threads its work started.

    torch's intra-op pool (OpenMP) starts its threads the first time the worker runs a parallel op,
    so threads that appear while the worker does its first frames are its helpers: call
    :meth:`discover` around a frame (the node does it for the first frames and after a
    ``num_threads`` change). Threads started at the same moment by someone else would be counted too;
    on platforms without ``/proc/self/task`` the clock is the worker thread's alone.
    """

    def __init__(self) -> None:
        self.helpers: set[int] = set()
        self._last_ns: dict[int, int] = {}  # last reading per helper
        self._retired_ns = 0  # CPU time of helpers that have exited

    def discover(self, before: set[int]) -> int:
        """Adopt threads that exist now but not in ``before`` (a :func:`thread_ids` snapshot)."""
        new = thread_ids() - before - {threading.get_native_id()} - self.helpers
        self.helpers |= new
        return len(new)

    def __call__(self) -> int:
        """Nanoseconds: the calling thread's CPU time + every helper's (monotone)."""
        own = time.thread_time_ns()
        helpers = 0
        for tid in sorted(self.helpers):
            value = thread_cpu_ns(tid)
            if value is None:  # the helper exited: keep what it had used
                self.helpers.discard(tid)
                self._retired_ns += self._last_ns.pop(tid, 0)
                continue
            self._last_ns[tid] = value
            helpers += value
        return own + helpers + self._retired_ns


class CostMeter:
    """Times one stretch of work in the calling thread.

    Usage: ``meter = CostMeter(received_s=arrival)`` (``time.monotonic()`` when the frame arrived),
    do the work, then ``cost = meter.stop()``. Start and stop must run in the same thread (thread
    CPU clocks are per thread).
    """

    def __init__(
        self,
        received_s: float | None = None,
        thread_clock_ns: Callable[[], int] = time.thread_time_ns,
        wall_clock_s: Callable[[], float] = time.monotonic,
    ) -> None:
        self._thread_clock_ns = thread_clock_ns
        self._wall_clock_s = wall_clock_s
        self.start_s = wall_clock_s()
        self._cpu_start_ns = thread_clock_ns()
        self.queue_ms = (self.start_s - received_s) * 1e3 if received_s is not None else math.nan
        if math.isfinite(self.queue_ms):
            self.queue_ms = max(self.queue_ms, 0.0)

    def stop(self) -> FrameCost:
        cpu_ns = self._thread_clock_ns() - self._cpu_start_ns
        wall_s = self._wall_clock_s() - self.start_s
        return FrameCost(cpu_ms=max(cpu_ns, 0) / 1e6, wall_ms=max(wall_s, 0.0) * 1e3, queue_ms=self.queue_ms)


class CostTotals:
    """Running totals for diagnostics: frames, CPU-seconds, mean CPU / queue per frame."""

    def __init__(self) -> None:
        self.frames = 0
        self.cpu_s = 0.0
        self.wall_s = 0.0
        self.queue_s = 0.0
        self.queued_frames = 0
        self.last: FrameCost | None = None

    def add(self, cost: FrameCost) -> None:
        self.frames += 1
        self.cpu_s += cost.cpu_ms / 1e3
        self.wall_s += cost.wall_ms / 1e3
        if math.isfinite(cost.queue_ms):
            self.queue_s += cost.queue_ms / 1e3
            self.queued_frames += 1
        self.last = cost

    @property
    def cpu_ms_mean(self) -> float:
        return self.cpu_s * 1e3 / self.frames if self.frames else math.nan

    @property
    def queue_ms_mean(self) -> float:
        return self.queue_s * 1e3 / self.queued_frames if self.queued_frames else math.nan

    def values(self) -> dict[str, str]:
        """Diagnostics key/values (``cpu_ms_last``, ``cpu_ms_mean``, ``cpu_s_total``, ``queue_ms_*``)."""
        last = self.last

        def fmt(value: float, digits: int = 2) -> str:
            return f"{value:.{digits}f}" if math.isfinite(value) else "nan"

        return {
            "cpu_ms_last": fmt(last.cpu_ms) if last else "nan",
            "cpu_ms_mean": fmt(self.cpu_ms_mean),
            "cpu_s_total": fmt(self.cpu_s, 3),
            "queue_ms_last": fmt(last.queue_ms) if last else "nan",
            "queue_ms_mean": fmt(self.queue_ms_mean),
        }
