"""The engine interface and the level facade that perception, the bench and the tests use.

An *engine* runs one throttleable network at a given level: ``run(level, inputs)`` returns what the
network's ``forward`` returns. :class:`EngineModel` puts an engine behind the model's own level
interface (``set_level``, ``set_utilization``, ``num_levels``, ``predict`` ...), so code written for
the torch model runs unchanged on any backend and a level switch stays an index change.
"""

from __future__ import annotations

import types
from typing import Any

import torch
from torch import Tensor

from ..throttle.levels import LevelSelection

BACKENDS = ("torch", "onnxruntime")

# Inference methods of the models that only use ``self(...)`` for the network: bound to the facade,
# so their forward runs on the engine (the detector's preprocess + decode, the gesture net's clip API).
_FACADE_METHODS = frozenset({"predict", "predict_clip"})


class EngineError(RuntimeError):
    """An engine cannot be built or used (one line saying why)."""


class Engine:
    """Runs one network at a chosen level. Subclasses set ``backend`` and ``provider``."""

    backend: str = ""
    provider: str = ""
    num_levels: int = 0

    def run(self, level: int, inputs: Tensor) -> Tensor | tuple[Tensor, ...]:
        """The network's outputs for ``inputs`` at ``level`` (same structure as ``forward``)."""
        raise NotImplementedError

    def warmup(self, example: Tensor, repeats: int = 1) -> None:
        """Run every level ``repeats`` times so no later frame pays first-call costs."""
        for _ in range(repeats):
            for level in range(self.num_levels):
                self.run(level, example)

    def info(self) -> dict:
        """What runs the network, for model cards, bench JSON and diagnostics."""
        return {"backend": self.backend, "provider": self.provider}


class EngineModel(LevelSelection):
    """A throttleable model whose forward runs on ``engine``; the same level interface as the model.

    Attributes not defined here (``classes``, ``input_size``, ``frame_size``, ``preprocess``, ``card``
    ...) are read from the wrapped torch model. ``predict`` / ``predict_clip`` are the model's own
    methods called with this facade as ``self``, so pre/post-processing is shared by all backends.
    """

    training = False

    def __init__(self, model: Any, engine: Engine, fallback_reason: str = "") -> None:
        if engine.num_levels != model.num_levels:
            raise EngineError(f"engine has {engine.num_levels} levels, model {model.num_levels}")
        self.model = model
        self.engine = engine
        self.schedule = model.schedule
        self.fallback_reason = fallback_reason
        self._level = model.level

    # --- running ----------------------------------------------------------------------------------
    def __call__(self, inputs: Tensor) -> Tensor | tuple[Tensor, ...]:
        # Read the level once: another thread may switch it while this forward runs.
        return self.engine.run(self._level, inputs)

    forward = __call__

    def eval(self) -> EngineModel:
        return self

    def warmup(self, example: Tensor | None = None, repeats: int = 1) -> None:
        """Run every level once (oneDNN primitives, ORT arenas) before the first real frame."""
        torch.set_flush_denormal(True)
        self.engine.warmup(self.model.example_input() if example is None else example, repeats)

    @property
    def backend(self) -> str:
        return self.engine.backend

    @property
    def provider(self) -> str:
        return self.engine.provider

    def engine_info(self) -> dict:
        """Backend, provider and (after a fallback) why the asked-for backend is not used."""
        info = self.engine.info()
        if self.fallback_reason:
            info["fallback_reason"] = self.fallback_reason
        return info

    def __getattr__(self, name: str) -> Any:
        # Only called for names not found on the facade itself.
        if name == "model":  # not set yet (during unpickling / a failed __init__)
            raise AttributeError(name)
        if name in _FACADE_METHODS:
            method = getattr(type(self.model), name, None)
            if method is not None:
                return types.MethodType(method, self)
        return getattr(self.model, name)

    def __repr__(self) -> str:
        return f"EngineModel({type(self.model).__name__}, backend={self.backend}, provider={self.provider})"
