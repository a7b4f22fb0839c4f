"""The torch backend: eager PyTorch on the model's per-level caches (sliced weights, BN folded)."""

from __future__ import annotations

import threading

import torch
from torch import Tensor

from .base import Engine


class TorchEngine(Engine):
    """Runs the throttleable torch model itself; ``run`` sets its level and calls ``forward``."""

    backend = "torch"
    provider = "cpu"

    def __init__(self, model) -> None:
        self.model = model.eval()
        self.num_levels = model.num_levels
        # The torch model holds one level at a time: keep set-level + forward together.
        self._lock = threading.Lock()

    @torch.no_grad()
    def run(self, level: int, inputs: Tensor):
        with self._lock:
            self.model.set_level(level)
            return self.model(inputs)

    def info(self) -> dict:
        return {"backend": self.backend, "provider": self.provider, "threads": torch.get_num_threads()}
