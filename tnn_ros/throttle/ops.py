"""Width-gated layers (slimmable ops) and depth-gated residual blocks.

Every gated op allocates its parameters at full width and takes the level explicitly in
``forward(x, level)``. Level ``k`` keeps the first ``out_widths[k]`` output channels and reads the first
``in_widths[k]`` input channels: a nested prefix of equal channel groups, so lowering the level really
skips compute (the weight is sliced, nothing is multiplied by zero).

Training mode slices the parameters on every call (gradients flow into the full tensors) and uses one
BatchNorm per level (switchable BN). Eval mode uses per-level caches built ahead of time: contiguous
weight slices with that level's BatchNorm folded in, so inference is conv + bias + activation only.
Caches are rebuilt on ``eval()``, after ``load_state_dict`` and after ``.to()``; dropped on ``train()``.
Call ``rebuild_cache()`` yourself after editing parameters in place while in eval mode.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .levels import check_widths

ACTIVATIONS = (None, "relu")
_CHANNELS_LAST = {4: torch.channels_last, 5: torch.channels_last_3d}


class GatedOp:
    """Mixin with the per-level bookkeeping shared by the gated layers (not a module by itself)."""

    in_widths: list[int]
    out_widths: list[int]
    num_levels: int
    activation: str | None
    norms: nn.ModuleList | None
    cache_builds: int

    def _setup_gating(
        self,
        in_full: int,
        out_full: int,
        in_widths: Sequence[int] | None,
        out_widths: Sequence[int] | None,
        num_levels: int | None,
        activation: str | None,
        norm_type: type[nn.Module] | None,
    ) -> None:
        name = type(self).__name__
        if num_levels is None:
            lengths = {len(w) for w in (in_widths, out_widths) if w is not None}
            if len(lengths) != 1:
                raise ValueError(f"{name}: give num_levels or width lists of one length")
            num_levels = lengths.pop()
        if num_levels < 1:
            raise ValueError(f"{name}: num_levels must be >= 1, got {num_levels}")
        self.num_levels = num_levels
        self.in_widths = check_widths(in_widths or [in_full] * num_levels, in_full, f"{name} in_widths")
        self.out_widths = check_widths(out_widths or [out_full] * num_levels, out_full, f"{name} out_widths")
        if len(self.in_widths) != num_levels or len(self.out_widths) != num_levels:
            raise ValueError(f"{name}: width lists must have num_levels={num_levels} entries")
        if activation not in ACTIVATIONS:
            raise ValueError(f"{name}: activation must be one of {ACTIVATIONS}, got {activation!r}")
        self.activation = activation
        # Switchable BN: each level has its own statistics, since a narrower layer sees other inputs.
        self.norms = nn.ModuleList(norm_type(w) for w in self.out_widths) if norm_type else None
        self._cache: list[tuple[Tensor, Tensor | None]] | None = None
        self.cache_builds = 0
        self.register_load_state_dict_post_hook(_invalidate_after_load)

    # --- caches -------------------------------------------------------------------------------------
    def _sliced(self, level: int) -> tuple[Tensor, Tensor | None]:
        """Weight and bias of one level, sliced from the full parameters (views, no copy)."""
        raise NotImplementedError

    def keep_top_level_weights(self) -> None:
        """Give the top level its own frozen copy of the current weight and bias.

        From then on only the levels below the top read the (trainable) parameters, so they can be
        adapted while the top level keeps computing exactly what it computes now (label-free
        adaptation of a converted network keeps the original at its full level this way). The copy
        is a buffer: it is saved, loaded and moved with the module. Costs one more full weight.
        """
        if self.has_top_level_weights:
            return
        self.register_buffer("top_weight", self.weight.detach().clone())
        self.register_buffer("top_bias", None if self.bias is None else self.bias.detach().clone())
        self._cache = None

    @property
    def has_top_level_weights(self) -> bool:
        return "top_weight" in self._buffers

    def _level_weights(self, level: int) -> tuple[Tensor, Tensor | None]:
        if level == self.num_levels - 1 and self.has_top_level_weights:
            return self.top_weight, self.top_bias
        return self._sliced(level)

    @torch.no_grad()
    def rebuild_cache(self) -> None:
        """Build the contiguous per-level (weight, bias) with BatchNorm folded in (eval mode only)."""
        cache = []
        for level in range(self.num_levels):
            weight, bias = self._level_weights(level)
            if self.norms is not None:
                norm = self.norms[level]
                scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
                shift = norm.bias - norm.running_mean * scale
                if bias is not None:
                    shift = shift + bias * scale
                weight = weight * scale.reshape(-1, *([1] * (weight.dim() - 1)))
                bias = shift
            cache.append(
                (
                    weight.detach().contiguous().clone(),
                    None if bias is None else bias.detach().contiguous().clone(),
                )
            )
        self._cache = cache
        self.cache_builds += 1

    def invalidate_cache(self) -> None:
        """Drop the caches; they are rebuilt before the next eval-mode forward."""
        self._cache = None

    def train(self, mode: bool = True):
        super().train(mode)
        if mode:
            self._cache = None
        else:
            self.rebuild_cache()
        return self

    def _apply(self, fn, *args, **kwargs):
        # .to() / .double() / .cuda() replace the parameters: caches made from the old ones are stale.
        result = super()._apply(fn, *args, **kwargs)
        self._cache = None
        return result

    # --- forward helpers ----------------------------------------------------------------------------
    def _check_input(self, x: Tensor, level: int) -> None:
        if not 0 <= level < self.num_levels:
            raise ValueError(f"{type(self).__name__}: level {level} out of range [0, {self.num_levels - 1}]")
        expected = self.in_widths[level]
        if x.dim() < 2 or x.shape[1] != expected:
            raise ValueError(
                f"{type(self).__name__}: level {level} expects {expected} input channels, "
                f"got input of shape {tuple(x.shape)}"
            )

    def _weights_for(self, level: int) -> tuple[Tensor, Tensor | None]:
        if self.training:
            return self._level_weights(level)
        if self._cache is None:
            self.rebuild_cache()
        return self._cache[level]

    def _finish(self, out: Tensor, level: int) -> Tensor:
        if self.training and self.norms is not None:
            out = self.norms[level](out)
        if self.activation == "relu":
            out = F.relu(out, inplace=not self.training)
        return out


def _invalidate_after_load(module: GatedOp, _incompatible_keys) -> None:
    module.invalidate_cache()
    if not module.training:
        module.rebuild_cache()


class _GatedConvNd(GatedOp):
    """Shared forward of the gated 2-D and 3-D convolutions."""

    depthwise: bool

    def _init_conv(self, in_widths, out_widths, num_levels, norm, activation, norm_type) -> None:
        if self.padding_mode != "zeros":
            raise ValueError(f"{type(self).__name__}: only padding_mode='zeros' is supported")
        self.depthwise = self.groups > 1
        if self.depthwise and not (self.groups == self.in_channels == self.out_channels):
            raise ValueError(
                f"{type(self).__name__}: grouped convs must be depthwise "
                "(groups == in_channels == out_channels)"
            )
        self._setup_gating(
            self.in_channels,
            self.out_channels,
            in_widths,
            out_widths,
            num_levels,
            activation,
            norm_type if norm else None,
        )
        if self.depthwise and self.in_widths != self.out_widths:
            raise ValueError(f"{type(self).__name__}: a depthwise conv needs in_widths == out_widths")
        self.pointwise = (
            not self.depthwise
            and all(k == 1 for k in self.kernel_size)
            and all(v == 1 for v in self.stride)
            and all(v == 0 for v in self.padding)
        )

    def _sliced(self, level: int) -> tuple[Tensor, Tensor | None]:
        c_out = self.out_widths[level]
        weight = self.weight[:c_out] if self.depthwise else self.weight[:c_out, : self.in_widths[level]]
        return weight, None if self.bias is None else self.bias[:c_out]

    def forward(self, x: Tensor, level: int) -> Tensor:  # noqa: D102 - documented on the classes
        self._check_input(x, level)
        weight, bias = self._weights_for(level)
        layout = _CHANNELS_LAST.get(x.dim())
        if (
            self.pointwise
            and not self.training
            and layout
            and not torch.jit.is_tracing()
            and x.is_contiguous(memory_format=layout)
        ):
            # A 1x1 conv on channels-last data is a GEMM over the pixels: F.linear on a permuted view
            # (no copy) avoids the slow im2col path PyTorch picks for small 1x1 convs on CPU. Not
            # while tracing for an export: graph runtimes want a plain Conv they can fuse.
            order = (0, *range(2, x.dim()), 1)
            out = F.linear(x.permute(order), weight.flatten(1), bias)
            return self._finish(out.permute(0, x.dim() - 1, *range(1, x.dim() - 1)), level)
        groups = self.out_widths[level] if self.depthwise else 1
        out = self._conv_fn(x, weight, bias, self.stride_for(level), self.padding, self.dilation, groups)
        return self._finish(out, level)

    def stride_for(self, level: int) -> tuple[int, ...]:
        """The conv's stride at ``level`` (the same at every level unless a subclass varies it)."""
        return self.stride


class GatedConv2d(_GatedConvNd, nn.Conv2d):
    """``nn.Conv2d`` whose active input/output channels depend on the level passed to ``forward``.

    Args:
        in_widths / out_widths: channels used at each level (non-decreasing, last = full width);
            ``None`` keeps that side at full width (e.g. RGB input, fixed head output).
        num_levels: needed only when both width lists are ``None``.
        norm: add one ``BatchNorm2d`` per level after the conv (then ``bias`` defaults to off).
        activation: ``None`` or ``"relu"``, applied after the norm.
        groups: 1, or depthwise (``groups == in_channels == out_channels``).
    """

    _conv_fn = staticmethod(F.conv2d)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool | None = None,
        *,
        in_widths: Sequence[int] | None = None,
        out_widths: Sequence[int] | None = None,
        num_levels: int | None = None,
        norm: bool = False,
        activation: str | None = None,
    ) -> None:
        nn.Conv2d.__init__(
            self,
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            bias=(not norm) if bias is None else bias,
        )
        self._init_conv(in_widths, out_widths, num_levels, norm, activation, nn.BatchNorm2d)


class GatedConv3d(_GatedConvNd, nn.Conv3d):
    """``nn.Conv3d`` with per-level channel slicing; same arguments as :class:`GatedConv2d`."""

    _conv_fn = staticmethod(F.conv3d)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool | None = None,
        *,
        in_widths: Sequence[int] | None = None,
        out_widths: Sequence[int] | None = None,
        num_levels: int | None = None,
        norm: bool = False,
        activation: str | None = None,
    ) -> None:
        nn.Conv3d.__init__(
            self,
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            bias=(not norm) if bias is None else bias,
        )
        self._init_conv(in_widths, out_widths, num_levels, norm, activation, nn.BatchNorm3d)


class GatedLinear(GatedOp, nn.Linear):
    """``nn.Linear`` with per-level feature slicing (``weight[:out_k, :in_k]``).

    Same gating arguments as :class:`GatedConv2d`; ``norm`` adds one ``BatchNorm1d`` per level.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool | None = None,
        *,
        in_widths: Sequence[int] | None = None,
        out_widths: Sequence[int] | None = None,
        num_levels: int | None = None,
        norm: bool = False,
        activation: str | None = None,
    ) -> None:
        nn.Linear.__init__(self, in_features, out_features, bias=(not norm) if bias is None else bias)
        self._setup_gating(
            in_features,
            out_features,
            in_widths,
            out_widths,
            num_levels,
            activation,
            nn.BatchNorm1d if norm else None,
        )

    def _sliced(self, level: int) -> tuple[Tensor, Tensor | None]:
        c_out = self.out_widths[level]
        weight = self.weight[:c_out, : self.in_widths[level]]
        return weight, None if self.bias is None else self.bias[:c_out]

    def forward(self, x: Tensor, level: int) -> Tensor:
        """Apply the layer at ``level`` to ``x`` of shape (N, in_widths[level])."""
        self._check_input(x, level)
        weight, bias = self._weights_for(level)
        return self._finish(F.linear(x, weight, bias), level)


class GatedSequential(nn.ModuleList):
    """A chain of gated modules that all receive the same level."""

    def forward(self, x: Tensor, level: int) -> Tensor:
        """Run every module in order at ``level``."""
        for module in self:
            x = module(x, level)
        return x


class DepthGatedResidual(nn.Module):
    """Residual block that is skipped outright (a Python branch) below ``min_level``.

    Subclasses implement ``residual(x, level)``; the block returns ``relu(x + residual(x))`` when
    active and ``x`` unchanged when skipped (the same as gating the residual branch to zero). Blocks
    with a higher ``min_level`` drop out first, so the set of active blocks is nested in the level.
    """

    def __init__(self, min_level: int = 0) -> None:
        super().__init__()
        if min_level < 0:
            raise ValueError(f"min_level must be >= 0, got {min_level}")
        self.min_level = min_level

    def residual(self, x: Tensor, level: int) -> Tensor:
        """The residual branch (same shape as ``x``)."""
        raise NotImplementedError

    def forward(self, x: Tensor, level: int) -> Tensor:
        """Apply the block at ``level`` (identity when skipped)."""
        if level < self.min_level:
            return x
        out = self.residual(x, level)
        if self.training:
            return F.relu(out + x)
        return F.relu_(out.add_(x))


class GatedBasicBlock(DepthGatedResidual):
    """ResNet basic block (two 3x3 convs, identity shortcut) gated in width and depth.

    Args:
        widths: channels at each level (input = output; non-decreasing, last = full width).
        min_level: the block is skipped below this level.
        dims: 2 for images, 3 for clips.
    """

    def __init__(self, widths: Sequence[int], min_level: int = 0, dims: int = 2) -> None:
        super().__init__(min_level)
        conv = {2: GatedConv2d, 3: GatedConv3d}[dims]
        channels = widths[-1]
        self.conv1 = conv(
            channels,
            channels,
            3,
            padding=1,
            in_widths=widths,
            out_widths=widths,
            norm=True,
            activation="relu",
        )
        self.conv2 = conv(channels, channels, 3, padding=1, in_widths=widths, out_widths=widths, norm=True)

    def residual(self, x: Tensor, level: int) -> Tensor:
        """conv-bn-relu-conv-bn at ``level``."""
        return self.conv2(self.conv1(x, level), level)


def gated_ops(module: nn.Module) -> list[GatedOp]:
    """All gated layers inside ``module`` (including itself)."""
    return [m for m in module.modules() if isinstance(m, GatedOp)]
