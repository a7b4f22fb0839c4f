"""Per-level latency from a model card, and online quantiles of the latency measured on this device.

Latency rankings of network configurations transfer across devices; only the scale changes (Lu et
al., 2020). So the profile measured where the model was trained is kept as the *shape*
(:class:`LatencyProfile`, with a simple EMA scale for diagnostics), and :class:`LatencyQuantiles`
tracks what the deadline controller needs: a high quantile of the measured latency per level, the
card scaled by the observed slowdown for levels not seen lately, and a rescaling of all levels within
about a second when another process takes the CPU (or stops).
"""

from __future__ import annotations

import json
import math
import pathlib
from collections import Counter, deque
from typing import Any, Mapping, Sequence

import numpy as np


class LatencyProfileError(ValueError):
    """A model card / profile that cannot be used (names the source and what is wrong)."""


class LatencyProfile:
    """Predicted latency (ms) per utilization: piecewise linear between the card's levels, times a scale.

    ``points`` are (utilization, latency_ms) pairs, one per level. A level measured faster than a
    cheaper one is raised to that one's latency (``smoothed_levels`` counts them). ``accuracies``
    (optional, one per point, in the points' order) are the card's per-level accuracy, which the auto
    policy's accuracy tolerance uses; None when the card has none.
    """

    def __init__(
        self,
        points: Sequence[tuple[float, float]],
        ema_alpha: float = 0.2,
        source: str = "profile",
        scale_bounds: tuple[float, float] = (0.02, 50.0),
        accuracies: Sequence[float] | None = None,
    ) -> None:
        if not points:
            raise LatencyProfileError(f"{source}: no levels")
        if accuracies is not None:
            accuracies = [float(a) for a in accuracies]
            if len(accuracies) != len(points) or not all(0.0 <= a <= 1.0 for a in accuracies):
                raise LatencyProfileError(
                    f"{source}: need one accuracy in [0, 1] per level, got {accuracies}"
                )
            order = sorted(range(len(points)), key=lambda i: float(points[i][0]))
            accuracies = [accuracies[i] for i in order]
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
        self.accuracies: list[float] | None = accuracies
        self.ema_alpha = ema_alpha
        self.scale_bounds = scale_bounds
        self.scale = 1.0
        self.observations = 0

    @classmethod
    def from_card(
        cls, card: Mapping[str, Any] | str | pathlib.Path, ema_alpha: float = 0.2
    ) -> "LatencyProfile":
        """Read ``levels[].utilization`` / ``levels[].latency_ms`` from a model card (dict or JSON file).

        ``levels[].accuracy`` is kept when every level has a finite one in [0, 1] (else None).
        """
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
                f"{source}: every level needs utilization and latency_ms ({error})"
            ) from error
        accuracies = [level.get("accuracy") for level in levels]
        usable = all(
            isinstance(a, (int, float)) and not isinstance(a, bool) and math.isfinite(a) and 0.0 <= a <= 1.0
            for a in accuracies
        )
        return cls(points, ema_alpha=ema_alpha, source=source, accuracies=accuracies if usable else None)

    @classmethod
    def synthetic(
        cls, utilizations: Sequence[float], full_ms: float = 50.0, floor: float = 0.1, ema_alpha: float = 0.2
    ) -> "LatencyProfile":
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


# How many standard errors a change of the median log latency must exceed to count as a new regime.
# Stricter downwards: a false "the load went away" costs deadline misses, a false "load" only accuracy.
REGIME_Z_UP = 3.0
REGIME_Z_DOWN = 4.5


class LatencyQuantiles:
    """Online high quantile of measured frame latency per level, with fast contention detection.

    Frame latency at one level spreads wide (p95 at 3-5x the median when anything else runs), so the
    deadline controller predicts a level's *quantile*, not its mean:

    - per level, the last ``window`` measurements no older than ``horizon_s`` (latency including
      queueing, as the controller receives it); a level with at least ``min_samples`` of them is
      predicted by their ``quantile`` (default p95);
    - a level with fewer (never or long ago observed) gets the card profile times the observed
      slowdown: its nearest observed level's quantile / card latency, or, before any level has
      ``min_samples``, the ``quantile`` of measured / card ratios over all levels within the horizon,
      shrunk towards 1 by ``prior_samples`` pseudo-observations, so neither the first observation
      nor one spike sets the scale outright;
    - contention (another process takes the cores) changes the latency of every level at once. When
      the median of the last ``contention_window_s`` at the current level differs from the median of
      its older samples by more than ``contention_on`` (either way) and by more than a few standard
      errors of that difference (``REGIME_Z_UP`` / ``_DOWN``: a wide spread needs a bigger jump), the
      regime changed: every older sample of every level is rescaled by that factor (a *shift*), so
      all levels are predicted for the new regime within about a second, and again when the load
      goes away, long before the windows have refilled. Right after a level switch the new level
      has no older samples to compare with: its own quantile (or card x slowdown) stands until it has.

    Bad samples (NaN, inf, <= 0, u outside (0, 1]) are counted in ``rejected`` and ignored.
    """

    def __init__(
        self,
        profile: LatencyProfile,
        quantile: float = 0.95,
        window: int = 64,
        horizon_s: float = 10.0,
        min_samples: int = 20,
        prior_samples: int = 20,
        contention_window_s: float = 1.0,
        contention_min_samples: int = 4,
        contention_on: float = 1.5,
        frame_period_ms: float = 0.0,
    ) -> None:
        if not 0.5 <= quantile < 1.0:
            raise ValueError(f"quantile must be in [0.5, 1), got {quantile}")
        if window < 2 or min_samples < 1 or prior_samples < 0 or contention_min_samples < 1:
            raise ValueError("window >= 2, min_samples >= 1, prior_samples >= 0, contention_min_samples >= 1")
        if horizon_s <= contention_window_s or contention_window_s <= 0:
            raise ValueError(
                f"need 0 < contention_window_s ({contention_window_s}) < horizon_s ({horizon_s})"
            )
        if contention_on <= 1.0:
            raise ValueError(f"contention_on must be > 1, got {contention_on}")
        if not (math.isfinite(frame_period_ms) and frame_period_ms >= 0.0):
            raise ValueError(f"frame_period_ms must be >= 0 (0: estimate), got {frame_period_ms}")
        self.profile = profile
        self.quantile = quantile
        self.window = int(window)
        self.horizon_s = horizon_s
        self.min_samples = int(min_samples)
        self.prior_samples = int(prior_samples)
        self.contention_window_s = contention_window_s
        self.contention_min_samples = int(contention_min_samples)
        self.contention_on = contention_on
        self.fixed_period_ms = float(frame_period_ms)
        self._samples: dict[int, deque[list[float]]] = {
            i: deque(maxlen=self.window) for i in range(len(profile.utilizations))
        }  # [t, ms with queueing, service ms (without)]
        self._arrivals: deque[float] = deque(maxlen=self.window)  # estimated camera arrival of each frame
        self._ratios: deque[list[float]] = deque(maxlen=4 * self.window)  # [t, ms / card]
        self.last_level: int | None = None
        self.last_time: float | None = None
        self.observations = 0
        self.rejected: Counter[str] = Counter()
        self.shifts: list[tuple[float, float]] = []  # (time, factor) of every regime change seen

    @property
    def utilizations(self) -> list[float]:
        return self.profile.utilizations

    def level_of(self, u: float) -> int:
        """Index of the profile level nearest to utilization ``u``."""
        return int(np.argmin([abs(u - level) for level in self.profile.utilizations]))

    def observe(self, u: float, latency_ms: float, now: float, queue_ms: float = 0.0) -> str | None:
        """Record one frame's latency (ms, queueing included) at applied ``u``; why rejected, or None.

        ``queue_ms`` is the part of ``latency_ms`` the frame waited before its processing started:
        the rest is the worker's service time (what limits throughput), and ``now - latency_ms``
        is when the frame arrived (what the camera's frame period is estimated from).
        """
        try:
            u, latency_ms, now, queue_ms = float(u), float(latency_ms), float(now), float(queue_ms)
        except (TypeError, ValueError):
            self.rejected["not_a_number"] += 1
            return f"latency sample not a number (u={u!r}, latency_ms={latency_ms!r})"
        if not (math.isfinite(u) and 0.0 < u <= 1.0):
            self.rejected["utilization"] += 1
            return f"latency sample at unusable utilization {u}"
        if not (math.isfinite(latency_ms) and latency_ms > 0.0):
            self.rejected["latency"] += 1
            return f"unusable latency {latency_ms} ms"
        if not math.isfinite(now):
            self.rejected["time"] += 1
            return f"unusable time {now}"
        if not (math.isfinite(queue_ms) and 0.0 <= queue_ms < latency_ms):
            queue_ms = 0.0  # an unusable queueing delay: the whole latency counts as service
        level = self.level_of(u)
        self._samples[level].append([now, latency_ms, latency_ms - queue_ms])
        self._arrivals.append(now - latency_ms / 1e3)
        self._ratios.append([now, latency_ms / self.profile.latencies_ms[level]])
        self.last_level, self.last_time = level, now
        self.observations += 1
        factor = self.regime_change(now)
        if factor != 1.0:
            self._shift(factor, now)
        return None

    # -- estimates ----------------------------------------------------------------------------------

    def _fresh(self, samples, now: float, column: int = 1) -> list[float]:
        return [sample[column] for sample in samples if now - sample[0] <= self.horizon_s]

    def frame_period(self, now: float) -> float | None:
        """The camera's frame period (ms): ``frame_period_ms`` when set, else estimated, None if unknown.

        Estimated as the median gap between the arrival times of consecutive processed frames
        (result time minus latency): frames come at the camera's rate, and while the worker keeps up
        every frame is processed. It reads too long only once most frames are being dropped.
        """
        if self.fixed_period_ms > 0.0:
            return self.fixed_period_ms
        arrivals = sorted(t for t in self._arrivals if now - t <= self.horizon_s)
        gaps = [b - a for a, b in zip(arrivals, arrivals[1:]) if b > a]
        if len(gaps) < 2 * self.contention_min_samples:
            return None
        return float(np.median(gaps)) * 1e3

    def mean_service(self, u: float, now: float) -> float | None:
        """Mean service time (ms, latency without queueing) at ``u``: does the level keep up with the camera.

        A level without ``min_samples`` fresh frames of its own gets the
        card scaled like the nearest level that has them; None when no level has.
        """
        level = self.level_of(u)
        observed = [i for i in self._samples if len(self._fresh(self._samples[i], now)) >= self.min_samples]
        if not observed:
            return None
        nearest = level if level in observed else min(observed, key=lambda i: (abs(i - level), -i))
        mean = float(np.mean(self._fresh(self._samples[nearest], now, column=2)))
        return mean * self.profile.latencies_ms[level] / self.profile.latencies_ms[nearest]

    def slowdown(self, now: float, level: int | None = None) -> float:
        """Observed quantile of measured / card latency, for predicting an unseen ``level``.

        From the nearest level (to ``level``) with ``min_samples`` fresh frames of its own: the card's
        shape is trusted over the shortest distance. Otherwise over all levels; while fewer than
        ``min_samples`` ratios are known it is shrunk towards 1 (the card) by ``prior_samples``
        pseudo-observations: one spike must not set the scale.
        """
        if level is not None:
            observed = [
                i for i in self._samples if len(self._fresh(self._samples[i], now)) >= self.min_samples
            ]
            if observed:
                nearest = min(observed, key=lambda i: (abs(i - level), -i))
                fresh = self._fresh(self._samples[nearest], now)
                return float(np.quantile(fresh, self.quantile)) / self.profile.latencies_ms[nearest]
        ratios = self._fresh(self._ratios, now)
        if not ratios:
            return 1.0
        observed = float(np.quantile(ratios, self.quantile))
        n = len(ratios)
        if n >= self.min_samples:
            return observed
        return (n * observed + self.prior_samples * 1.0) / (n + self.prior_samples)

    def _split(self, samples, now: float) -> tuple[list[float], list[float]]:
        """(values of the last contention window, older values within the horizon)."""
        recent, older = [], []
        for t, value, *_ in samples:
            age = now - t
            if age <= self.contention_window_s:
                recent.append(value)
            elif age <= self.horizon_s:
                older.append(value)
        return recent, older

    def regime_change(self, now: float) -> float:
        """Recent / older median latency at the last observed level; 1.0 inside the dead band.

        > 1: latency just jumped (another process took the CPU); < 1: a load just went away.
        """
        if self.last_level is None:
            return 1.0
        # Only a level against its own past: measured / card ratios of different levels are not
        # comparable where fixed per-frame costs (decode, queueing) dominate the card's shape.
        enough = self.contention_min_samples
        recent, older = self._split(self._samples[self.last_level], now)
        if len(recent) < enough or len(older) < enough:
            return 1.0
        log_recent, log_older = np.log(recent), np.log(older)
        change = float(np.median(log_recent) - np.median(log_older))
        # A wide latency spread makes medians of a second's frames noisy: the jump must also be
        # several standard errors of the difference of two medians (robust sigma from the MAD).
        sigma = 1.4826 * float(np.median(np.abs(log_older - np.median(log_older))))
        standard_error = 1.2533 * sigma * math.sqrt(1.0 / len(recent) + 1.0 / len(older))
        z = REGIME_Z_UP if change > 0 else REGIME_Z_DOWN
        if abs(change) < max(math.log(self.contention_on), z * standard_error):
            return 1.0
        # The window's median crosses once most of it is in the new regime; its newest half is all
        # new by then, so the size of the change is measured there (the whole window would be partial
        # and the controller moves to another level before this one could correct it).
        newest = log_recent[len(log_recent) // 2 :]
        change = float(np.median(newest) - np.median(log_older))
        return min(max(math.exp(change), 0.25), 4.0)

    def _shift(self, factor: float, now: float) -> None:
        """Rescale every sample older than the contention window to the new regime."""
        for samples in (*self._samples.values(), self._ratios):
            for sample in samples:
                if now - sample[0] > self.contention_window_s:
                    sample[1:] = [value * factor for value in sample[1:]]
        self.shifts.append((now, factor))

    def last_shift(self, now: float) -> float:
        """Product of the regime shifts within the horizon (1.0: none), for the reason text."""
        product = 1.0
        for t, factor in self.shifts:
            if now - t <= self.horizon_s:
                product *= factor
        return product

    def predict(self, u: float, now: float) -> tuple[float, str]:
        """Predicted latency quantile (ms) at ``u`` and where it comes from (for the reason text)."""
        level = self.level_of(u)
        fresh = self._fresh(self._samples[level], now)
        if len(fresh) >= self.min_samples:
            value = float(np.quantile(fresh, self.quantile))
            source = f"measured p{self.quantile * 100:.0f} of {len(fresh)}"
        else:
            slowdown = self.slowdown(now, level)
            value = self.profile.base_ms(self.profile.utilizations[level]) * slowdown
            source = f"card x{slowdown:.2f}"
        shift = self.last_shift(now)
        if shift != 1.0:
            source += f", load change x{shift:.2f}"
        return value, source

    def predict_ms(self, u: float, now: float) -> float:
        return self.predict(u, now)[0]

    def diagnostics(self, now: float) -> dict[str, str]:
        values = {
            "latency_observations": str(self.observations),
            "latency_rejected": str(sum(self.rejected.values())),
            "latency_slowdown": f"{self.slowdown(now):.3f}",
            "latency_load_changes": str(len(self.shifts)),
            "latency_load_change_recent": f"{self.last_shift(now):.3f}",
        }
        period = self.frame_period(now)
        values["frame_period_ms"] = "unknown" if period is None else f"{period:.1f}"
        for u in self.profile.utilizations:
            values[f"latency_p{self.quantile * 100:.0f}_ms.{u:.3f}"] = f"{self.predict_ms(u, now):.1f}"
        return values
