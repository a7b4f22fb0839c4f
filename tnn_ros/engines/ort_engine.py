"""The onnxruntime backend: one InferenceSession per level, built at configure time."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .base import Engine, EngineError
from .export_forms import conv1_windows, graph_feed, input_memory_order
from .graph_cache import (
    INPUT_NAME,
    GraphCache,
    cached_graph,
    export_graph,
    export_level,
    load_session,
    state_digest,
    user_cache_dir,
)

# Execution providers in order of preference; only the installed ones are asked for.
PROVIDER_PREFERENCE = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "OpenVINOExecutionProvider",
    "CPUExecutionProvider",
)
# Idle ORT worker threads spin (busy-wait) for work by default. On a robot CPU shared with other
# nodes that burns a core between frames for no gain at our frame rates (measured in docs/engines.md).
DEFAULT_SPINNING = False
# Intra-op threads of the gesture stream-step sessions: one. Measured with 2 on the 2-core VM, a step
# got no faster (level 7: 2.24 vs 2.32 ms) or slower (level 0: 1.03 vs 0.78 ms), and under load the
# hand-off to a second thread per op made it several times slower (docs/engines.md).
STREAM_THREADS = 1


def available_providers(preference: Sequence[str] = PROVIDER_PREFERENCE) -> list[str]:
    """The installed execution providers, in ``preference`` order (CPU always last)."""
    import onnxruntime as ort

    installed = set(ort.get_available_providers())
    chosen = [p for p in preference if p in installed]
    return chosen if "CPUExecutionProvider" in chosen else [*chosen, "CPUExecutionProvider"]


def session_options(num_threads: int, spinning: bool = DEFAULT_SPINNING, profile_prefix: str | None = None):
    """Options for a shared robot CPU: ``num_threads`` intra-op threads, one inter-op, all graph fusions."""
    import onnxruntime as ort

    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(num_threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    options.log_severity_level = 3  # errors only: ORT's warnings about unused initializers are noise
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return options


class OrtEngine(Engine):
    """Per-level ONNX graphs (cached by model hash) run by onnxruntime sessions.

    Args:
        model: the throttleable torch model in eval mode (exported level by level on a cache miss).
        model_path: its weights file; the graph cache lives beside it (or in the user cache dir).
            ``None``: graphs are keyed by a hash of the state dict and kept in the user cache dir.
        num_threads: intra-op threads of every session.
        cache_dir: put the graph cache here instead.
        spinning: let idle worker threads busy-wait (faster hand-off, burns CPU between frames).
        providers: execution providers in preference order (default: the installed ones of
            :data:`PROVIDER_PREFERENCE`).
        log: called with one line per notable event (exports, stale or corrupt graphs rebuilt).
    """

    backend = "onnxruntime"

    def __init__(
        self,
        model,
        model_path: str | os.PathLike | None = None,
        num_threads: int = 1,
        cache_dir: str | os.PathLike | None = None,
        spinning: bool = DEFAULT_SPINNING,
        providers: Sequence[str] | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        import onnxruntime as ort

        if model.training:
            raise EngineError("the model must be in eval mode")
        self._ort = ort
        self._log = log or (lambda line: None)
        self.num_levels = model.num_levels
        self.num_threads = int(num_threads)
        self.spinning = bool(spinning)
        example = model.example_input()
        self.input_shape = tuple(example.shape)
        # The graphs take their input in the memory order of the model's preprocessing (graph_cache).
        self.input_order = input_memory_order(model)
        self.input_windows = conv1_windows(model, example.shape[0])  # 0: one input, the clip
        if model_path is not None:
            self.cache = GraphCache.for_model_file(model_path, self.input_shape, cache_dir)
        else:
            stem = type(model).__name__.lower()
            folder = Path(cache_dir) if cache_dir is not None else user_cache_dir() / "engines"
            self.cache = GraphCache(state_digest(model), stem, self.input_shape, [folder / "unsaved"])
        self.providers = list(providers) if providers is not None else available_providers()
        self.cache_events: Counter = Counter()
        self.graph_paths: list[Path] = []
        self._sessions = []
        for level in range(self.num_levels):
            self._sessions.append(self._session(model, level, example))
        self.provider = self._sessions[0].get_providers()[0]
        self._stream_sessions = None  # the gesture net's stream-step graphs, built on first use
        self._output_names = [o.name for o in self._sessions[0].get_outputs()]
        self._single_output = len(self._output_names) == 1

    # --- building -----------------------------------------------------------------------------------
    def _session(self, model, level: int, example: Tensor):
        """The session of ``level`` from its cached graph (exported when missing, stale or unloadable)."""

        def export(tmp: str) -> None:
            export_level(model, level, example, tmp)

        what = f"level {level}"
        path = cached_graph(self.cache, level, export, what, self.cache_events, self._log)
        options = session_options(self.num_threads, self.spinning)
        session, path = load_session(
            self._ort,
            path,
            options,
            self.providers,
            lambda: export_graph(self.cache, level, export, what),
            self.cache_events,
            self._log,
        )
        self.graph_paths.append(path)
        return session

    # --- running ------------------------------------------------------------------------------------
    def feed(self, inputs: Tensor) -> dict:
        """The session input for ``inputs`` (logical shape): its buffer in the graphs' memory order.

        Preprocessed frames already are in that order, so this is a view; other layouts are copied.
        """
        if tuple(inputs.shape) != self.input_shape:
            raise ValueError(
                f"the exported graphs take inputs of shape {self.input_shape}, got {tuple(inputs.shape)}"
            )
        if inputs.dtype != torch.float32:
            raise ValueError(f"expected float32 inputs, got {inputs.dtype}")
        # np.ascontiguousarray copies only when the layout differs (numpy, on this thread); a gesture
        # graph's conv1 windows are views of that buffer (export_forms.graph_feed).
        buffer = np.ascontiguousarray(inputs.detach().permute(self.input_order).numpy())
        return graph_feed(buffer, INPUT_NAME, self.input_windows)

    def run(self, level: int, inputs: Tensor):
        outputs = self._sessions[level].run(self._output_names, self.feed(inputs))
        if self._single_output:
            return torch.from_numpy(outputs[0])
        return tuple(torch.from_numpy(o) for o in outputs)

    def gesture_stream(self, net):
        """A per-frame stream of the gesture ``net`` on its stream-step graphs (``ort_stream``).

        The graphs and sessions (same cache folder and model hash as the clip graphs, the engine's
        spinning) are built on the first call and shared by every later stream. They run on
        :data:`STREAM_THREADS` intra-op threads whatever ``num_threads`` is: a step is ~40 small
        ops of 0.01-0.5 ms, too small to split (docs/engines.md, "Streaming gesture step"). Raises
        EngineError or ValueError (a net with temporal padding) with one line; the line is also
        logged.
        """
        if self._stream_sessions is None:
            from .ort_stream import OrtStreamSessions

            try:
                self._stream_sessions = OrtStreamSessions(
                    net,
                    self.cache,
                    lambda: session_options(min(self.num_threads, STREAM_THREADS), self.spinning),
                    self.providers,
                    log=self._log,
                )
            except (EngineError, ValueError) as exc:
                self._log(f"no onnxruntime gesture stream ({exc}); streaming on torch")
                raise
        return self._stream_sessions.stream()

    def session(self, level: int):
        """The onnxruntime session of ``level`` (for profiling and inspection)."""
        return self._sessions[level]

    def info(self) -> dict:
        return {
            "backend": self.backend,
            "provider": self.provider,
            "threads": self.num_threads,
            "spinning": self.spinning,
            "onnxruntime": self._ort.__version__,
            "graph_cache": str(self.graph_paths[0].parent) if self.graph_paths else "",
            "cache_events": dict(self.cache_events),
            "stream_threads": min(self.num_threads, STREAM_THREADS),
        }
