"""Utilization -> level schedule and per-level channel widths (the nested prefix rule)."""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence

# Channel counts are multiples of this: oneDNN/NEON kernels are fastest on vectors of 8 (fp32 AVX2).
CHANNEL_MULTIPLE = 8


class LevelSchedule:
    """Maps a utilization u in [0, 1] to one of ``num_levels`` quantized levels.

    Level ``k`` keeps the first ``k + 1`` of ``num_levels`` equal components (channel groups or
    blocks), so the set kept at a lower u is a prefix of the set kept at a higher u. The rule is the
    nested prefix rule of Hostetler et al. (c = number of components kept)::

        c = clamp(floor(u * n), c_min, n),   level = c - 1,   c_min = min_level + 1

    u is read as a *budget*: the level chosen never stands for more than u (except where ``min_level``
    forces a floor), so ``level_for(utilization_of(k)) == k`` for every level at or above
    ``min_level``.
    """

    def __init__(self, num_levels: int = 8, min_level: int = 0) -> None:
        if not isinstance(num_levels, int) or num_levels < 1:
            raise ValueError(f"num_levels must be a positive int, got {num_levels!r}")
        if not isinstance(min_level, int) or not 0 <= min_level < num_levels:
            raise ValueError(f"min_level must be an int in [0, {num_levels - 1}], got {min_level!r}")
        self.num_levels = num_levels
        self.min_level = min_level

    def level_for(self, u: float) -> int:
        """Return the level for utilization ``u`` (clamped to [0, 1]); NaN raises ValueError."""
        u = float(u)
        if math.isnan(u):
            raise ValueError("utilization is NaN")
        u = min(max(u, 0.0), 1.0)
        # The epsilon keeps u == (k + 1) / n on level k despite rounding: setpoints travel as
        # std_msgs/Float32, whose 0.7 is 0.69999999 (float32 has ~7 significant digits).
        kept = math.floor(u * self.num_levels + 1e-5)
        kept = min(max(kept, self.min_level + 1), self.num_levels)
        return kept - 1

    def level_index(self, level) -> int:
        """``level`` as an int index of this schedule (numpy ints too); ValueError otherwise."""
        try:
            level = operator.index(level)
        except TypeError:
            raise ValueError(f"level must be an int, got {level!r}") from None
        if not 0 <= level < self.num_levels:
            raise ValueError(f"level {level} out of range [0, {self.num_levels - 1}]")
        return level

    def utilization_of(self, level: int) -> float:
        """Return the utilization a level stands for: the fraction of components it keeps, in (0, 1]."""
        self._check(level)
        return (level + 1) / self.num_levels

    def utilizations(self) -> list[float]:
        """Return ``utilization_of`` for every level, lowest first."""
        return [self.utilization_of(k) for k in range(self.num_levels)]

    def _check(self, level: int) -> None:
        if not isinstance(level, int) or isinstance(level, bool) or not 0 <= level < self.num_levels:
            raise ValueError(f"level must be an int in [0, {self.num_levels - 1}], got {level!r}")

    def __repr__(self) -> str:
        return f"LevelSchedule(num_levels={self.num_levels}, min_level={self.min_level})"


def round_channels(channels: float, multiple: int = CHANNEL_MULTIPLE) -> int:
    """Round a channel count to the nearest positive multiple of ``multiple``."""
    return max(multiple, int(round(channels / multiple)) * multiple)


def level_widths(
    channels: int, num_levels: int, min_fraction: float = 0.5, multiple: int = CHANNEL_MULTIPLE
) -> list[int]:
    """Channels kept at each level for a layer of ``channels`` full width.

    The width fraction grows linearly from ``min_fraction`` (level 0) to 1 (top level); counts are
    rounded to multiples of ``multiple`` (the channel group size) and are non-decreasing, so every
    level keeps a prefix of the groups of the next one. The top level is always the full width.
    """
    if channels % multiple:
        raise ValueError(f"channels ({channels}) must be a multiple of {multiple}")
    if not 0.0 < min_fraction <= 1.0:
        raise ValueError(f"min_fraction must be in (0, 1], got {min_fraction}")
    if num_levels < 1:
        raise ValueError(f"num_levels must be >= 1, got {num_levels}")
    widths = []
    for level in range(num_levels):
        fraction = 1.0 if num_levels == 1 else min_fraction + (1.0 - min_fraction) * level / (num_levels - 1)
        width = min(round_channels(channels * fraction, multiple), channels)
        widths.append(max(width, widths[-1]) if widths else width)
    widths[-1] = channels
    return widths


def check_widths(widths: Sequence[int], full: int, name: str) -> list[int]:
    """Validate a per-level width list: positive, non-decreasing, at most ``full``, top == ``full``."""
    widths = [int(w) for w in widths]
    if not widths:
        raise ValueError(f"{name}: empty width list")
    if any(w <= 0 for w in widths) or any(b < a for a, b in zip(widths, widths[1:])):
        raise ValueError(f"{name}: widths must be positive and non-decreasing, got {widths}")
    if widths[-1] != full:
        raise ValueError(f"{name}: the top level must use the full width {full}, got {widths}")
    return widths


class LevelSelection:
    """The level interface (``level``, ``set_level``, ``set_utilization``, ...) over ``self.schedule``.

    Shared by :class:`~tnn_ros.throttle.ThrottleableModule` and the inference-engine facade, which
    hold a :class:`LevelSchedule` as ``schedule`` and the selected level as ``_level``. Switching is
    O(1): it stores an index.
    """

    schedule: LevelSchedule
    _level: int

    @property
    def num_levels(self) -> int:
        """Number of quantized levels (level ``num_levels - 1`` is the full network)."""
        return self.schedule.num_levels

    @property
    def level(self) -> int:
        """The level the next forward runs at."""
        return self._level

    def set_level(self, level: int) -> None:
        """Select the level for the following forwards; raises ValueError when out of range."""
        self._level = self.schedule.level_index(level)

    def set_utilization(self, u: float) -> int:
        """Select the level for utilization ``u`` (clamped to [0, 1]) and return it."""
        self._level = self.schedule.level_for(u)
        return self._level

    def utilization_of(self, level: int) -> float:
        """The utilization that ``level`` stands for (its fraction of the full width)."""
        return self.schedule.utilization_of(level)
