"""Per-level inference engines behind the throttleable models' level interface.

``create_engine(model, "onnxruntime", model_path=...)`` returns an :class:`EngineModel`: the model's
own interface (``set_level``, ``set_utilization``, ``predict``/``predict_clip``, ``num_levels``, card)
with the network run by the chosen backend. Backends:

- ``torch``: eager PyTorch on the model's per-level caches (sliced weights, BN folded).
- ``onnxruntime``: one static ONNX graph per level, exported once and cached by the model file's
  hash, one session per level built here; a level switch picks a session. What is exported is the
  model's export form (:mod:`.export_forms`: same outputs, graph-friendly ops, input in the memory
  order of the model's preprocessing, so frames are fed without a copy).

A missing onnxruntime never fails: the torch backend is used and the reason is logged and kept in
``engine_info()["fallback_reason"]``. A graph that cannot be built or loaded raises
:class:`EngineError` with one line saying why.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from .base import BACKENDS, Engine, EngineError, EngineModel
from .torch_engine import TorchEngine


def onnxruntime_missing() -> str:
    """Why onnxruntime cannot be used here ("" when it can)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        return f"onnxruntime is not installed ({exc})"
    try:
        import onnx  # noqa: F401  (torch.onnx.export needs it to write graphs)
    except ImportError as exc:
        return f"onnx (needed to export graphs) is not installed ({exc})"
    return ""


def create_engine(
    model,
    backend: str = "torch",
    *,
    model_path: str | os.PathLike | None = None,
    num_threads: int = 1,
    cache_dir: str | os.PathLike | None = None,
    spinning: bool | None = None,
    log: Callable[[str], None] | None = None,
    warmup: bool = True,
) -> EngineModel:
    """Put ``model`` (a throttleable torch model in eval mode) behind ``backend``.

    Args:
        model: a throttleable torch model (put in eval mode here).
        backend: one of :data:`BACKENDS`.
        model_path: the model's weights file (keys and places the ONNX graph cache).
        num_threads: intra-op threads of the onnxruntime sessions (torch: set by the caller, per thread).
        cache_dir: keep exported graphs here instead of beside the model file.
        spinning: onnxruntime worker threads busy-wait between ops (default: off, see docs/engines.md).
        log: receives one line for a fallback, an export, a stale or corrupt graph.
        warmup: run every onnxruntime level once now (first runs allocate; torch models warm up when
            they are loaded).

    Raises:
        ValueError: unknown backend. EngineError: the onnxruntime graphs cannot be built or loaded.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    log = log or (lambda line: None)
    model.eval()
    if backend == "onnxruntime":
        missing = onnxruntime_missing()
        if missing:
            reason = f"{missing}: using the torch backend"
            log(reason)
            return EngineModel(model, TorchEngine(model), fallback_reason=reason)
        from .ort_engine import DEFAULT_SPINNING, OrtEngine

        engine = OrtEngine(
            model,
            model_path,
            num_threads=num_threads,
            cache_dir=cache_dir,
            spinning=DEFAULT_SPINNING if spinning is None else spinning,
            log=log,
        )
        wrapped = EngineModel(model, engine)
        if warmup:
            wrapped.warmup()
        return wrapped
    return EngineModel(model, TorchEngine(model))


__all__ = [
    "BACKENDS",
    "Engine",
    "EngineError",
    "EngineModel",
    "TorchEngine",
    "create_engine",
    "onnxruntime_missing",
]
