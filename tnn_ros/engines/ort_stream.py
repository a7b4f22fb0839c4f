"""Streaming gesture inference on onnxruntime: one static graph per level for ONE streaming step.

:class:`~tnn_ros.models.gesture_streaming.StreamingGestureNet` computes, for each new frame, only
that frame's slice of every layer of a ``temporal="valid"`` gated C3D, in eager PyTorch. Its work per
frame is about a quarter of a clip forward by MACs, but it is many tiny ops, so Python and
per-op framework overhead dominate. Here the whole step is one ONNX graph per level:

- inputs: ``frame``, the new normalised frame in the memory order the preprocessing makes
  (1, H, W, 3), and ``tap<i>_<d>`` for every earlier position layer ``i`` of the chain reads: the
  single position ``d`` of its history (its last ``span - 1`` input positions, oldest first; a pool
  layer remembers its input after the 2x2 spatial max, which is all its temporal max needs);
- outputs: ``logits`` (1, num_classes) of the clip ending at this frame, and ``entry<i>`` per
  history: the position the caller appends to that history. The first layer's entry is the frame
  itself, which the caller already holds, so it is not an output.

Each level has three graphs:

- *step* (``streamstep_``): frame + taps -> logits + entries, for frames whose result is read;
- *trunk* (``stream_``): frame + taps -> entries only (the chain up to its last layer with a
  history), for frames whose result nobody reads (the recognizer reads one every ``stride``
  frames). onnxruntime runs every node of a graph whatever outputs are asked for, so the step graph
  could not skip the layers after the last history;
- *prime* (``streamprime_``): a whole clip of frames -> logits + every history, for a level change.

Feeding single positions as inputs (instead of whole histories sliced inside the graph) removes the
graph's ``Slice`` nodes; one step graph instead of trunk + head graphs saves a session run and a
layout reorder of the trunk output each way (docs/engines.md has the measured split).

Weights are the level's sliced, BatchNorm-folded caches (as the clip graphs,
:mod:`~tnn_ros.engines.graph_cache`), so the graph holds only that level's channels. The histories
live in Python as ring buffers (:class:`_Ring`): a step feeds zero-copy views of the positions it
reads and writes each entry into the next free slot; only every ``RING_SLACK`` frames are the last
positions copied back to the front. The frames themselves are one ring shared by all levels, long
enough that the last ``clip_length`` frames are always one contiguous view (the prime graph's input).

:class:`OrtGestureStream` has the interface of ``StreamingGestureNet`` (``push``, ``push_tensor``,
``reset``, ``ready``, ``replays``). A level change rebuilds the histories from the buffered frames
at the new level, in one batched prime graph (the trunk over the whole clip, about the cost of a
clip forward, where ``clip_length`` single steps cost about four), so every result equals the clip
model's at the level it reports (tests: 1e-4).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.gesture import PIXEL_MEAN, PIXEL_STD, resize_frame
from ..models.gesture_streaming import _build_chain  # the layer chain the torch stream runs
from .base import EngineError
from .export_forms import BLOCK_CHANNELS, SPLIT_OFFSETS_BELOW, per_offset_convs, pixel_offset_convs
from .graph_cache import OPSET, GraphCache, cached_graph, export_graph, load_session

FRAME_NAME = "frame"
FRAMES_NAME = "frames"  # the prime graph's input: a whole clip of frames
LOGITS_NAME = "logits"
# The graphs of a level (trunk, step, prime) and their graph-cache keys / file-name prefixes.
PARTS = ("trunk", "step", "prime")
FORMS = {"trunk": "stream", "step": "streamstep", "prime": "streamprime"}
# Bump when StreamStepGraph or its export changes (cached stream graphs become stale).
# 3: the step split into trunk (histories) and head (logits) graphs; a prime graph for level changes.
# 4: single history positions as inputs (no Slice), one fused step graph (trunk + head) for frames
#    whose result is read, the frame not echoed as an output, the prime graph ends in the logits.
# 5: a conv on fewer than SPLIT_OFFSETS_BELOW channels per tap runs per tap, summed (no Concat).
STREAM_FORM_VERSION = 5
# Free slots after the history positions of every ring: the positions are copied back to the front
# once every RING_SLACK frames instead of the whole history shifting on every frame.
RING_SLACK = 16


@dataclass(frozen=True)
class StepSignature:
    """The graph interface of one level: which layers have histories, which positions they read."""

    frame_shape: tuple[int, ...]  # (1, H, W, 3)
    history_layers: tuple[int, ...]  # chain indices of the layers with a history
    history_shapes: tuple[tuple[int, ...], ...]  # (span - 1, ...) per such layer
    tap_positions: tuple[tuple[int, ...], ...]  # per such layer: the history positions it reads
    split: int  # the trunk is chain[: split + 1] (up to the last layer with a history)
    trunk_skips_last_tap: bool  # the last layer with a history is a pool (the trunk needs its entry only)

    @property
    def tap_names(self) -> list[str]:
        return [f"tap{i}_{p}" for i, taps in zip(self.history_layers, self.tap_positions) for p in taps]

    @property
    def input_names(self) -> list[str]:
        """Inputs of the step graph."""
        return [FRAME_NAME, *self.tap_names]

    @property
    def trunk_input_names(self) -> list[str]:
        """Inputs of the trunk graph: a last pool's temporal max is the head's, its tap not read."""
        names = self.input_names
        if self.trunk_skips_last_tap:
            names = [n for n in names if not n.startswith(f"tap{self.split}_")]
        return names

    @property
    def entry_layers(self) -> tuple[int, ...]:
        """Layers whose entry is a graph output (the first layer's entry is the frame input)."""
        return tuple(i for i in self.history_layers if i != 0)

    @property
    def entry_names(self) -> list[str]:
        return [f"entry{i}" for i in self.entry_layers]

    @property
    def prime_output_names(self) -> list[str]:
        """Outputs of the prime graph: the logits and the histories of the entry layers."""
        return [LOGITS_NAME, *(f"history{i}" for i in self.entry_layers)]


def step_signature(net, level: int, chain=None) -> StepSignature:
    """The input and history shapes of the stream step of ``net`` at ``level``.

    Read from the level's weights (conv widths), so any gating of any layer (conv1 included) gives
    the right shapes.
    """
    chain = _build_chain(net) if chain is None else chain
    width, height = net.frame_size
    channels = 3
    layers, shapes, taps = [], [], []
    for index, layer in enumerate(chain):
        if layer.kind == "conv":
            weight, _ = layer.conv._weights_for(level)
            in_channels = weight.shape[1] // layer.taps
            entry = (height, width, in_channels) if index == 0 else (in_channels, height, width)
            channels = weight.shape[0]
            stride = layer.spatial_stride(level)
            width, height = -(-width // stride), -(-height // stride)
        elif layer.kind == "pool" and not layer.active(level):
            entry = (channels, height, width)  # skipped (pool1 after a strided conv1): no history
        elif layer.kind == "pool":
            width, height = -(-width // 2), -(-height // 2)
            entry = (channels, height, width)  # remembered after the spatial max
        else:
            entry = (channels, height, width)
        if layer.span > 1:
            layers.append(index)
            shapes.append((layer.span - 1, *entry))
            # every dilation-th remembered position, oldest first (a pool reads the oldest only)
            taps.append(tuple(d * layer.dilation for d in range(layer.taps - 1)))
    split = layers[-1] if layers else 0
    frame_shape = (1, net.frame_size[1], net.frame_size[0], 3)
    skips = bool(layers) and chain[split].kind == "pool"
    return StepSignature(frame_shape, tuple(layers), tuple(shapes), tuple(taps), split, skips)


class StreamStepGraph(nn.Module):
    """The export form of one streaming step of ``net`` at ``level``: its trunk, step or prime graph.

    ``part="step"``: ``(frame, *taps) -> (logits, *entries)``; ``part="trunk"``: the same without
    the layers after the last history (``-> entries``); ``part="prime"``: ``frames -> (logits,
    *histories)`` over a whole clip.

    Mirrors ``StreamingGestureNet._step`` in the per-frame case on 4-D positions: a conv stacks its
    taps (every ``dilation``-th remembered position + the new one) on channels and runs one ``Conv``
    + ReLU (the RGB layer: one interleaved-pixel conv per tap, summed; taps of fewer than
    ``SPLIT_OFFSETS_BELOW`` channels: one conv per tap, summed); a pool is ``MaxPool`` 2x2 and,
    for a temporal pool, the maximum with the position ``dilation`` back.
    """

    def __init__(self, net: nn.Module, level: int, part: str = "step") -> None:
        super().__init__()
        if part not in PARTS:
            raise ValueError(f"part must be one of {PARTS}, got {part!r}")
        self.net = net
        self.level = level
        self.part = part
        self.chain = _build_chain(net)
        self.split = step_signature(net, level, self.chain).split

    def forward(self, x: Tensor, *taps: Tensor) -> Tensor | tuple[Tensor, ...]:
        if self.part == "prime":
            return self._prime(x)
        remembered = iter(taps)
        entries: list[Tensor] = []
        for index in range(self.split + 1):  # x: the new frame, (1, H, W, 3) channels-last
            layer = self.chain[index]
            if self.part == "trunk" and index == self.split and layer.kind == "pool":  # skips_last_tap
                entries.append(F.max_pool2d(x, 2, stride=2, ceil_mode=True))  # its max is the head's
                break
            layer_taps = [next(remembered) for _ in range(layer.taps - 1)] if layer.span > 1 else []
            x = self._layer(index, x, layer_taps, entries)
        entries = entries[1:] if self.chain[0].span > 1 else entries  # the frame is no output
        if self.part == "trunk":
            return tuple(entries)
        return (self._head(x), *entries)

    def _head(self, x: Tensor) -> Tensor:
        """The layers after the last history (one position per clip), the FC layers, the classifier."""
        for index in range(self.split + 1, len(self.chain)):
            x = self._layer(index, x, [], [])
        for fc in self.net.fcs:
            x = fc(x, self.level)
        return self.net.classifier(x, self.level)

    def _prime(self, frames: Tensor) -> tuple[Tensor, ...]:
        """The step over a whole clip of frames (P, H, W, 3) at once: (logits of the clip, *histories).

        ``StreamingGestureNet._step`` on a sequence: every layer computes all the positions its
        input sequence allows (batched), and its history is the last ``span - 1`` positions of its
        input (the first layer's, the frames, the caller holds). What a level change needs instead
        of ``clip_length`` single steps.
        """
        histories = []
        x = frames
        for index in range(self.split + 1):
            layer = self.chain[index]
            keep = layer.span - 1
            if not layer.active(self.level):
                continue
            if layer.kind == "pool":
                x = F.max_pool2d(x, 2, stride=2, ceil_mode=True)
                if keep:
                    histories.append(x[-keep:])
                if layer.taps == 2:  # the max of every pair `dilation` apart (sliding, all alignments)
                    x = torch.maximum(x[: x.shape[0] - layer.dilation], x[layer.dilation :])
                continue
            if keep and index:
                histories.append(x[-keep:])
            count = x.shape[0] - keep
            taps = [x[d * layer.dilation : d * layer.dilation + count] for d in range(layer.taps)]
            if layer.kind == "flatten":
                x = torch.stack(taps, dim=2).reshape(count, -1)  # (count, C, T, h, w) channel-major
                continue
            if index == 0:
                taps = [t.permute(0, 3, 1, 2) for t in taps]
            x = self._conv(layer, taps)
        return (self._head(x[-1:]), *histories)

    def _layer(self, index: int, x: Tensor, taps: list[Tensor], entries: list[Tensor]) -> Tensor:
        """Layer ``index`` on the new position ``x`` and its history ``taps``; appends its entry."""
        layer = self.chain[index]
        if not layer.active(self.level):
            return x
        if layer.kind == "pool":
            x = F.max_pool2d(x, 2, stride=2, ceil_mode=True)
            if layer.span > 1:
                entries.append(x)
                x = torch.maximum(taps[0], x)  # the position `dilation` back is the oldest
            return x
        if layer.span > 1:
            entries.append(x)
        taps = [*taps, x]  # oldest first, then the new position
        if layer.kind == "flatten":
            # (C, T, h, w) channel-major, as the clip model flattens
            return torch.cat(taps).transpose(0, 1).reshape(1, -1) if len(taps) > 1 else x.reshape(1, -1)
        if index == 0:
            taps = [t.permute(0, 3, 1, 2) for t in taps]  # logical NCHW views of channels-last pixels
        return self._conv(layer, taps)

    def _conv(self, layer, taps: list[Tensor]) -> Tensor:
        """The gated conv at the step's level on its temporal taps (each (1, C, H, W)), with its ReLU.

        The folded weight reads tap ``dt``'s channel ``c`` at input channel ``dt * C + c``: the taps
        stacked on channels in order. Few-channel (RGB) taps instead run one interleaved-pixel conv
        each, summed (:func:`~tnn_ros.engines.export_forms.pixel_offset_convs`), and taps of
        fewer than ``SPLIT_OFFSETS_BELOW`` channels one conv each on their own weight slice, summed.
        """
        conv, stride = layer.conv, layer.spatial_stride(self.level)
        weight, bias = conv._weights_for(self.level)
        channels = taps[0].shape[1]
        if len(taps) > 1 and channels < BLOCK_CHANNELS:
            # the interleaved channels-last pixels of each tap: (N, 1, H, W * C), a view
            pixels = [t.permute(0, 2, 3, 1).reshape(t.shape[0], 1, t.shape[2], -1) for t in taps]
            x = pixel_offset_convs(pixels, weight, bias, stride, channels)
        elif len(taps) > 1 and channels < SPLIT_OFFSETS_BELOW:
            x = per_offset_convs(taps, weight, bias, stride)  # no Concat of a partial channel block
        else:
            stacked = taps[0] if len(taps) == 1 else torch.cat(taps, dim=1)
            x = F.conv2d(stacked, weight, bias, stride=stride, padding=1)
        return F.relu(x) if conv.activation == "relu" else x


def _example_inputs(net, signature: StepSignature, part: str) -> tuple[list[Tensor], list[str], list[str]]:
    """Random example inputs of a graph ``part`` and its input / output names."""
    generator = torch.Generator().manual_seed(0)
    if part == "prime":
        frames = (net.clip_length, *signature.frame_shape[1:])
        return [torch.randn(frames, generator=generator)], [FRAMES_NAME], signature.prime_output_names
    inputs = [torch.randn(signature.frame_shape, generator=generator)]
    for shape, positions in zip(signature.history_shapes, signature.tap_positions):
        inputs += [torch.randn((1, *shape[1:]), generator=generator) for _ in positions]
    if part == "trunk":
        keep = [name in signature.trunk_input_names for name in signature.input_names]
        inputs = [tensor for tensor, kept in zip(inputs, keep) if kept]
        return inputs, signature.trunk_input_names, signature.entry_names
    return inputs, signature.input_names, [LOGITS_NAME, *signature.entry_names]


@torch.no_grad()
def export_stream_step(net, level: int, path: str | Path, part: str = "step") -> None:
    """Trace the stream graph ``part`` (trunk, step or prime) of ``net`` at ``level`` to ``path``.

    ``net``: eval mode, ``temporal="valid"``.
    """
    import warnings

    if net.training:
        raise ValueError("export a model in eval mode (its per-level caches hold the folded weights)")
    step = StreamStepGraph(net, level, part)
    step.training = False  # not .eval(): that would rebuild every cache of the model again
    signature = step_signature(net, level, step.chain)
    inputs, input_names, output_names = _example_inputs(net, signature, part)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant shape checks in a static graph: what we want
        torch.onnx.export(
            step,
            tuple(inputs),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=input_names,
            output_names=output_names,
            do_constant_folding=True,
        )


class OrtStreamSessions:
    """The stream graphs (trunk, step, prime) of every level of one gesture net, one session each.

    Cached by hash in the engine's graph cache (``cache``: same folder, model hash); built once per
    engine (configure time) and shared by every :class:`OrtGestureStream` made from it.
    ``options_factory()`` makes the session options of the engine (threads, spinning).
    """

    def __init__(
        self,
        net,
        cache: GraphCache,
        options_factory: Callable[[], object],
        providers: Sequence[str],
        log: Callable[[str], None] | None = None,
    ) -> None:
        import onnxruntime as ort

        if net.training:
            raise EngineError("the gesture net must be in eval mode")
        self._ort = ort
        self._log = log or (lambda line: None)
        self.net = net
        self.num_levels = net.num_levels
        self.chain = _build_chain(net)  # raises ValueError for a net with temporal padding
        frame_shape = (1, 3, net.frame_size[1], net.frame_size[0])
        self.caches = {part: cache.for_form(FORMS[part], frame_shape, STREAM_FORM_VERSION) for part in PARTS}
        self.cache_events: collections.Counter = collections.Counter()
        self.signatures = [step_signature(net, level, self.chain) for level in range(self.num_levels)]
        self.graph_paths: list[Path] = []  # trunk graphs, then step graphs, then prime graphs
        self.trunks, self.steps, self.primes = [], [], []
        for part, sessions in (("trunk", self.trunks), ("step", self.steps), ("prime", self.primes)):
            for level in range(self.num_levels):
                sessions.append(self._session(part, level, options_factory(), providers))
        self.provider = self.trunks[0].get_providers()[0]
        self.warmup()

    def warmup(self) -> None:
        """Run every graph once (onnxruntime allocates on a session's first run)."""
        for level, signature in enumerate(self.signatures):
            for session in (self.trunks[level], self.steps[level]):
                session.run(None, {i.name: np.zeros(i.shape, np.float32) for i in session.get_inputs()})
            frames = np.zeros((self.net.clip_length, *signature.frame_shape[1:]), np.float32)
            self.primes[level].run(None, {FRAMES_NAME: frames})

    def _session(self, part: str, level: int, options, providers):
        def export(tmp: str) -> None:
            export_stream_step(self.net, level, tmp, part)

        cache, what = self.caches[part], f"the stream {part} of level {level}"
        path = cached_graph(cache, level, export, what, self.cache_events, self._log)
        session, path = load_session(
            self._ort,
            path,
            options,
            providers,
            lambda: export_graph(cache, level, export, what),
            self.cache_events,
            self._log,
        )
        names = [i.name for i in session.get_inputs()]
        signature = self.signatures[level]
        expected = {"trunk": signature.trunk_input_names, "step": signature.input_names}
        expected = expected.get(part, [FRAMES_NAME])
        if names != expected:
            raise EngineError(f"{path}: graph inputs {names} are not the stream {part}'s {expected}")
        self.graph_paths.append(path)
        return session

    def stream(self) -> OrtGestureStream:
        """A new stream (own frames and histories) over these sessions."""
        return OrtGestureStream(self)

    def info(self) -> dict:
        return {
            "backend": "onnxruntime",
            "provider": self.provider,
            "graph_cache": str(self.graph_paths[0].parent) if self.graph_paths else "",
            "cache_events": dict(self.cache_events),
        }


class _Ring:
    """A history of ``keep`` positions, oldest first, followed by ``slack`` free slots.

    The history at window ``start`` is ``buffer[start : start + keep]``; the next position goes to
    the slot after it (``buffer[start + keep]``), then the window moves one position on. Only when
    the slots run out are the ``keep`` positions copied back to the front (:meth:`rewind`): one copy
    every ``slack`` frames instead of shifting the whole history on every frame.
    """

    def __init__(self, keep: int, position_shape: Sequence[int], slack: int) -> None:
        self.keep = keep
        self.buffer = np.zeros((keep + slack, *position_shape), np.float32)

    def position(self, start: int, index: int) -> np.ndarray:
        """Position ``index`` (``keep``: the slot of the next one) of the window at ``start``: a view."""
        return self.buffer[start + index : start + index + 1]

    def rewind(self, start: int) -> None:
        """Copy the window at ``start`` to the front (the window then starts at 0)."""
        self.buffer[: self.keep] = self.buffer[start : start + self.keep]


def _bind(binding, name: str, array: np.ndarray, output: bool) -> None:
    """Bind ``array`` (C-contiguous float32, kept alive by the caller) by address: no copy."""
    bind = binding.bind_output if output else binding.bind_input
    bind(name, "cpu", 0, np.float32, list(array.shape), array.ctypes.data)


class _LevelState:
    """One level's rings (the frames, then one per graph entry) and the IO bindings of its graphs.

    All rings share the window ``start``. The graphs read their inputs from and write their entries
    into the rings through IO bindings by address (no feed dict, no output allocation, no copies);
    a binding depends on the window position only, so each of the ``slack`` positions' bindings is
    made once, on first use, and kept with the level (a level visited again reuses them).
    """

    def __init__(self, sessions: OrtStreamSessions, level: int, frames_kept: int, slack: int) -> None:
        signature = sessions.signatures[level]
        self.signature = signature
        self.slack = slack
        self.trunk, self.step, self.prime = (
            sessions.trunks[level],
            sessions.steps[level],
            sessions.primes[level],
        )
        self.prime_names = signature.prime_output_names
        frames = _Ring(frames_kept, signature.frame_shape[1:], slack)
        by_layer = dict(zip(signature.history_layers, signature.history_shapes))
        self.rings = [frames]
        self.rings += [_Ring(by_layer[i][0], by_layer[i][1:], slack) for i in signature.entry_layers]
        # the ring and window position every tap input reads
        rings = dict(zip(signature.entry_layers, self.rings[1:]))
        sources = []
        for layer, shape, positions in zip(
            signature.history_layers, signature.history_shapes, signature.tap_positions
        ):
            ring = rings.get(layer, frames)
            base = ring.keep - shape[0]  # the frame ring keeps more positions than conv1 reads
            sources += [(ring, base + p) for p in positions]
        self.sources = dict(zip(signature.tap_names, sources))
        self.logits = np.zeros(sessions.steps[level].get_outputs()[0].shape, np.float32)
        self.bindings: dict[str, list] = {"trunk": [None] * slack, "step": [None] * slack}
        self.start = 0

    def frame_slot(self) -> np.ndarray:
        """Where the next frame goes."""
        return self.rings[0].position(self.start, self.rings[0].keep)

    def binding(self, part: str, start: int):
        """The IO binding of the ``part`` graph (trunk or step) at window ``start``."""
        binding = self.bindings[part][start]
        if binding is None:
            session = self.trunk if part == "trunk" else self.step
            binding = session.io_binding()
            names = self.signature.trunk_input_names if part == "trunk" else self.signature.input_names
            frames = self.rings[0]
            _bind(binding, FRAME_NAME, frames.position(start, frames.keep), output=False)
            for name in names[1:]:
                ring, index = self.sources[name]
                _bind(binding, name, ring.position(start, index), output=False)
            if part == "step":
                _bind(binding, LOGITS_NAME, self.logits, output=True)
            for name, ring in zip(self.signature.entry_names, self.rings[1:]):
                _bind(binding, name, ring.position(start, ring.keep), output=True)
            self.bindings[part][start] = binding
        return binding

    def run(self, part: str) -> None:
        """Run the trunk or step graph at the current window (entries into the slots), move it on."""
        (self.step if part == "step" else self.trunk).run_with_iobinding(self.binding(part, self.start))
        self.advance()

    def run_prime(self, clip_length: int) -> None:
        """Every history (and the logits) from the last clip in the frame ring; move the window on."""
        start = self.start
        frames = self.rings[0].buffer[start : start + clip_length]
        logits, *histories = self.prime.run(self.prime_names, {FRAMES_NAME: frames})
        self.logits[...] = logits
        for ring, history in zip(self.rings[1:], histories):
            # the histories after this frame: the window one position on
            ring.buffer[start + 1 : start + 1 + ring.keep] = history
        self.advance()

    def advance(self) -> None:
        """Move every ring's window one position on; rewind them all when the slots run out."""
        self.start += 1
        if self.start == self.slack:
            for ring in self.rings:
                ring.rewind(self.start)
            self.start = 0


class OrtGestureStream:
    """Per-frame gesture inference through the stream graphs (the ``StreamingGestureNet`` API).

    ``push(frame, level)`` takes one HxWx3 uint8 RGB frame and returns the logits (num_classes,) of
    the clip of the last ``clip_length`` frames at ``level`` (default: the net's level), or None
    while fewer frames have arrived. ``push(..., result=False)`` only updates the histories (the
    trunk graph) and returns None: for frames whose result nobody reads (the recognizer reads one
    every ``stride`` frames).

    The frame is normalised straight into the current level's frame ring; each level visited keeps
    its rings and bindings (:class:`_LevelState`, 2.0-3.5 MB per level for the shipped net).
    """

    backend = "onnxruntime"

    def __init__(self, sessions: OrtStreamSessions) -> None:
        self.sessions = sessions
        self.net = sessions.net
        self.clip_length = self.net.clip_length
        # the frame ring keeps clip_length - 1 frames: the last clip is one view (the prime input)
        self._frames_kept = self.clip_length - 1
        # room to replay a short buffer in place (a level change before the first full clip)
        self._slack = max(RING_SLACK, self.clip_length)
        self._states: dict[int, _LevelState] = {}
        self._state: _LevelState | None = None
        self._level: int | None = None
        self._count = 0  # frames since the last reset (at most clip_length)
        self._steps = 0  # frames run at the current level since its histories were cleared
        self.replays = 0  # level changes that rebuilt the histories (diagnostics)
        self._scale = np.float32(1.0 / (255.0 * PIXEL_STD))
        self._offset = np.float32(PIXEL_MEAN / PIXEL_STD)

    def reset(self) -> None:
        """Forget all frames and histories."""
        self._level = None
        self._count = 0
        self._steps = 0

    @property
    def ready(self) -> bool:
        """Whether the next ``push`` returns a result (``clip_length - 1`` frames are buffered)."""
        return self._count >= self.clip_length - 1

    # --- frames -----------------------------------------------------------------------------------
    def preprocess_frame(self, frame_rgb: np.ndarray) -> np.ndarray:
        """HxWx3 uint8 RGB -> (1, H, W, 3) float32 at the net's frame size, normalised as the clip model."""
        pixels = resize_frame(frame_rgb, self.net.frame_size)
        return self._normalise(pixels, np.empty((1, *pixels.shape), np.float32))

    def _normalise(self, pixels: np.ndarray, out: np.ndarray) -> np.ndarray:
        np.multiply(pixels, self._scale, out=out[0])  # uint8 -> float32 (as .astype, then *=)
        out -= self._offset
        return out

    def push(self, frame_rgb: np.ndarray, level: int | None = None, result: bool = True) -> Tensor | None:
        """Add one frame; the clip logits (num_classes,) once ``clip_length`` frames have arrived."""
        pixels = resize_frame(frame_rgb, self.net.frame_size)  # raises on a bad frame: state unchanged
        self._enter(level)
        self._normalise(pixels, self._state.frame_slot())
        return self._run(result)

    def push_tensor(self, frame: Tensor, level: int | None = None, result: bool = True) -> Tensor | None:
        """:meth:`push` for an already normalised (1, 3, H, W) frame (the torch stream's input)."""
        expected = (1, 3, self.net.frame_size[1], self.net.frame_size[0])
        if tuple(frame.shape) != expected:
            raise ValueError(f"expected a normalised frame of shape {expected}, got {tuple(frame.shape)}")
        self._enter(level)
        # a copy into the frame ring (the caller may reuse its tensor); numpy's transpose, not a
        # torch permute: one torch op less per frame
        np.copyto(self._state.frame_slot(), frame.detach().numpy().transpose(0, 2, 3, 1))
        return self._run(result)

    # --- levels -----------------------------------------------------------------------------------
    def _enter(self, level: int | None) -> None:
        """Make ``level`` (default: the net's) current; a change rebuilds the histories (a replay)."""
        level = self.net.level if level is None else self.net.schedule.level_index(level)
        if level == self._level:
            return
        frame_shape = self.sessions.signatures[level].frame_shape[1:]
        buffered = np.empty((0, *frame_shape), np.float32)
        if self._level is not None:
            self.replays += 1
            kept = min(self._count, self._frames_kept)
            old = self._state
            end = old.start + self._frames_kept  # the frames before the slot, newest last
            buffered = old.rings[0].buffer[end - kept : end].copy()
        self._start_level(level, buffered)

    def _start_level(self, level: int, buffered: np.ndarray) -> None:
        """Make ``level`` current with the ``buffered`` frames; a short buffer is replayed here.

        A full buffer (``clip_length - 1`` frames) is placed before the window's slot: the next frame
        completes a clip and the prime graph rebuilds every history from it. A shorter one (a level
        change within ``clip_length`` frames of a reset; no result can be due yet) is placed in the
        slots and stepped through with the trunk graph.
        """
        state = self._states.get(level)
        if state is None:
            state = self._states[level] = _LevelState(self.sessions, level, self._frames_kept, self._slack)
        self._state, self._level, self._steps = state, level, 0
        state.start = 0
        frames = state.rings[0]
        if len(buffered) == self._frames_kept:
            frames.buffer[: len(buffered)] = buffered
            return
        frames.buffer[frames.keep : frames.keep + len(buffered)] = buffered
        for _ in buffered:
            state.run("trunk")
            self._steps += 1

    # --- steps ------------------------------------------------------------------------------------
    def _run(self, result: bool) -> Tensor | None:
        """Run the graphs on the frame in the slot; the logits when a result is due and asked for."""
        self._count = min(self._count + 1, self.clip_length)
        state = self._state
        if self._steps == 0 and self._count == self.clip_length:
            state.run_prime(self.clip_length)  # a fresh level with a whole clip: one batched graph
            self._steps = self.clip_length
        else:
            self._steps += 1
            result = result and self._steps >= self.clip_length
            state.run("step" if result else "trunk")
        # a copy: the bound logits buffer is overwritten by the next step
        return torch.from_numpy(state.logits[0].copy()) if result else None
