"""Base class of runtime-throttleable networks."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .levels import LevelSchedule, LevelSelection
from .ops import gated_ops


class ThrottleableModule(LevelSelection, nn.Module):
    """A network whose executed width/depth is chosen per call by one level (or utilization).

    Subclasses build their layers from the gated ops in :mod:`tnn_ros.throttle.ops` with
    ``num_levels`` entries per width list and pass ``self.level`` to them in ``forward``. Switching
    level is O(1): it stores an index; the per-level caches were built ahead of time.
    """

    def __init__(self, num_levels: int = 8, min_level: int = 0) -> None:
        super().__init__()
        self.schedule = LevelSchedule(num_levels, min_level)
        self._level = num_levels - 1

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
