"""Latency measurement of throttleable models: every level interleaved, wall and CPU time.

One place for the training epilogue (the card's ``latency_ms``), the converter and the benchmarks.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import torch


@torch.no_grad()
def measure_latency(
    model,
    example: torch.Tensor,
    repeats: int = 30,
    levels: Sequence[int] | None = None,
    reference: Callable[[], object] | None = None,
    warmup: int = 3,
    others: dict | None = None,
) -> dict:
    """Median / p90 forward latency (ms) of each level, levels interleaved within every repetition.

    Interleaving spreads the machine's noise (other processes, frequency changes) evenly over the
    levels, so their ratios are fair even when absolute times drift. ``reference`` (a callable) is
    timed in the same rounds, and so is every model in ``others`` (name -> model with the same
    levels, e.g. the same net on another backend): result ``others[name]`` holds its medians / p90s.
    """
    model.eval()
    levels = list(range(model.num_levels)) if levels is None else list(levels)
    runners = {"": model, **(others or {})}
    previous = {name: m.level for name, m in runners.items()}
    samples = {name: {level: [] for level in levels} for name in runners}
    # Process CPU time of each forward too: on a machine other processes load, CPU time tracks the
    # work done far better than wall time (it includes the backend's worker threads).
    cpu_samples = {name: {level: [] for level in levels} for name in runners}
    reference_samples = []
    for _ in range(warmup):
        for level in levels:
            for m in runners.values():
                m.set_level(level)
                m(example)
        if reference is not None:
            reference()
    for _ in range(repeats):
        for level in levels:
            for name, m in runners.items():
                m.set_level(level)
                start, start_cpu = time.perf_counter(), time.process_time()
                m(example)
                samples[name][level].append((time.perf_counter() - start) * 1000)
                cpu_samples[name][level].append((time.process_time() - start_cpu) * 1000)
        if reference is not None:
            start = time.perf_counter()
            reference()
            reference_samples.append((time.perf_counter() - start) * 1000)
    for name, m in runners.items():
        m.set_level(previous[name])

    def p90(values):
        return statistics.quantiles(values, n=10)[-1] if len(values) > 1 else values[0]

    def summary(name):
        return {
            "median_ms": [statistics.median(samples[name][k]) for k in levels],
            "p90_ms": [p90(samples[name][k]) for k in levels],
            "cpu_median_ms": [statistics.median(cpu_samples[name][k]) for k in levels],
        }

    result = {"levels": levels, **summary("")}
    if others:
        result["others"] = {name: summary(name) for name in others}
    if reference is not None:
        result["reference_median_ms"] = statistics.median(reference_samples)
    return result


def measure_cpu_per_frame(
    model, example: torch.Tensor, level: int, frames: int = 20, period_s: float = 1 / 15
) -> float:
    """Process CPU time (ms) per frame when ``model`` runs one frame every ``period_s`` at ``level``.

    Unlike latency this also counts what worker threads burn between frames (onnxruntime's spinning).
    """
    model.set_level(level)
    model(example)
    start_cpu = time.process_time()
    next_frame = time.perf_counter()
    for _ in range(frames):
        model(example)
        next_frame += period_s
        time.sleep(max(0.0, next_frame - time.perf_counter()))
    return (time.process_time() - start_cpu) * 1000 / frames


def measure_switch_us(model, samples: int = 2000) -> float:
    """Median time of one ``set_level`` call in microseconds (cycling through all levels)."""
    previous = model.level
    times = []
    for i in range(samples):
        level = i % model.num_levels
        start = time.perf_counter_ns()
        model.set_level(level)
        times.append((time.perf_counter_ns() - start) / 1000)
    model.set_level(previous)
    return statistics.median(times)
