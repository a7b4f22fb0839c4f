"""Streaming gesture inference on onnxruntime: one static graph per level for ONE streaming step.

:class:`~tnn_ros.models.gesture_streaming.StreamingGestureNet` computes, for each new frame, only
that frame's slice of every layer of a ``temporal="valid"`` gated C3D, in eager PyTorch. Its work per
frame is about a quarter of a clip forward by MACs, but it is many tiny ops, so Python and
per-op framework overhead dominate. Here the whole step is one ONNX graph per level:

- inputs: ``frame``, the new normalised frame in the memory order the preprocessing makes
  (1, H, W, 3), and ``history<i>`` for every layer ``i`` of the chain that reads earlier positions:
  its last ``span - 1`` input positions stacked, oldest first (a pool layer remembers its input after
  the 2x2 spatial max, which is all its temporal max needs);
- outputs: ``logits`` (1, num_classes) of the clip ending at this frame, and ``entry<i>`` per
  history: the position the caller appends to that history (dropping its oldest).

The step is exported as two graphs: the *trunk* (frame and histories in; entries and ``trunk``, the
output of the last layer with a history, out) and the *head* (``trunk`` in, ``logits`` out: the
layers after the last temporal pool, which see one position per clip, the FC layers and the
classifier). A frame whose result nobody reads (the recognizer reads one every ``stride`` frames)
runs only the trunk; onnxruntime runs every node of a graph whatever outputs are asked for, so one
graph could not skip the head.

Weights are the level's sliced, BatchNorm-folded caches (as the clip graphs,
:mod:`~tnn_ros.engines.graph_cache`), so the graph holds only that level's channels. The histories
live in Python as fixed-shape numpy buffers rolled in place, the only Python work per frame.

:class:`OrtGestureStream` has the interface of ``StreamingGestureNet`` (``push``, ``push_tensor``,
``reset``, ``ready``, ``replays``). A level change rebuilds the histories from the buffered frames
at the new level, in one batched *prime* graph per level (the trunk over the whole clip, about the
cost of a clip forward, where ``clip_length`` single steps cost about four), so every result equals
the clip model's at the level it reports (tests: 1e-4).
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
from .export_forms import BLOCK_CHANNELS, conv_on_interleaved_pixels
from .graph_cache import OPSET, GraphCache, cached_graph, export_graph, load_session

FRAME_NAME = "frame"
FRAMES_NAME = "frames"  # the prime graph's input: a whole clip of frames
TRUNK_NAME = "trunk"
LOGITS_NAME = "logits"
# The graphs of a level (trunk, head, prime) and their graph-cache keys / file-name prefixes.
PARTS = ("trunk", "head", "prime")
FORMS = {"trunk": "stream", "head": "streamhead", "prime": "streamprime"}
# Bump when StreamStepGraph or its export changes (cached stream graphs become stale).
# 3: the step split into trunk (histories) and head (logits) graphs; a prime graph for level changes.
STREAM_FORM_VERSION = 3


@dataclass(frozen=True)
class StepSignature:
    """The graph interface of one level: which layers have histories, their shapes, the split."""

    frame_shape: tuple[int, ...]  # (1, H, W, 3)
    history_layers: tuple[int, ...]  # chain indices of the layers with a history
    history_shapes: tuple[tuple[int, ...], ...]  # (span - 1, ...) per such layer
    split: int  # the trunk is chain[: split + 1] (up to the last layer with a history)
    trunk_shape: tuple[int, ...]  # output of the trunk = input of the head

    @property
    def input_names(self) -> list[str]:
        """Trunk inputs."""
        return [FRAME_NAME, *(f"history{i}" for i in self.history_layers)]

    @property
    def output_names(self) -> list[str]:
        """Trunk outputs."""
        return [TRUNK_NAME, *(f"entry{i}" for i in self.history_layers)]


def step_signature(net, level: int, chain=None) -> StepSignature:
    """The input, history and trunk shapes of the stream step of ``net`` at ``level``.

    Read from the level's weights (conv widths), so any gating of any layer (conv1 included) gives
    the right shapes.
    """
    chain = _build_chain(net) if chain is None else chain
    width, height = net.frame_size
    channels = 3
    layers, shapes, outputs = [], [], []
    for index, layer in enumerate(chain):
        if layer.kind == "conv":
            weight, _ = layer.conv._weights_for(level)
            in_channels = weight.shape[1] // layer.taps
            entry = (height, width, in_channels) if index == 0 else (in_channels, height, width)
            channels = weight.shape[0]
            output = (1, channels, height, width)
        elif layer.kind == "pool":
            width, height = -(-width // 2), -(-height // 2)
            entry = (channels, height, width)  # remembered after the spatial max
            output = (1, *entry)
        else:
            entry = (channels, height, width)
            output = (1, channels * layer.taps * height * width)
        outputs.append(output)
        if layer.span > 1:
            layers.append(index)
            shapes.append((layer.span - 1, *entry))
    split = layers[-1] if layers else 0
    frame_shape = (1, net.frame_size[1], net.frame_size[0], 3)
    return StepSignature(frame_shape, tuple(layers), tuple(shapes), split, outputs[split])


class StreamStepGraph(nn.Module):
    """The export form of one streaming step of ``net`` at ``level``: its trunk or its head.

    ``part="trunk"``: ``(frame, *histories) -> (trunk, *entries)``, the chain up to its last layer
    with a history; ``part="head"``: ``trunk -> logits``, the rest of the chain (one position per
    frame, nothing remembered), the FC layers and the classifier. A frame whose result nobody reads
    runs only the trunk.

    Mirrors ``StreamingGestureNet._step`` in the per-frame case on 4-D positions: a conv stacks its
    taps (every ``dilation``-th remembered position + the new one) on channels and runs one ``Conv``
    + ReLU (the RGB layer: one interleaved-pixel conv per tap, summed); a pool is ``MaxPool`` 2x2 and,
    for a temporal pool, the maximum with the position ``dilation`` back.
    """

    def __init__(self, net: nn.Module, level: int, part: str = "trunk") -> None:
        super().__init__()
        if part not in PARTS:
            raise ValueError(f"part must be one of {PARTS}, got {part!r}")
        self.net = net
        self.level = level
        self.part = part
        self.chain = _build_chain(net)
        self.split = step_signature(net, level, self.chain).split

    def forward(self, x: Tensor, *histories: Tensor) -> Tensor | tuple[Tensor, ...]:
        if self.part == "prime":
            return self._prime(x)
        if self.part == "head":
            for index in range(self.split + 1, len(self.chain)):
                x = self._layer(index, x, None, [])
            for fc in self.net.fcs:
                x = fc(x, self.level)
            return self.net.classifier(x, self.level)
        remembered = iter(histories)
        entries: list[Tensor] = []
        for index in range(self.split + 1):  # x: the new frame, (1, H, W, 3) channels-last
            history = next(remembered) if self.chain[index].span > 1 else None
            x = self._layer(index, x, history, entries)
        return (x, *entries)

    def _prime(self, frames: Tensor) -> tuple[Tensor, ...]:
        """The trunk over a whole clip of frames (P, H, W, 3) at once: (last trunk output, *histories).

        ``StreamingGestureNet._step`` on a sequence: every layer computes all the positions its
        input sequence allows (batched), and its history is the last ``span - 1`` positions of its
        input. What a level change needs instead of ``clip_length`` single steps.
        """
        histories = []
        x = frames
        for index in range(self.split + 1):
            layer = self.chain[index]
            keep = layer.span - 1
            if layer.kind == "pool":
                x = F.max_pool2d(x, 2, stride=2, ceil_mode=True)
                if keep:
                    histories.append(x[-keep:])
                if layer.taps == 2:  # the max of every pair `dilation` apart (sliding, all alignments)
                    x = torch.maximum(x[: x.shape[0] - layer.dilation], x[layer.dilation :])
                continue
            if keep:
                histories.append(x[-keep:])
            count = x.shape[0] - keep
            taps = [x[d * layer.dilation : d * layer.dilation + count] for d in range(layer.taps)]
            if layer.kind == "flatten":
                x = torch.stack(taps, dim=2).reshape(count, -1)  # (count, C, T, h, w) channel-major
                continue
            if index == 0:
                taps = [t.permute(0, 3, 1, 2) for t in taps]
            x = self._conv(layer.conv, taps)
        return (x[-1:], *histories)

    def _layer(self, index: int, x: Tensor, history: Tensor | None, entries: list[Tensor]) -> Tensor:
        """Layer ``index`` on the new position ``x``; appends the entry its history gets."""
        layer = self.chain[index]
        if layer.kind == "pool":
            x = F.max_pool2d(x, 2, stride=2, ceil_mode=True)
            if history is not None:
                entries.append(x)
                x = torch.maximum(history[:1], x)  # the position `dilation` back is the oldest
            return x
        taps = [x]
        if history is not None:
            entries.append(x)
            # every dilation-th remembered position, oldest first, then the new one (contiguous
            # single-position slices: no strided copy of the whole history)
            step = layer.dilation
            taps = [history[d * step : d * step + 1] for d in range(layer.taps - 1)] + [x]
        if layer.kind == "flatten":
            # (C, T, h, w) channel-major, as the clip model flattens
            return torch.cat(taps).transpose(0, 1).reshape(1, -1) if len(taps) > 1 else x.reshape(1, -1)
        if index == 0:
            taps = [t.permute(0, 3, 1, 2) for t in taps]  # logical NCHW views of channels-last pixels
        return self._conv(layer.conv, taps)

    def _conv(self, conv: nn.Module, taps: list[Tensor]) -> Tensor:
        """The gated conv at the step's level on its temporal taps (each (1, C, H, W)), with its ReLU.

        The folded weight reads tap ``dt``'s channel ``c`` at input channel ``dt * C + c``: the taps
        stacked on channels in order. Few-channel (RGB) taps instead run one interleaved-pixel conv
        each, summed (:func:`~tnn_ros.engines.export_forms.conv_on_interleaved_pixels`).
        """
        weight, bias = conv._weights_for(self.level)
        channels = taps[0].shape[1]
        if len(taps) > 1 and channels < BLOCK_CHANNELS:
            per_tap = weight.reshape(weight.shape[0], len(taps), channels, *weight.shape[2:])
            x = None
            for offset, tap in enumerate(taps):
                term = conv_on_interleaved_pixels(
                    tap, per_tap[:, offset], bias if offset == 0 else None, padding=1
                )
                x = term if x is None else x + term
        else:
            stacked = taps[0] if len(taps) == 1 else torch.cat(taps, dim=1)
            x = F.conv2d(stacked, weight, bias, padding=1)
        return F.relu(x) if conv.activation == "relu" else x


@torch.no_grad()
def export_stream_step(net, level: int, path: str | Path, part: str = "trunk") -> None:
    """Trace the stream step's ``part`` (trunk or head) of ``net`` at ``level`` to ``path``.

    ``net``: eval mode, ``temporal="valid"``.
    """
    import warnings

    if net.training:
        raise ValueError("export a model in eval mode (its per-level caches hold the folded weights)")
    step = StreamStepGraph(net, level, part)
    step.training = False  # not .eval(): that would rebuild every cache of the model again
    signature = step_signature(net, level, step.chain)
    generator = torch.Generator().manual_seed(0)
    if part == "trunk":
        inputs = [torch.randn(signature.frame_shape, generator=generator)]
        inputs += [torch.randn(shape, generator=generator) for shape in signature.history_shapes]
        input_names, output_names = signature.input_names, signature.output_names
    elif part == "head":
        inputs = [torch.randn(signature.trunk_shape, generator=generator)]
        input_names, output_names = [TRUNK_NAME], [LOGITS_NAME]
    else:
        frames = (net.clip_length, *signature.frame_shape[1:])
        inputs = [torch.randn(frames, generator=generator)]
        input_names = [FRAMES_NAME]
        output_names = [TRUNK_NAME, *(f"history{i}" for i in signature.history_layers)]
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
    """The stream-step graphs (trunk + head) of every level of one gesture net, one session each.

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
        self.graph_paths: list[Path] = []  # trunk graphs, then head graphs, then prime graphs
        self.trunks, self.heads, self.primes = [], [], []
        for part, sessions in (("trunk", self.trunks), ("head", self.heads), ("prime", self.primes)):
            for level in range(self.num_levels):
                sessions.append(self._session(part, level, options_factory(), providers))
        self.provider = self.trunks[0].get_providers()[0]
        self.warmup()

    def warmup(self) -> None:
        """Run every level once (onnxruntime allocates on a session's first run)."""
        for signature, trunk, head, prime in zip(self.signatures, self.trunks, self.heads, self.primes):
            feed = {FRAME_NAME: np.zeros(signature.frame_shape, np.float32)}
            feed.update(
                (name, np.zeros(shape, np.float32))
                for name, shape in zip(signature.input_names[1:], signature.history_shapes)
            )
            features, *_ = trunk.run(signature.output_names, feed)
            head.run([LOGITS_NAME], {TRUNK_NAME: features})
            frames = np.zeros((self.net.clip_length, *signature.frame_shape[1:]), np.float32)
            prime.run(None, {FRAMES_NAME: frames})

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
        expected = {
            "trunk": self.signatures[level].input_names,
            "head": [TRUNK_NAME],
            "prime": [FRAMES_NAME],
        }[part]
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


class OrtGestureStream:
    """Per-frame gesture inference through the stream-step graphs (the ``StreamingGestureNet`` API).

    ``push(frame, level)`` takes one HxWx3 uint8 RGB frame and returns the logits (num_classes,) of
    the clip of the last ``clip_length`` frames at ``level`` (default: the net's level), or None
    while fewer frames have arrived. ``push(..., result=False)`` only updates the histories (the
    trunk graph) and returns None: for frames whose result nobody reads (the recognizer reads one
    every ``stride`` frames).
    """

    backend = "onnxruntime"

    def __init__(self, sessions: OrtStreamSessions) -> None:
        self.sessions = sessions
        self.net = sessions.net
        self.clip_length = self.net.clip_length
        # Normalised channels-last frames of the current clip, to rebuild the histories.
        self._frames: collections.deque[np.ndarray] = collections.deque(maxlen=self.clip_length)
        self._level: int | None = None
        self._feed: dict[str, np.ndarray] = {}
        self._histories: list[np.ndarray] = []
        self._steps = 0  # frames run at the current level since its histories were cleared
        self.replays = 0  # level changes that rebuilt the histories (diagnostics)
        self._scale = np.float32(1.0 / (255.0 * PIXEL_STD))
        self._offset = np.float32(PIXEL_MEAN / PIXEL_STD)

    def reset(self) -> None:
        """Forget all frames and histories."""
        self._frames.clear()
        self._level = None
        self._steps = 0

    @property
    def ready(self) -> bool:
        """Whether the next ``push`` returns a result (``clip_length - 1`` frames are buffered)."""
        return len(self._frames) >= self.clip_length - 1

    # --- frames -----------------------------------------------------------------------------------
    def preprocess_frame(self, frame_rgb: np.ndarray) -> np.ndarray:
        """HxWx3 uint8 RGB -> (1, H, W, 3) float32 at the net's frame size, normalised as the clip model."""
        pixels = resize_frame(frame_rgb, self.net.frame_size).astype(np.float32)
        pixels *= self._scale
        pixels -= self._offset
        return pixels[None]

    def push(self, frame_rgb: np.ndarray, level: int | None = None, result: bool = True) -> Tensor | None:
        """Add one frame; the clip logits (num_classes,) once ``clip_length`` frames have arrived."""
        return self._push(self.preprocess_frame(frame_rgb), level, result)

    def push_tensor(self, frame: Tensor, level: int | None = None, result: bool = True) -> Tensor | None:
        """:meth:`push` for an already normalised (1, 3, H, W) frame (the torch stream's input)."""
        expected = (1, 3, self.net.frame_size[1], self.net.frame_size[0])
        if tuple(frame.shape) != expected:
            raise ValueError(f"expected a normalised frame of shape {expected}, got {tuple(frame.shape)}")
        # a copy: the stream keeps the frame (for replays), the caller may reuse its tensor
        pixels = np.array(frame.detach().permute(0, 2, 3, 1).numpy(), dtype=np.float32, order="C")
        return self._push(pixels, level, result)

    # --- steps ------------------------------------------------------------------------------------
    def _push(self, pixels: np.ndarray, level: int | None, result: bool) -> Tensor | None:
        level = self.net.level if level is None else self.net.schedule.level_index(level)
        self._frames.append(pixels)
        if level != self._level:
            # The histories are of another level: replay the buffered frames at this one.
            if self._level is not None:
                self.replays += 1
            self._start_level(level)
            if len(self._frames) == self.clip_length:
                features = self._prime()  # the whole clip in one batched graph
            else:  # a short buffer: step through it
                for buffered in list(self._frames)[:-1]:
                    self._step(buffered)
                features = self._step(pixels)
        else:
            features = self._step(pixels)
        if not result or self._steps < self.clip_length:
            return None
        (logits,) = self._head.run([LOGITS_NAME], {TRUNK_NAME: features})
        return torch.from_numpy(logits[0])

    def _start_level(self, level: int) -> None:
        signature = self.sessions.signatures[level]
        self._level = level
        self._steps = 0
        self._histories = [np.zeros(shape, np.float32) for shape in signature.history_shapes]
        names = signature.input_names
        self._feed = {name: history for name, history in zip(names[1:], self._histories)}
        self._trunk, self._head = self.sessions.trunks[level], self.sessions.heads[level]
        self._prime_session = self.sessions.primes[level]
        self._output_names = signature.output_names

    def _prime(self) -> np.ndarray:
        """Rebuild every history from the buffered clip (prime graph); the trunk output of its end."""
        frames = np.concatenate(list(self._frames))
        features, *histories = self._prime_session.run(None, {FRAMES_NAME: frames})
        for buffer, history in zip(self._histories, histories):
            buffer[...] = history
        self._steps = len(self._frames)
        return features

    def _step(self, pixels: np.ndarray) -> np.ndarray:
        """Run the trunk on one frame, roll the histories; the trunk's output (the head's input)."""
        self._feed[FRAME_NAME] = pixels
        features, *entries = self._trunk.run(self._output_names, self._feed)
        for history, entry in zip(self._histories, entries):
            # Roll in place: drop the oldest position, append the new one (fixed buffers the feed holds).
            if len(history) > 1:
                history[:-1] = history[1:]
            history[-1] = entry[0]
        self._steps += 1
        return features
