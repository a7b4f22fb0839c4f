"""Per-level latency profile from a model card, with an online scale correction.

Latency rankings of network configurations transfer across devices; only the scale changes (Lu et
al., 2020). So the profile measured where the model was trained is kept as the *shape*, and one
scale factor, an EMA of measured / predicted latency at the applied utilization, adapts it to the
device the controller runs on.
"""

from __future__ import annotations

import json
import math
import pathlib
from typing import Any, Mapping, Sequence

import numpy as np


class LatencyProfileError(ValueError):
    """A model card / profile that cannot be used (names the source and what is wrong)."""


class LatencyProfile:
    """Predicted latency (ms) per utilization: piecewise linear between the card's levels, times a scale.

    ``points`` are (utilization, latency_ms) pairs, one per level. A level measured faster than a
    cheaper one is raised to that one's latency (``smoothed_levels`` counts them).
    """

    def __init__(self, points: Sequence[tuple[float, float]], ema_alpha: float = 0.2,
                 source: str = "profile", scale_bounds: tuple[float, float] = (0.02, 50.0)) -> None:
        if not points:
            raise LatencyProfileError(f"{source}: no levels")
        ordered = sorted((float(u), float(ms)) for u, ms in points)
        utilizations = [u for u, _ in ordered]
        latencies = [ms for _, ms in ordered]
        for u, ms in ordered:
            if not (0.0 < u <= 1.0 and math.isfinite(ms) and ms > 0.0):
                raise LatencyProfileError(f"{source}: bad level (utilization={u}, latency_ms={ms})")
        if len(set(utilizations)) != len(utilizations):
            raise LatencyProfileError(f"{source}: duplicate utilizations {utilizations}")
        # Timing noise can make a cheaper level measure a little slower than the next one; the
        # cost ranking is monotone (nested prefixes), so keep the running maximum and say so.
        self.smoothed_levels = sum(1 for a, b in zip(latencies, latencies[1:]) if b < a)
        latencies = list(np.maximum.accumulate(latencies))
        if not 0.0 < ema_alpha <= 1.0:
            raise ValueError(f"ema_alpha must be in (0, 1], got {ema_alpha}")
        self.source = source
        self.utilizations: list[float] = utilizations
        self.latencies_ms: list[float] = latencies
        self.ema_alpha = ema_alpha
        self.scale_bounds = scale_bounds
        self.scale = 1.0
        self.observations = 0

    @classmethod
    def from_card(cls, card: Mapping[str, Any] | str | pathlib.Path,
                  ema_alpha: float = 0.2) -> "LatencyProfile":
        """Read ``levels[].utilization`` / ``levels[].latency_ms`` from a model card (dict or JSON file)."""
        source = "model card"
        if not isinstance(card, Mapping):
            source = str(card)
            try:
                card = json.loads(pathlib.Path(card).read_text())
            except (OSError, json.JSONDecodeError) as error:
                raise LatencyProfileError(f"{source}: cannot read model card: {error}") from error
        levels = card.get("levels") if isinstance(card, Mapping) else None
        if not isinstance(levels, list) or not levels:
            raise LatencyProfileError(f"{source}: no 'levels' list")
        try:
            points = [(level["utilization"], level["latency_ms"]) for level in levels]
        except (KeyError, TypeError) as error:
            raise LatencyProfileError(
                f"{source}: every level needs utilization and latency_ms ({error})") from error
        return cls(points, ema_alpha=ema_alpha, source=source)

    @classmethod
    def synthetic(cls, utilizations: Sequence[float], full_ms: float = 50.0, floor: float = 0.1,
                  ema_alpha: float = 0.2) -> "LatencyProfile":
        """A stand-in shape for width-sliced nets: latency ~ floor + (1 - floor) * u^2 (MACs ~ width^2)."""
        points = [(u, full_ms * (floor + (1.0 - floor) * u * u)) for u in utilizations]
        return cls(points, ema_alpha=ema_alpha, source="synthetic")

    def base_ms(self, u: float) -> float:
        """Latency the card predicts at ``u`` (interpolated between levels, clamped at the ends)."""
        return float(np.interp(u, self.utilizations, self.latencies_ms))

    def predict_ms(self, u: float) -> float:
        """Latency predicted on this device: card latency times the learned scale."""
        return self.scale * self.base_ms(u)

    def observe(self, u: float, measured_ms: float) -> None:
        """Fold one measurement at applied utilization ``u`` into the scale (first one sets it)."""
        if not (math.isfinite(u) and math.isfinite(measured_ms) and measured_ms > 0.0):
            raise ValueError(f"unusable latency observation u={u}, measured_ms={measured_ms}")
        low, high = self.scale_bounds
        ratio = min(max(measured_ms / self.base_ms(u), low), high)
        if self.observations == 0:
            self.scale = ratio
        else:
            self.scale += self.ema_alpha * (ratio - self.scale)
        self.observations += 1

    def reset_scale(self) -> None:
        self.scale = 1.0
        self.observations = 0

    def __repr__(self) -> str:
        return f"LatencyProfile({self.source}, levels={len(self.utilizations)}, scale={self.scale:.3f})"

    @property
    def description(self) -> str:
        """One line for logs / diagnostics."""
        low, high = self.latencies_ms[0], self.latencies_ms[-1]
        text = f"{self.source}: {len(self.utilizations)} levels, {low:.1f}..{high:.1f} ms"
        if self.smoothed_levels:
            text += f", {self.smoothed_levels} non-monotone level(s) smoothed"
        return text
