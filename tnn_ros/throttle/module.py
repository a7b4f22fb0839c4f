"""Base class of runtime-throttleable networks."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .levels import LevelSchedule
from .ops import gated_ops


class ThrottleableModule(nn.Module):
    """A network whose executed width/depth is chosen per call by one level (or utilization).

    Subclasses build their layers from the gated ops in :mod:`tnn_ros.throttle.ops` with
    ``num_levels`` entries per width list and pass ``self.level`` to them in ``forward``. Switching
    level is O(1): it stores an index; the per-level caches were built ahead of time.
    """

    def __init__(self, num_levels: int = 8, min_level: int = 0) -> None:
        super().__init__()
        self.schedule = LevelSchedule(num_levels, min_level)
        self._level = num_levels - 1

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
        level = self.schedule.level_for(u)
        self._level = level
        return level

    def utilization_of(self, level: int) -> float:
        """The utilization that ``level`` stands for (its fraction of the full width)."""
        return self.schedule.utilization_of(level)

    def rebuild_caches(self) -> None:
        """Rebuild every gated op's per-level caches (after editing weights in place in eval mode)."""
        ops = gated_ops(self)
        wrong = sorted({op.num_levels for op in ops} - {self.num_levels})
        if wrong:
            raise ValueError(
                f"{type(self).__name__} has {self.num_levels} levels but contains gated ops "
                f"with {wrong} levels"
            )
        for op in ops:
            op.rebuild_cache()

    def example_input(self, batch_size: int = 1) -> Tensor:
        """A zero input of the shape the network runs on (used by ``warmup`` and MAC counting)."""
        raise NotImplementedError(f"{type(self).__name__} must implement example_input()")

    @torch.no_grad()
    def warmup(self, example: Tensor | None = None, repeats: int = 1) -> None:
        """Run every level ``repeats`` times so oneDNN builds its per-shape primitives now, not mid-run.

        Also turns on flushing of denormal floats (process-wide): trained weights produce tiny
        activations that otherwise make CPU convolutions up to 10x slower.
        """
        torch.set_flush_denormal(True)
        example = self.example_input() if example is None else example
        previous = self._level
        try:
            for _ in range(repeats):
                for level in range(self.num_levels):
                    self._level = level
                    self(example)
        finally:
            self._level = previous
