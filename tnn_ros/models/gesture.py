"""Throttleable gesture network (gated C3D); the online recognizer is in ``gesture_recognizer``.

The network follows C3D (Tran et al. 2015) scaled down for a CPU: every convolution is 3x3x3 with
stride 1, ``pool1`` is 1x2x2 and the later pools 2x2x2, then two fully connected layers and a
classifier. The later conv stages and both FC layers are width gated into nested channel groups and
the classifier output is fixed. ``conv1`` is not gated in the TNN paper's gated C3D (architecture
``conv1_min_width: None``); with an int it is gated channel by channel (see :func:`conv1_widths`).
conv1 runs over every frame at full resolution, the biggest fixed cost of the low levels: with
``conv1_stride_levels: k`` the lowest ``k`` levels compute it at spatial stride 2 instead of conv1 +
``pool1`` (a quarter of its positions; the same maps after it, so every later layer is unchanged).

CPU detail: PyTorch has no oneDNN kernel for ``conv3d`` on CPU and its fallback is slow and does not
get faster as channels drop. :class:`TemporalFoldConv3d` computes the *same* 3x3x3 convolution as one
``conv2d`` over frames whose channels are stacked with their two temporal neighbours, which runs on
oneDNN and whose latency tracks its MACs. Activations keep a frame-major memory layout (N, T, C, H, W)
behind the logical (N, C, T, H, W) shape so that no layer has to copy them around.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..sim.gestures import GESTURE_CLASSES, NO_GESTURE
from ..throttle import GatedConv3d, GatedLinear, ThrottleableModule, level_widths, round_channels
from ..throttle.convert import _importance, _order

# Pixel normalisation of the network input (uint8 RGB -> roughly zero mean, unit range).
PIXEL_MEAN = 0.45
PIXEL_STD = 0.25

DEFAULT_ARCHITECTURE: dict[str, Any] = {
    "type": "gated_c3d",
    "clip_length": 16,
    "frame_size": [48, 48],  # (width, height) of a frame inside the net
    "num_levels": 8,
    "conv1": 8,
    # None: conv1 is not gated (all levels compute its full width, as in the TNN paper's gated C3D).
    # An int w: conv1 is width gated per channel, from w channels at level 0 up to ``conv1``.
    "conv1_min_width": None,
    # Levels below this compute conv1 at spatial stride 2 and skip pool1 (same map size after it).
    "conv1_stride_levels": 0,
    "stages": [[64], [64, 64], [128, 128], [128]],  # conv widths per stage; a 2x2x2 pool after each
    "fc": [256, 256],
    "min_fraction": 0.375,  # width fraction of the gated layers at level 0, rising linearly to 1
    # None, or a smaller width fraction for level 0 alone (levels 1.. keep the linear widths above):
    # a cheaper lowest level that leaves every other level's widths, and weights, as they were.
    "lowest_fraction": None,
    # Gated widths are multiples of this. 8 keeps the finest steps; 16 is onnxruntime's blocked
    # (NCHWc) channel group on AVX-512 CPUs, which computes a width of 24 as 32 (docs/engines.md).
    "channel_multiple": 8,
    "temporal": "same",  # "same": zero-padded 3x3x3 convs (C3D); "valid": see temporal_plan
}
TEMPORAL_MODES = ("same", "valid")


@dataclass(frozen=True)
class TemporalPlan:
    """Temporal kernel / padding of every conv (conv1 first), temporal pool of every stage, final length."""

    kernels: tuple[int, ...]
    paddings: tuple[int, ...]
    pools: tuple[int, ...]
    final_length: int


def temporal_plan(arch: dict[str, Any]) -> TemporalPlan:
    """How the time axis flows through the net of ``arch``.

    ``"same"`` (C3D): every conv is 3x3x3 with one zero frame of padding on each side and every stage
    ends with a 2x temporal pool, so 16 frames become 1. ``"valid"``: no temporal padding at all:
    a conv has a temporal kernel of 3 while at least 3 positions are left (else 1, a per-frame 3x3
    conv) and a stage pools time by 2 while an even number >= 2 of positions is left. Every output
    then depends on real frames only, which is what lets :mod:`tnn_ros.models.gesture_streaming`
    compute each frame's part once and reuse it (16 frames: 14, 12, pool 6, 4, 2, pool 1, then 1).
    """
    mode = arch.get("temporal", "same")
    if mode not in TEMPORAL_MODES:
        raise ValueError(f"temporal must be one of {TEMPORAL_MODES}, got {mode!r}")
    t = int(arch["clip_length"])
    kernels, paddings, pools = [], [], []

    def conv() -> None:
        nonlocal t
        kt = 3 if mode == "same" or t >= 3 else 1
        pt = 1 if mode == "same" else 0
        kernels.append(kt)
        paddings.append(pt)
        t = t + 2 * pt - kt + 1

    conv()  # conv1
    for stage in arch["stages"]:
        for _ in stage:
            conv()
        pool = 2 if mode == "same" or (t >= 2 and t % 2 == 0) else 1
        pools.append(pool)
        t //= pool
    return TemporalPlan(tuple(kernels), tuple(paddings), tuple(pools), t)


def fold_temporal_weight(weight: Tensor) -> Tensor:
    """(C_out, C_in, 3, kh, kw) conv3d weight -> (C_out, 3 * C_in, kh, kw) conv2d weight.

    Input channel ``dt * C_in + c`` of the folded weight reads channel ``c`` of frame ``t + dt - 1``.
    """
    c_out, c_in, kt, kh, kw = weight.shape
    return weight.permute(0, 2, 1, 3, 4).reshape(c_out, kt * c_in, kh, kw)


def spatial_stride(stride) -> int:
    """The spatial stride of a conv3d ``stride`` (an int or ``(1, s, s)``; time is never strided)."""
    if isinstance(stride, (tuple, list)):
        if len(stride) != 3 or stride[0] != 1 or stride[1] != stride[2]:
            raise ValueError(f"only strides (1, s, s) are supported, got {tuple(stride)}")
        return int(stride[1])
    if stride != 1:
        raise ValueError(f"an int stride must be 1 (time is never strided), got {stride}")
    return 1


def conv3d_by_conv2d(
    x: Tensor, weight: Tensor, bias: Tensor | None, stride=1, padding=1, dilation=1, groups: int = 1
) -> Tensor:
    """``F.conv3d(x, weight, bias, stride, padding=(pt, 1, 1))`` for a kt x 3 x 3 kernel, by one ``conv2d``.

    ``x`` is (N, C, T, H, W); ``weight`` is the 5-D conv3d weight or its :func:`fold_temporal_weight`
    (kt is read from it); ``padding`` is the conv's padding, an int or ``(pt, ph, pw)`` (``ph = pw = 1``);
    ``stride`` 1 or ``(1, s, s)`` (:func:`spatial_stride`). The result has the logical shape
    (N, C_out, T + 2 pt - kt + 1, ceil(H / s), ceil(W / s)) and a frame-major memory layout. The other
    keyword arguments exist to match ``F.conv3d``; only dilation 1 and groups 1 are valid (checked
    when the layer is built).
    """
    n, c, t, h, w = x.shape
    if weight.dim() == 5:
        weight = fold_temporal_weight(weight)
    kt = weight.shape[1] // c
    pt = int(padding[0] if isinstance(padding, (tuple, list)) else padding)
    frames = x.permute(0, 2, 1, 3, 4).contiguous()  # (N, T, C, H, W); free if frame-major
    if pt:
        frames = F.pad(frames, (0, 0, 0, 0, 0, 0, pt, pt))  # zero frames before and after
    t_out = frames.shape[1] - kt + 1
    if t_out < 1:
        raise ValueError(f"{t} frames are too few for a temporal kernel of {kt} with padding {pt}")
    stacked = frames if kt == 1 else torch.cat([frames[:, d : d + t_out] for d in range(kt)], dim=2)
    out = F.conv2d(
        stacked.reshape(n * t_out, kt * c, h, w), weight, bias, stride=spatial_stride(stride), padding=1
    )
    return out.view(n, t_out, *out.shape[1:]).permute(0, 2, 1, 3, 4)


class TemporalFoldConv3d(GatedConv3d):
    """A gated kt x 3 x 3 / stride 1 / padding (pt, 1, 1) ``Conv3d`` computed by :func:`conv3d_by_conv2d`.

    ``temporal_kernel`` is 3 or 1, ``temporal_padding`` 1 ("same" length) or 0 ("valid": no zero
    frames, so an output depends only on real frames and a stream can compute it once and reuse it).
    ``spatial_strides``: the spatial stride at each level (default 1 everywhere; the net's conv1 uses
    2 at its lowest ``conv1_stride_levels`` levels).

    Parameters, state dict, gating, switchable BN and MAC counting are those of
    :class:`~tnn_ros.throttle.GatedConv3d`; only the kernel call differs, and the eval-mode caches
    hold the folded (conv2d) weights.
    """

    _conv_fn = staticmethod(conv3d_by_conv2d)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        temporal_kernel: int = 3,
        temporal_padding: int = 1,
        spatial_strides: Sequence[int] | None = None,
        **gating,
    ) -> None:
        if (
            temporal_kernel not in (1, 3)
            or temporal_padding not in (0, 1)
            or temporal_padding > temporal_kernel // 2
        ):
            raise ValueError(
                f"temporal kernel 3 or 1 with padding <= kernel // 2 needed, got "
                f"{temporal_kernel} / {temporal_padding}"
            )
        super().__init__(
            in_channels,
            out_channels,
            (temporal_kernel, 3, 3),
            stride=1,
            padding=(temporal_padding, 1, 1),
            **gating,
        )
        strides = [1] * self.num_levels if spatial_strides is None else [int(s) for s in spatial_strides]
        if len(strides) != self.num_levels or any(s not in (1, 2) for s in strides):
            raise ValueError(
                f"spatial_strides must be 1 or 2 for each of {self.num_levels} levels, got {strides}"
            )
        self.spatial_strides = strides

    def stride_for(self, level: int) -> tuple[int, int, int]:
        """(1, s, s): time is never strided, space by ``spatial_strides[level]``."""
        return (1, self.spatial_strides[level], self.spatial_strides[level])

    @torch.no_grad()
    def rebuild_cache(self) -> None:
        """Build the per-level caches (BN folded in) and fold their weights for ``conv2d``."""
        super().rebuild_cache()
        self._cache = [(fold_temporal_weight(weight).contiguous(), bias) for weight, bias in self._cache]


def _pairwise_max(x: Tensor, dim: int) -> Tensor:
    """Max over non-overlapping pairs along ``dim``; an odd last element stands alone (ceil mode)."""
    if x.shape[dim] % 2:
        x = torch.cat([x, x.narrow(dim, x.shape[dim] - 1, 1)], dim=dim)
    even = [slice(None)] * x.dim()
    odd = [slice(None)] * x.dim()
    even[dim], odd[dim] = slice(0, None, 2), slice(1, None, 2)
    return torch.maximum(x[tuple(even)], x[tuple(odd)])


def max_pool_clip(x: Tensor, temporal: int) -> Tensor:
    """Max-pool (N, C, T, H, W) by ``temporal`` x 2 x 2 (ceil mode in space), keeping frame-major memory.

    Written as pairwise maxima of strided views: on CPU this is several times faster than
    ``max_pool2d``/``max_pool3d`` (which also compute indices) and gives the same values.
    """
    if temporal not in (1, 2):
        raise ValueError(f"temporal pooling must be 1 or 2, got {temporal}")
    if temporal == 2 and x.shape[2] % 2:
        raise ValueError(f"cannot pool {x.shape[2]} frames by 2")
    frames = x.permute(0, 2, 1, 3, 4)  # (N, T, C, H, W) view
    pooled = _pairwise_max(_pairwise_max(frames, 4), 3)
    if temporal == 2:
        pooled = _pairwise_max(pooled, 1)
    return pooled.contiguous().permute(0, 2, 1, 3, 4)


def check_architecture(arch: dict[str, Any]) -> None:
    """Raise ValueError with one line for an architecture (defaults merged in) no net can be built from."""
    unknown = set(arch) - set(DEFAULT_ARCHITECTURE)
    if unknown:
        raise ValueError(f"unknown gesture architecture keys: {sorted(unknown)}")
    if arch["type"] != DEFAULT_ARCHITECTURE["type"]:
        raise ValueError(f"architecture type must be {DEFAULT_ARCHITECTURE['type']!r}, got {arch['type']!r}")
    width, height = arch["frame_size"]
    if width < 8 or height < 8:
        raise ValueError(f"frames >= 8x8 needed, got {width}x{height}")
    if arch.get("temporal", "same") not in TEMPORAL_MODES:
        raise ValueError(f"temporal must be one of {TEMPORAL_MODES}, got {arch.get('temporal')!r}")
    pools = 2 ** len(arch["stages"])
    if arch.get("temporal", "same") == "same" and arch["clip_length"] % pools:
        raise ValueError(
            f"clip_length {arch['clip_length']} must be divisible by {pools} (one 2x temporal pool per stage)"
        )
    if arch["clip_length"] < 3:
        raise ValueError(f"clip_length must be >= 3, got {arch['clip_length']}")
    conv1_min = arch.get("conv1_min_width")
    if conv1_min is not None and (
        isinstance(conv1_min, bool) or not isinstance(conv1_min, int) or not 1 <= conv1_min <= arch["conv1"]
    ):
        raise ValueError(f"conv1_min_width must be None or an int in [1, {arch['conv1']}], got {conv1_min!r}")
    strided = arch.get("conv1_stride_levels", 0)
    if isinstance(strided, bool) or not isinstance(strided, int) or not 0 <= strided <= arch["num_levels"]:
        raise ValueError(
            f"conv1_stride_levels must be an int in [0, {arch['num_levels']}] (levels), got {strided!r}"
        )
    lowest = arch.get("lowest_fraction")
    if lowest is not None and (
        isinstance(lowest, bool)
        or not isinstance(lowest, (int, float))
        or not 0 < lowest <= arch["min_fraction"]
    ):
        raise ValueError(
            f"lowest_fraction must be None or a number in (0, min_fraction {arch['min_fraction']}], "
            f"got {lowest!r}"
        )
    widths = [arch["conv1"], *(c for stage in arch["stages"] for c in stage), *arch["fc"]]
    if any(c <= 0 or c % 8 for c in widths):
        raise ValueError(f"channel widths must be positive multiples of 8, got {widths}")
    multiple, gated = arch.get("channel_multiple", 8), widths[1:]
    if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1:
        raise ValueError(f"channel_multiple must be a positive int, got {multiple!r}")
    if any(c % multiple for c in gated):
        raise ValueError(f"channel_multiple {multiple} must divide every gated width, got {gated}")


def gated_widths(channels: int, arch: dict[str, Any]) -> list[int]:
    """Channels of a gated layer of full width ``channels`` at each level of the net of ``arch``.

    ``level_widths(channels, num_levels, min_fraction, channel_multiple)``, with level 0 narrowed to
    ``lowest_fraction`` (rounded to the multiple, at least one) when that is set.
    """
    multiple = int(arch["channel_multiple"])
    widths = level_widths(channels, int(arch["num_levels"]), arch["min_fraction"], multiple)
    lowest = arch.get("lowest_fraction")
    if lowest is not None and len(widths) > 1:
        widths[0] = min(round_channels(channels * lowest, multiple), widths[0])
    return widths


def conv1_widths(arch: dict[str, Any]) -> list[int]:
    """Output channels of ``conv1`` at each level of the net of ``arch``.

    Ungated (``conv1_min_width`` None): the full width everywhere. Gated: linear from
    ``conv1_min_width`` at level 0 to ``conv1`` at the top, in single channels. conv1 is too narrow for
    the usual groups of 8 (8 channels would stay 8 at every level), and its cost is set by the frames
    it runs over, not by vector width.
    """
    full, levels, minimum = int(arch["conv1"]), int(arch["num_levels"]), arch.get("conv1_min_width")
    if minimum is None:
        return [full] * levels
    return level_widths(full, levels, minimum / full, multiple=1)


class ThrottleableGestureNet(ThrottleableModule):
    """Gated C3D classifying a clip of ``clip_length`` RGB frames into ``classes``.

    Args:
        classes: class names; must contain ``"no_gesture"``.
        architecture: overrides of :data:`DEFAULT_ARCHITECTURE` (clip_length, frame_size,
            num_levels, conv1, conv1_min_width, conv1_stride_levels, stages, fc, min_fraction,
            lowest_fraction, channel_multiple, temporal).
        card: the model card this net was loaded with (kept as ``self.card``).

    Level ``k`` runs every gated layer at ``gated_widths(c, architecture)[k]`` channels (linear from
    ``min_fraction``, level 0 at ``lowest_fraction`` when set; multiples of ``channel_multiple``)
    (conv1 at ``conv1_widths(architecture)[k]``); levels below ``conv1_stride_levels`` run conv1 at
    spatial stride 2 in place of conv1 + pool1 (:meth:`conv1_strided`).
    ``forward`` takes (N, 3, T, H, W) float clips normalised by :meth:`preprocess`.
    """

    def __init__(
        self,
        classes: Sequence[str] = GESTURE_CLASSES,
        architecture: dict[str, Any] | None = None,
        card: dict | None = None,
    ) -> None:
        arch = {**DEFAULT_ARCHITECTURE, **(architecture or {})}
        arch["frame_size"] = [int(v) for v in arch["frame_size"]]
        arch["stages"] = [[int(c) for c in stage] for stage in arch["stages"]]
        check_architecture(arch)
        super().__init__(int(arch["num_levels"]))
        self.classes = list(classes)
        if NO_GESTURE not in self.classes or len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes must be unique and include {NO_GESTURE!r}, got {self.classes}")
        self.architecture = arch
        self.clip_length = int(arch["clip_length"])
        self.frame_size = (arch["frame_size"][0], arch["frame_size"][1])
        self.card = dict(card or {})
        levels = self.num_levels
        plan = temporal_plan(arch)
        self.temporal_plan = plan
        kernels = iter(zip(plan.kernels, plan.paddings))
        kt, pt = next(kernels)
        first_widths = conv1_widths(arch)
        strided = int(arch.get("conv1_stride_levels", 0))
        self.conv1 = TemporalFoldConv3d(
            3,
            arch["conv1"],
            kt,
            pt,
            spatial_strides=[2 if level < strided else 1 for level in range(levels)],
            out_widths=first_widths,
            norm=True,
            activation="relu",
        )
        self.convs = nn.ModuleList()  # flat list of gated convs; self._pool_after marks stage ends
        self._pool_after: list[int] = []  # temporal pool after each conv (0: none, 1 or 2: stage end)
        in_widths = first_widths
        for stage, stage_pool in zip(arch["stages"], plan.pools):
            for i, channels in enumerate(stage):
                out_widths = gated_widths(channels, arch)
                kt, pt = next(kernels)
                self.convs.append(
                    TemporalFoldConv3d(
                        in_widths[-1],
                        channels,
                        kt,
                        pt,
                        in_widths=in_widths,
                        out_widths=out_widths,
                        norm=True,
                        activation="relu",
                    )
                )
                self._pool_after.append(stage_pool if i == len(stage) - 1 else 0)
                in_widths = out_widths
        # Flattened size after the last pool (C3D flattens; keeps where in the frame things happened).
        t, w, h = plan.final_length, self.frame_size[0], self.frame_size[1]
        w, h = math.ceil(w / 2), math.ceil(h / 2)
        for _ in arch["stages"]:
            w, h = math.ceil(w / 2), math.ceil(h / 2)
        positions = t * w * h
        self.feature_shape = (in_widths[-1], t, h, w)
        fc_layers = []
        features = [c * positions for c in in_widths]
        for channels in arch["fc"]:
            out_widths = gated_widths(channels, arch)
            fc_layers.append(
                GatedLinear(
                    features[-1], channels, in_widths=features, out_widths=out_widths, activation="relu"
                )
            )
            features = out_widths
        self.fcs = nn.ModuleList(fc_layers)
        self.classifier = GatedLinear(features[-1], len(self.classes), in_widths=features)
        for module in self.modules():
            if isinstance(module, (nn.Conv3d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def conv1_strided(self, level: int) -> bool:
        """Whether ``level`` runs conv1 at spatial stride 2 and skips pool1 (same map size after)."""
        return self.conv1.spatial_strides[level] == 2

    # --- tensors --------------------------------------------------------------------------------------
    def example_input(self, batch_size: int = 1) -> Tensor:
        """A zero clip batch of the shape the net runs on: (N, 3, T, H, W)."""
        return torch.zeros(batch_size, 3, self.clip_length, self.frame_size[1], self.frame_size[0])

    @staticmethod
    def preprocess(clips: Tensor) -> Tensor:
        """uint8 (N, T, H, W, 3) RGB -> float (N, 3, T, H, W) normalised, frame-major in memory."""
        if clips.dim() != 5 or clips.shape[-1] != 3:
            raise ValueError(f"expected uint8 clips of shape (N, T, H, W, 3), got {tuple(clips.shape)}")
        frames = clips.permute(0, 1, 4, 2, 3).float()  # (N, T, 3, H, W), contiguous
        frames = frames.mul_(1.0 / (255.0 * PIXEL_STD)).sub_(PIXEL_MEAN / PIXEL_STD)
        return frames.permute(0, 2, 1, 3, 4)

    def forward(self, clips: Tensor) -> Tensor:
        """Class logits (N, num_classes) of normalised clips (N, 3, T, H, W) at ``self.level``."""
        expected = (3, self.clip_length, self.frame_size[1], self.frame_size[0])
        if clips.dim() != 5 or tuple(clips.shape[1:]) != expected:
            raise ValueError(
                f"expected clips of shape (N, {', '.join(map(str, expected))}), got {tuple(clips.shape)}"
            )
        level = self.level
        x = self.conv1(clips, level)
        if not self.conv1_strided(level):
            x = max_pool_clip(x, temporal=1)
        for conv, pool in zip(self.convs, self._pool_after):
            x = conv(x, level)
            if pool:
                x = max_pool_clip(x, temporal=pool)
        x = x.reshape(x.shape[0], -1)  # channel-major, so a narrower level is a prefix of the features
        for fc in self.fcs:
            x = fc(x, level)
        return self.classifier(x, level)

    # --- numpy API ------------------------------------------------------------------------------------
    def frames_to_clip(self, frames_rgb: Sequence[np.ndarray]) -> Tensor:
        """``clip_length`` HxWx3 uint8 frames (any size) -> uint8 tensor (1, T, h, w, 3) at ``frame_size``."""
        if len(frames_rgb) != self.clip_length:
            raise ValueError(f"expected {self.clip_length} frames, got {len(frames_rgb)}")
        return torch.from_numpy(np.stack([resize_frame(f, self.frame_size) for f in frames_rgb]))[None]

    @torch.no_grad()
    def predict_clip(self, frames_rgb: Sequence[np.ndarray]) -> np.ndarray:
        """Probabilities (num_classes,) of ``clip_length`` HxWx3 uint8 RGB frames at the current level."""
        if self.training:
            self.eval()
        logits = self(self.preprocess(self.frames_to_clip(frames_rgb)))
        return torch.softmax(logits[0], dim=0).numpy()


def resize_frame(frame_rgb: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
    """Check an HxWx3 uint8 frame and fit it to ``frame_size`` (width, height).

    The frame is centre-cropped to the target aspect ratio first, so the hand keeps its shape (the
    net was trained on undistorted hands), then resized with area averaging.
    """
    if (
        not isinstance(frame_rgb, np.ndarray)
        or frame_rgb.ndim != 3
        or frame_rgb.shape[2] != 3
        or frame_rgb.dtype != np.uint8
        or frame_rgb.shape[0] < 1
        or frame_rgb.shape[1] < 1
    ):
        got = f"{getattr(frame_rgb, 'dtype', type(frame_rgb).__name__)} {getattr(frame_rgb, 'shape', '')}"
        raise ValueError(f"expected an HxWx3 uint8 RGB frame, got {got}")
    width, height = int(frame_size[0]), int(frame_size[1])
    frame_h, frame_w = frame_rgb.shape[:2]
    if (frame_w, frame_h) == (width, height):
        return frame_rgb.copy()  # the recognizer keeps it: never alias the caller's buffer
    # Largest centred window with the target aspect ratio.
    crop_w = min(frame_w, max(1, round(frame_h * width / height)))
    crop_h = min(frame_h, max(1, round(frame_w * height / width)))
    x0, y0 = (frame_w - crop_w) // 2, (frame_h - crop_h) // 2
    cropped = frame_rgb[y0 : y0 + crop_h, x0 : x0 + crop_w]
    return cv2.resize(cropped, (width, height), interpolation=cv2.INTER_AREA)


fit_frame = resize_frame  # the name the perception pipeline can use to pre-shrink frames


# --- conv1 channel order ---------------------------------------------------------------------------------


def conv1_channel_order(net: ThrottleableGestureNet) -> Tensor:
    """conv1's output channels, most important first (what a gated conv1 should keep longest).

    Importance as in :mod:`tnn_ros.throttle.convert`: |BN scale| of the channel (the top level's
    BatchNorm) times the L2 norm of the ``convs.0`` weights that read it. Ties keep their order.
    """
    return _order(_importance(net.conv1.norms[-1], net.convs[0].weight))


@torch.no_grad()
def permute_conv1_channels(net: ThrottleableGestureNet, order: Tensor) -> None:
    """Reorder conv1's output channels by ``order`` in place, and ``convs.0``'s inputs to match.

    Every output of the net stays the same (a relabelling of hidden channels). Only for an ungated
    conv1 (every level's BatchNorm has all channels); caches are rebuilt in eval mode.
    """
    conv1, consumer = net.conv1, net.convs[0]
    order = torch.as_tensor(order, dtype=torch.long)
    if sorted(order.tolist()) != list(range(conv1.out_channels)):
        raise ValueError(f"order must be a permutation of {conv1.out_channels} channels, got {order}")
    if any(width != conv1.out_channels for width in conv1.out_widths):
        raise ValueError("permute_conv1_channels needs an ungated conv1 (conv1_min_width None)")
    conv1.weight.copy_(conv1.weight[order])
    if conv1.bias is not None:
        conv1.bias.copy_(conv1.bias[order])
    for norm in conv1.norms:
        for tensor in (norm.weight, norm.bias, norm.running_mean, norm.running_var):
            tensor.copy_(tensor[order])
    consumer.weight.copy_(consumer.weight[:, order])
    for module in (conv1, consumer):
        module.invalidate_cache()
        if not module.training:
            module.rebuild_cache()


# --- model files -----------------------------------------------------------------------------------------


def build_from_card(card: dict) -> ThrottleableGestureNet:
    """Rebuild the (untrained) network a model card describes."""
    return ThrottleableGestureNet(card["classes"], card["architecture"], card=card)
