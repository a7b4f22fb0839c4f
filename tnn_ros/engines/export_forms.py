"""Export-only forms of the networks: the same outputs from ops that graph runtimes run fast.

The eager forwards are written for PyTorch on a CPU (oneDNN kernels, views instead of copies). Traced
as they are, some of their ops become slow graph ops: strided slices for pooling, a reshape between
every conv and its ReLU (so they cannot fuse), a 9-channel conv that onnxruntime cannot run in its
blocked layout, a transpose of every input frame. The forms here compute the same functions on the
same per-level caches (sliced weights, BatchNorm folded) with graph-friendly ops; that they give the
torch model's outputs at every level is tested (test/unit/test_engines.py) and their effect measured
(docs/engines.md).

- Inputs come in the memory order the model's preprocessing produces (:func:`input_memory_order`).
- Detector: the stem reads the interleaved channels-last pixels as one channel
  (:func:`conv_on_interleaved_pixels`); the distance head's softplus is written as the overflow-safe
  ``relu(x) + log(1 + exp(-|x|))``, which onnxruntime vectorises (its ``Softplus`` kernel does not:
  about 80 vs 40 us per frame at every level); the rest traces as it is.
- Gesture net: activations stay 4-D frames (N*T, C, H, W) from input to flatten. A 3x3x3 conv is the
  temporal fold (neighbour frames stacked on channels, one ``Conv``) directly followed by its ReLU; on
  the RGB input it is one interleaved-pixel conv per temporal offset, summed (:func:`frames_conv`);
  pooling is a ``MaxPool`` over each frame plus a maximum of frame pairs (:func:`frames_pool`).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Below this many input channels a folded conv is split per temporal offset: onnxruntime's blocked
# (NCHWc) kernels take input channels in multiples of 8, or fewer than 8 (its first-layer kernel).
BLOCK_CHANNELS = 8
# Below this many input channels per offset a temporal conv also runs as one conv per offset, summed,
# instead of one conv on the offsets stacked on channels: 3 x 8 stacked channels are not a whole
# number of onnxruntime's 16-channel blocks (AVX-512), so the stack cost a Concat, a layout reorder
# and padded channels (the gesture net's conv2: level 0 -20 %, docs/engines.md).
SPLIT_OFFSETS_BELOW = 16


def input_memory_order(model: nn.Module) -> tuple[int, ...]:
    """Axes of the model's logical input in the order its preprocessing lays them out in memory.

    Both preprocessings scale the camera's interleaved uint8 pixels in place: the detector's returns
    channels-last images (N, H, W, C in memory), the gesture net's frame-major clips of channels-last
    frames (N, T, H, W, C). A graph that takes its input in that order is fed the preprocessed buffer
    as it is; a logical-order input would cost a transpose per frame.
    """
    from ..models.detector import ThrottleableDetector
    from ..models.gesture import ThrottleableGestureNet

    if isinstance(model, ThrottleableDetector):
        return (0, 2, 3, 1)
    if isinstance(model, ThrottleableGestureNet):
        return (0, 2, 3, 4, 1)
    return tuple(range(model.example_input().dim()))


def _inverse(order: Sequence[int]) -> tuple[int, ...]:
    inverse = [0] * len(order)
    for position, axis in enumerate(order):
        inverse[axis] = position
    return tuple(inverse)


def _pair(value) -> tuple[int, int]:
    return (int(value[0]), int(value[1])) if isinstance(value, (tuple, list)) else (int(value),) * 2


def conv_on_interleaved_pixels(
    x: Tensor, weight: Tensor, bias: Tensor | None, stride=1, padding=0, dilation=1, groups: int = 1
) -> Tensor:
    """``F.conv2d`` of a few-channel channels-last image, computed on its interleaved pixels.

    The (N, H, W, C) buffer is read as one channel of width ``W * C``: a kh x kw kernel over C
    channels makes the same sums as a one-channel kh x (kw * C) kernel with C times the horizontal
    stride and padding. Same MACs and no layout change of the input; onnxruntime's direct conv on one
    input channel is also faster than its NCHW-to-blocked conv on three (docs/engines.md).
    """
    if groups != 1 or _pair(dilation) != (1, 1):
        raise ValueError("conv_on_interleaved_pixels needs groups 1 and dilation 1")
    n, c, h, w = x.shape
    (sh, sw), (ph, pw) = _pair(stride), _pair(padding)
    c_out, _, kh, kw = weight.shape
    pixels = x.permute(0, 2, 3, 1).reshape(n, 1, h, w * c)  # a view of the channels-last buffer
    kernel = weight.permute(0, 2, 3, 1).reshape(c_out, 1, kh, kw * c)
    return F.conv2d(pixels, kernel, bias, stride=(sh, sw * c), padding=(ph, pw * c))


def frames_conv(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    stride=1,
    padding=(1, 1, 1),
    dilation=1,
    groups: int = 1,
    *,
    batch: int = 1,
) -> Tensor:
    """A gated kt x 3 x 3 conv (temporal padding ``padding[0]``) on frame-major 4-D frames.

    ``x`` is (batch * T, C, H, W), clip by clip (for C < 8, i.e. the RGB input, channels-last frames
    are read without a copy); ``weight`` the folded (C_out, kt * C, 3, 3) weight of
    :class:`~tnn_ros.models.gesture.TemporalFoldConv3d`; ``stride`` 1 or ``(1, s, s)``. Returns
    (batch * T_out, C_out, H / s, W / s) in the same order, so the layer's ReLU follows the ``Conv``
    directly and fuses with it.
    """
    from ..models.gesture import spatial_stride

    nt, c, h, w = x.shape
    kt = weight.shape[1] // c
    pt = int(padding[0] if isinstance(padding, (tuple, list)) else padding)
    step = spatial_stride(stride)
    if kt == 1 and not pt:
        # A per-frame conv (the "valid" plan's late layers): every frame is its own window, so the
        # frames go in as they are (windowing them would trace a Slice copying all of them).
        return F.conv2d(x, weight, bias, stride=step, padding=1)
    frames = x.reshape(batch, nt // batch, c, h, w)
    if pt:
        frames = F.pad(frames, (0, 0, 0, 0, 0, 0, pt, pt))  # zero frames before and after each clip
    t_out = frames.shape[1] - kt + 1

    def window(offset: int) -> Tensor:
        return frames[:, offset : offset + t_out].reshape(batch * t_out, c, h, w)

    if kt > 1 and c < BLOCK_CHANNELS:
        # The RGB frames: one conv per temporal offset, summed, each on the interleaved pixels of its
        # frames (conv_on_interleaved_pixels: no stacked copy, no layout change of the input, and
        # onnxruntime's fast one-channel kernel where a (kt * c)-channel stack gets a slow generic one).
        pixels = x.permute(0, 2, 3, 1).reshape(batch, nt // batch, 1, h, w * c)
        if pt:
            pixels = F.pad(pixels, (0, 0, 0, 0, 0, 0, pt, pt))
        windows = [pixels[:, d : d + t_out].reshape(batch * t_out, 1, h, w * c) for d in range(kt)]
        return pixel_offset_convs(windows, weight, bias, step, c)
    if kt > 1 and c < SPLIT_OFFSETS_BELOW:
        return per_offset_convs([window(d) for d in range(kt)], weight, bias, step)
    stacked = window(0) if kt == 1 else torch.cat([window(d) for d in range(kt)], dim=1)
    return F.conv2d(stacked, weight, bias, stride=step, padding=1)


def pixel_offset_convs(
    windows: Sequence[Tensor], weight: Tensor, bias: Tensor | None, step: int, channels: int
) -> Tensor:
    """A kt x 3 x 3 conv of few-channel frames as the sum of one conv per temporal offset.

    ``windows[d]`` holds the interleaved channels-last pixels (N, 1, H, W * channels) of the frames
    that temporal offset ``d`` reads for the N output frames; ``weight`` is the folded (C_out,
    kt * channels, 3, 3) weight; ``step`` the spatial stride.
    """
    c_out = weight.shape[0]
    per_offset = weight.reshape(c_out, len(windows), channels, *weight.shape[2:])
    out = None
    for offset, frames_at in enumerate(windows):
        kernel = per_offset[:, offset].permute(0, 2, 3, 1).reshape(c_out, 1, 3, 3 * channels)
        term = F.conv2d(
            frames_at,
            kernel,
            bias if offset == 0 else None,
            stride=(step, step * channels),
            padding=(1, channels),
        )
        out = term if out is None else out + term
    return out


def per_offset_convs(windows: Sequence[Tensor], weight: Tensor, bias: Tensor | None, step: int) -> Tensor:
    """A temporal conv as the sum of one conv per offset on (N, C, H, W) windows (NCHW, C channels each).

    ``windows[d]`` holds the frames offset ``d`` reads; ``weight`` is the folded (C_out, kt * C, 3, 3)
    weight, whose input channels ``d * C ... (d + 1) * C`` are offset ``d``'s.
    """
    c = windows[0].shape[1]
    out = None
    for offset, frames_at in enumerate(windows):
        part = weight[:, offset * c : (offset + 1) * c]
        term = F.conv2d(frames_at, part, bias if offset == 0 else None, stride=step, padding=1)
        out = term if out is None else out + term
    return out


def conv1_windows(model: nn.Module, batch: int = 1) -> int:
    """How many frame windows a gesture graph takes as inputs instead of the whole clip (0: the clip).

    conv1 of a net without temporal padding on it (the ``valid`` plan) convolves frames ``t + d`` for
    output frame ``t`` and temporal offset ``d < kt``: in a frame-major clip each offset's frames are
    one contiguous range of the preprocessed buffer, so a batch-1 graph takes the ``kt`` ranges as
    ``kt`` inputs, fed as views (:func:`graph_feed`), where slicing them inside the graph copied them.
    """
    from ..models.gesture import ThrottleableGestureNet, temporal_plan

    if not isinstance(model, ThrottleableGestureNet) or batch != 1:
        return 0
    plan = temporal_plan(model.architecture)
    return plan.kernels[0] if plan.kernels[0] > 1 and plan.paddings[0] == 0 else 0


def graph_feed(inputs: Tensor | np.ndarray, name: str, windows: int = 0) -> dict[str, Tensor | np.ndarray]:
    """The graph inputs for ``inputs`` (in :func:`input_memory_order`), by input name.

    ``windows``: the model's :func:`conv1_windows`. 0 gives ``{name: inputs}``; else the windows
    ``{name_0: ..., name_<windows-1>: ...}`` of the batch-1 clip ``inputs``: contiguous views, each
    (T - windows + 1, 1, H, W * 3).
    """
    if not windows:
        return {name: inputs}
    _, t, h, w, c = inputs.shape
    count = t - windows + 1
    return {f"{name}_{d}": inputs[0, d : d + count].reshape(count, 1, h, w * c) for d in range(windows)}


def frames_pool(x: Tensor, temporal: int, batch: int = 1) -> Tensor:
    """:func:`~tnn_ros.models.gesture.max_pool_clip` on frame-major 4-D frames (batch * T, C, H, W).

    2 x 2 spatial max pooling in ceil mode, then the maximum of frame pairs when ``temporal`` is 2.
    """
    x = F.max_pool2d(x, 2, stride=2, ceil_mode=True)
    if temporal == 2:
        pairs = x.reshape(x.shape[0] // 2, 2, *x.shape[1:])  # T is even per clip: pairs never straddle
        x = torch.maximum(pairs[:, 0], pairs[:, 1])
    return x


class _GestureFrames(nn.Module):
    """The gesture net at one level on frame-major clips (N, T, H, W, 3), in 4-D frames throughout.

    Mirrors ``ThrottleableGestureNet.forward`` (conv1, pool1 unless conv1 is strided, gated convs
    with a pool at each stage end, flatten in the logical (C, T, H, W) order, FC layers, classifier);
    the convs are the net's own modules (so node names keep their module paths) with
    :func:`frames_conv` as their kernel.
    """

    def __init__(self, net: nn.Module, level: int) -> None:
        super().__init__()
        self.net = net
        self.level = level

    def forward(self, clips: Tensor) -> Tensor:
        n, t, h, w, c = clips.shape
        frames = clips.reshape(n * t, h, w, c).permute(0, 3, 1, 2)  # (N*T, C, H, W), channels-last
        return self._after_conv1(self.net.conv1(frames, self.level), n)

    def _after_conv1(self, x: Tensor, n: int) -> Tensor:
        """Everything after conv1 (its ReLU included) on its output frames (N * T', C, H', W')."""
        net, level = self.net, self.level
        if not net.conv1_strided(level):
            x = frames_pool(x, 1, n)  # pool1 (a strided conv1 replaces it)
        for conv, pool in zip(net.convs, net._pool_after):
            x = conv(x, level)
            if pool:
                x = frames_pool(x, pool, n)
        t = x.shape[0] // n
        x = x.reshape(n, t, *x.shape[1:]).transpose(1, 2).reshape(n, -1)  # (C, T, H, W) order
        for fc in net.fcs:
            x = fc(x, level)
        return net.classifier(x, level)


class _GestureWindows(_GestureFrames):
    """:class:`_GestureFrames` of a batch-1 net whose inputs are conv1's frame windows.

    The windows are those of :func:`conv1_windows` / :func:`graph_feed`; conv1 (named ``conv1`` in
    the graph, so profiles credit it) is :func:`pixel_offset_convs` on them with the level's weights, the
    rest is the clip form's.
    """

    def __init__(self, net: nn.Module, level: int) -> None:
        super().__init__(net, level)
        self.conv1 = _WindowConv1(net, level)

    def forward(self, *windows: Tensor) -> Tensor:
        return self._after_conv1(self.conv1(*windows), 1)


class _WindowConv1(nn.Module):
    """The gesture net's conv1 at one level (sliced, BatchNorm-folded weights) on its frame windows."""

    def __init__(self, net: nn.Module, level: int) -> None:
        from ..models.gesture import spatial_stride

        super().__init__()
        conv = net.conv1
        self.weight, self.bias = conv._weights_for(level)  # constants of the traced graph
        self.step = spatial_stride(conv.stride_for(level))
        self.relu = conv.activation == "relu"

    def forward(self, *windows: Tensor) -> Tensor:
        channels = self.weight.shape[1] // len(windows)  # the folded weight stacks the offsets
        out = pixel_offset_convs(windows, self.weight, self.bias, self.step, channels)
        return F.relu(out) if self.relu else out


def softplus_by_exp_log(x: Tensor) -> Tensor:
    """``F.softplus(x)`` (beta 1) as ``relu(x) + log(1 + exp(-|x|))``: exact in float32 for any x."""
    return F.relu(x) + torch.log(1.0 + torch.exp(-x.abs()))


class _DetectorGraph(nn.Module):
    """The detector at one level on channels-last pixels (N, H, W, 3).

    Mirrors ``ThrottleableDetector.forward`` (features, head, heatmap logits + scaled softplus
    distances) with :func:`softplus_by_exp_log`; the stem gets its kernel from :func:`export_form`.
    """

    def __init__(self, net: nn.Module, level: int) -> None:
        super().__init__()
        self.net = net
        self.level = level

    def forward(self, pixels: Tensor) -> tuple[Tensor, Tensor]:
        from ..models.detector import DISTANCE_SCALE

        net, level = self.net, self.level
        images = pixels.permute(0, 3, 1, 2)  # logical NCHW view; cancels against the pixel stem's
        out = net.head_out(net.head_conv(net.features(images, level), level), level)
        num_classes = len(net.classes)
        return out[:, :num_classes], softplus_by_exp_log(out[:, num_classes:]) * DISTANCE_SCALE


class _LevelGraph(nn.Module):
    """A model pinned to one level, input in ``memory_order`` (the level is a constant in the trace).

    The fallback for models without an export form of their own: the permutation back to the logical
    order is a ``Transpose`` unless the network's first op undoes it.
    """

    def __init__(self, model: nn.Module, level: int, memory_order: Sequence[int]) -> None:
        super().__init__()
        self.net = model
        self.level = level
        self.logical_order = _inverse(memory_order)

    def forward(self, inputs: Tensor):
        previous = self.net._level
        self.net._level = self.level
        if self.logical_order != tuple(range(inputs.dim())):
            inputs = inputs.permute(self.logical_order)
        try:
            return self.net(inputs)
        finally:
            self.net._level = previous


@contextlib.contextmanager
def _kernels(modules: Sequence[nn.Module], kernel) -> Iterator[None]:
    """Give ``modules`` another conv kernel (an instance attribute over the class's) for a while."""
    for module in modules:
        module._conv_fn = kernel
    try:
        yield
    finally:
        for module in modules:
            del module._conv_fn


@contextlib.contextmanager
def export_form(model: nn.Module, level: int, batch: int = 1) -> Iterator[nn.Module]:
    """The module to trace for ``model`` at ``level``; its input is in :func:`input_memory_order`."""
    from ..models.detector import ThrottleableDetector
    from ..models.gesture import TemporalFoldConv3d, ThrottleableGestureNet

    if isinstance(model, ThrottleableGestureNet):
        convs = [m for m in model.modules() if isinstance(m, TemporalFoldConv3d)]
        form = _GestureWindows if conv1_windows(model, batch) else _GestureFrames
        with _kernels(convs, functools.partial(frames_conv, batch=batch)):
            yield form(model, level)
    elif isinstance(model, ThrottleableDetector):
        with _kernels([model.stem], conv_on_interleaved_pixels):
            yield _DetectorGraph(model, level)
    else:
        yield _LevelGraph(model, level, input_memory_order(model))
