"""Streaming (continual) inference of a gated C3D: one new frame in, one clip result out.

A clip model re-runs all ``clip_length`` frames for every result, although consecutive clips share
all but one frame. A continual 3D CNN (Hedegaard & Iosifidis, "Continual 3D Convolutional Neural
Networks for Real-time Processing of Videos", ECCV 2022) computes, for each new frame, only the
activations that frame creates at every layer and reuses the cached ones of earlier frames.

This is exact only when no activation depends on where the clip starts, so it needs the
``temporal="valid"`` architecture (no zero frames of temporal padding; see
:func:`tnn_ros.models.gesture.temporal_plan`). The one subtlety is temporal pooling: a 2x pool pairs
positions relative to the clip start, and the clips ending at consecutive frames start at
consecutive frames, so both pairings are needed. The stream therefore pools *every* adjacent pair
(a sliding max) and the layers after it read their temporal neighbours ``2`` positions apart (and
``4`` after a second pool): a dilated copy of the clip model that serves every clip alignment at
once. Each layer then computes exactly one new position per frame, and the result after frame ``f``
equals the clip model's output on frames ``f - clip_length + 1 .. f`` (tests: 1e-4).

Levels: the cached activations belong to the level they were computed at. When the net's level
changes, the next frame replays the buffered frames at the new level (about one clip forward, once),
so every result is exactly the clip model's at the level it reports.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .gesture import PIXEL_MEAN, PIXEL_STD, ThrottleableGestureNet, _pairwise_max, resize_frame


@dataclass
class _Layer:
    """One step of the streaming chain and the inputs it must remember.

    ``kind``: ``"conv"`` (a gated conv: temporal kernel ``taps`` read ``dilation`` positions apart),
    ``"pool"`` (spatial 2x2 max, then, if ``taps == 2``, the max of two positions ``dilation``
    apart) or ``"flatten"`` (``taps`` positions ``dilation`` apart stacked as the clip's time axis
    and flattened channel-major, as the clip model flattens). A layer is skipped at the levels in
    ``skipped_at``: pool1 where conv1 runs at spatial stride 2 instead (read from conv1 itself,
    :meth:`ThrottleableGestureNet.conv1_strided`); only a layer without history (span 1) can be.
    """

    kind: str
    taps: int
    dilation: int
    conv: object = None
    skipped_at: frozenset[int] = frozenset()

    def active(self, level: int) -> bool:
        """Whether the layer runs at ``level``."""
        return level not in self.skipped_at

    def spatial_stride(self, level: int) -> int:
        """The conv's spatial stride at ``level`` (1 for other layers)."""
        return self.conv.spatial_strides[level] if self.kind == "conv" else 1

    @property
    def span(self) -> int:
        """Positions of input this layer reads for one output."""
        return (self.taps - 1) * self.dilation + 1


def _build_chain(net: ThrottleableGestureNet) -> list[_Layer]:
    plan = net.temporal_plan
    if net.architecture.get("temporal", "same") != "valid":
        raise ValueError(
            "streaming inference needs a net with architecture temporal='valid' (no temporal "
            "zero padding); this net pads time, so its clip outputs depend on the clip start"
        )
    chain: list[_Layer] = []
    dilation = 1
    convs = [net.conv1, *net.convs]
    pools = [1, *net._pool_after]  # pool1 (spatial only) after conv1
    strided = frozenset(level for level in range(net.num_levels) if net.conv1_strided(level))
    for index, (conv, pool) in enumerate(zip(convs, pools)):
        chain.append(_Layer("conv", conv.kernel_size[0], dilation, conv))
        if pool:
            # pool1 (temporal 1, no history) gives way to a strided conv1 at those levels
            chain.append(_Layer("pool", pool, dilation, skipped_at=strided if index == 0 else frozenset()))
            dilation *= pool
    chain.append(_Layer("flatten", plan.final_length, dilation))
    return chain


class StreamingGestureNet:
    """Per-frame (continual) evaluation of a ``temporal="valid"`` :class:`ThrottleableGestureNet`.

    ``push(frame)`` takes one HxWx3 uint8 RGB frame (any size; fitted like ``predict_clip`` does)
    and returns the logits (num_classes,) of the clip of the last ``clip_length`` frames at the net's
    current level, or None while fewer frames have arrived. The net must be in eval mode (BatchNorm
    folded into its cached weights); ``reset()`` forgets the stream.
    """

    def __init__(self, net: ThrottleableGestureNet) -> None:
        self.net = net
        self.chain = _build_chain(net)
        self.clip_length = net.clip_length
        # Normalised frames of the current clip, to rebuild the caches after a level change.
        self._frames: collections.deque[Tensor] = collections.deque(maxlen=net.clip_length)
        self._histories: list[collections.deque[Tensor]] = [
            collections.deque(maxlen=max(layer.span - 1, 1)) for layer in self.chain
        ]
        self._level: int | None = None
        self.replays = 0  # level changes that rebuilt the caches (diagnostics)

    def reset(self) -> None:
        """Forget all frames and cached activations."""
        self._frames.clear()
        for history in self._histories:
            history.clear()
        self._level = None

    @property
    def ready(self) -> bool:
        """Whether the next ``push`` returns a result (``clip_length - 1`` frames are buffered)."""
        return len(self._frames) >= self.clip_length - 1

    # --- frames -----------------------------------------------------------------------------------------
    def preprocess_frame(self, frame_rgb: np.ndarray) -> Tensor:
        """HxWx3 uint8 RGB -> (1, 3, H, W) float at the net's frame size, normalised as the clip model."""
        frame = torch.from_numpy(resize_frame(frame_rgb, self.net.frame_size))
        frame = frame.permute(2, 0, 1)[None].float()
        return frame.mul_(1.0 / (255.0 * PIXEL_STD)).sub_(PIXEL_MEAN / PIXEL_STD)

    @torch.no_grad()
    def push(self, frame_rgb: np.ndarray, level: int | None = None) -> Tensor | None:
        """Add one frame; the clip logits (num_classes,) once ``clip_length`` frames have arrived.

        ``level``: the level to compute at (default: the net's current level; an inference-engine
        facade keeps its own level, so a caller running one passes it).
        """
        return self.push_tensor(self.preprocess_frame(frame_rgb), level)

    @torch.no_grad()
    def push_tensor(self, frame: Tensor, level: int | None = None) -> Tensor | None:
        """:meth:`push` for an already normalised (1, 3, H, W) frame."""
        if self.net.training:
            raise RuntimeError("StreamingGestureNet needs the net in eval mode (net.eval())")
        expected = (1, 3, self.net.frame_size[1], self.net.frame_size[0])
        if tuple(frame.shape) != expected:
            raise ValueError(f"expected a normalised frame of shape {expected}, got {tuple(frame.shape)}")
        level = self.net.level if level is None else self.net.schedule.level_index(level)
        self._frames.append(frame)
        if level != self._level:
            # Cached activations are of another level: recompute them from the buffered frames.
            if self._level is not None:
                self.replays += 1
            for history in self._histories:
                history.clear()
            self._level = level
            out = self._run(torch.cat(list(self._frames)), level)
        else:
            out = self._run(frame, level)
        return out[-1] if out is not None and len(out) else None

    # --- the chain --------------------------------------------------------------------------------------
    def _run(self, x: Tensor, level: int) -> Tensor | None:
        """Feed new positions ``x`` (P, C, H, W) through every layer; logits of the new clip ends."""
        for layer, history in zip(self.chain, self._histories):
            x = self._step(layer, history, x, level)
            if x is None:
                return None
        for fc in self.net.fcs:
            x = fc(x, level)
        return self.net.classifier(x, level)

    @staticmethod
    def _step(layer: _Layer, history: collections.deque, new: Tensor, level: int) -> Tensor | None:
        """Outputs of ``layer`` at the new positions that have all their inputs; remember the tail.

        ``history`` holds the layer's last ``span - 1`` input positions, each (1, C, H, W).
        """
        if not layer.active(level):
            return new
        span = layer.span
        if len(new) == 1 and len(history) == span - 1:
            # The per-frame case: pick the taps from the remembered positions, no concatenation.
            positions = [*history, new]
            taps = [positions[d * layer.dilation] for d in range(layer.taps)]
            if span > 1:
                history.append(new)  # maxlen span - 1 drops the oldest
        else:
            seq = torch.cat([*history, new]) if history else new
            if span > 1:
                history.clear()
                history.extend(seq[-(span - 1) :].split(1))
            count = len(seq) - span + 1
            if count < 1:
                return None
            taps = [seq[d * layer.dilation : d * layer.dilation + count] for d in range(layer.taps)]
        count = len(taps[0])
        if layer.kind == "conv":
            conv = layer.conv
            conv._check_input(taps[0], level)
            weight, bias = conv._weights_for(level)  # folded (C_out, taps * C_in, 3, 3), BN folded in
            stacked = taps[0] if layer.taps == 1 else torch.cat(taps, dim=1)
            out = F.conv2d(stacked, weight, bias, stride=layer.spatial_stride(level), padding=1)
            return F.relu(out, inplace=True)
        if layer.kind == "pool":
            pooled = [_pairwise_max(_pairwise_max(t, 3), 2) for t in taps]
            return pooled[0] if len(pooled) == 1 else torch.maximum(pooled[0], pooled[1])
        # flatten: (count, C, T, h, w) flattened channel-major, exactly as the clip model reshapes
        return torch.stack(taps, dim=2).reshape(count, -1)


# --- cost ---------------------------------------------------------------------------------------------------


def streamable_twin(net: ThrottleableGestureNet) -> ThrottleableGestureNet:
    """``net`` itself if it is ``temporal="valid"``, else an untrained valid net of the same widths.

    The twin has the same channel widths and levels, so its per-frame vs clip timing stands for what
    a trained valid model of that size costs (timing does not depend on the weight values).
    """
    if net.architecture.get("temporal", "same") == "valid":
        return net
    twin = ThrottleableGestureNet(net.classes, {**net.architecture, "temporal": "valid"})
    return twin.eval()


@torch.no_grad()
def random_stream_inputs(net: ThrottleableGestureNet, seed: int = 0) -> tuple[list[Tensor], Tensor]:
    """``clip_length`` seeded random normalised frames (1, 3, H, W) and the same frames as one clip.

    The clip is (1, 3, T, H, W): what a clip forward takes for the frames a stream is pushed.
    """
    generator = torch.Generator().manual_seed(seed)
    frames = [
        torch.randn(1, 3, net.frame_size[1], net.frame_size[0], generator=generator)
        for _ in range(net.clip_length)
    ]
    return frames, torch.cat(frames).permute(1, 0, 2, 3)[None]


def measure_streaming(
    net: ThrottleableGestureNet, levels: list[int] | None = None, repeats: int = 30
) -> dict:
    """Median per-frame (streaming) vs clip (forward of the whole clip) latency, per level, in ms.

    Both are timed in the same rounds, interleaved, on the same frames, so their ratio is fair on a
    busy machine. A net with temporal padding is measured through :func:`streamable_twin`
    (``"measured_on"`` says which). Returns ``{"measured_on", "levels": {level: {"per_frame_ms_median",
    "clip_ms_median", "ratio", "per_frame_macs", "clip_macs"}}}``.
    """
    import statistics
    import time

    from ..throttle import count_level_costs

    model = streamable_twin(net)
    model.eval()
    levels = [0, model.num_levels - 1] if levels is None else list(levels)
    stream = StreamingGestureNet(model)
    frames, clip = random_stream_inputs(model)
    costs = {c.level: c.macs for c in count_level_costs(model, model.example_input())}
    previous = model.level
    result = {}
    for level in levels:
        model.set_level(level)
        stream.reset()
        for frame in frames:  # fill the caches at this level
            stream.push_tensor(frame)
        model(clip)
        per_frame, whole, per_frame_cpu, whole_cpu = [], [], [], []
        for i in range(repeats):
            start, start_cpu = time.perf_counter(), time.thread_time()
            stream.push_tensor(frames[i % len(frames)])
            per_frame.append(time.perf_counter() - start)
            per_frame_cpu.append(time.thread_time() - start_cpu)
            start, start_cpu = time.perf_counter(), time.thread_time()
            model(clip)
            whole.append(time.perf_counter() - start)
            whole_cpu.append(time.thread_time() - start_cpu)
        frame_ms, clip_ms = statistics.median(per_frame) * 1e3, statistics.median(whole) * 1e3
        frame_cpu, clip_cpu = statistics.median(per_frame_cpu) * 1e3, statistics.median(whole_cpu) * 1e3
        result[str(level)] = {
            "per_frame_ms_median": round(frame_ms, 3),
            "clip_ms_median": round(clip_ms, 3),
            "ratio": round(frame_ms / clip_ms, 3),
            # CPU time of this thread: what the work costs when other processes
            # preempt it (exact only with 1 torch thread)
            "per_frame_cpu_ms_median": round(frame_cpu, 3),
            "clip_cpu_ms_median": round(clip_cpu, 3),
            "cpu_ratio": round(frame_cpu / clip_cpu, 3) if clip_cpu > 0 else None,
            "clip_macs": costs[level],
            "per_frame_macs": streaming_macs(model, level),
            "mac_ratio": round(streaming_macs(model, level) / costs[level], 3),
        }
    model.set_level(previous)
    measured_on = "this model" if model is net else "an untrained temporal='valid' twin of the same widths"
    return {"measured_on": measured_on, "threads": torch.get_num_threads(), "levels": result}


def streaming_macs(net: ThrottleableGestureNet, level: int) -> int:
    """Multiply-accumulates of one streaming step (one new position per conv, the FC head) at ``level``."""
    macs = 0
    width, height = net.frame_size
    for layer in _build_chain(net):
        if layer.kind == "conv":
            conv, stride = layer.conv, layer.spatial_stride(level)
            width, height = -(-width // stride), -(-height // stride)
            macs += conv.out_widths[level] * conv.in_widths[level] * layer.taps * 9 * width * height
        elif layer.kind == "pool" and layer.active(level):
            width, height = -(-width // 2), -(-height // 2)
    for fc in [*net.fcs, net.classifier]:
        macs += fc.out_widths[level] * fc.in_widths[level]
    return int(macs)
