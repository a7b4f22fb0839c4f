"""Turn trained torchvision networks into throttleable ones, in place (REDS-style neuron ordering).

Only the *hidden* channels inside a residual-style block are gated: the expansion channels of a
MobileNetV3 ``InvertedResidual`` and the inner channels of a video-ResNet ``BasicBlock``
(``planes``, plus the ``midplanes`` of R(2+1)D's factorised convs). A block's input and output stay
full width, so no block depends on how another one is sliced and everything outside the blocks
(stems, FPN, detection heads, classifiers) stays the original torchvision module.

Each hidden dimension is permuted once by an importance score (the |BN scale| of the channel times
the norm of the weights that read it), so the prefix kept at every level holds the most important
channels. The permutation is applied consistently to the producing conv, its BatchNorm and the
consuming conv, so the full level computes exactly the original function. Blocks whose shortcut is
the identity are additionally skipped outright at low levels, least important (smallest last-BN
scale) first.

The gated layers are the ones of :mod:`tnn_ros.throttle.ops` (sliced weights, per-level BN folded
into per-level caches); the level comes from one :class:`LevelState` shared by all converted blocks,
because torchvision's own ``forward`` methods call the blocks without a level argument.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.mobilenetv3 import InvertedResidual
from torchvision.models.video.resnet import BasicBlock, Conv2Plus1D
from torchvision.ops.misc import SqueezeExcitation

from .ops import GatedConv2d, GatedConv3d, _GatedConvNd


class LevelState:
    """The level every converted block of one network runs at (set by the owning model's forward)."""

    def __init__(self, num_levels: int) -> None:
        self.num_levels = num_levels
        self.level = num_levels - 1


@dataclass
class ConvertOptions:
    """How a network is converted.

    Args:
        num_levels: quantized levels (the top one is the original network).
        min_width_fraction: share of each hidden dimension kept at level 0.
        channel_multiple: hidden widths are rounded to multiples of this (the full width excepted).
        depth_fraction: share of the skippable blocks dropped at level 0; none is dropped from level
            ``num_levels // 2`` on.
    """

    num_levels: int = 8
    min_width_fraction: float = 0.25
    channel_multiple: int = 8
    depth_fraction: float = 0.5

    def check(self) -> None:
        if not isinstance(self.num_levels, int) or self.num_levels < 2:
            raise ValueError(f"num_levels must be an int >= 2, got {self.num_levels!r}")
        if not 0.0 < self.min_width_fraction <= 1.0:
            raise ValueError(f"min_width_fraction must be in (0, 1], got {self.min_width_fraction}")
        if self.channel_multiple < 1:
            raise ValueError(f"channel_multiple must be >= 1, got {self.channel_multiple}")
        if not 0.0 <= self.depth_fraction <= 1.0:
            raise ValueError(f"depth_fraction must be in [0, 1], got {self.depth_fraction}")


def hidden_widths(channels: int, options: ConvertOptions) -> list[int]:
    """Channels kept per level for a hidden dimension of ``channels`` (non-decreasing, top = full).

    Like :func:`~tnn_ros.throttle.levels.level_widths`, but the full width need not be a multiple
    of the group size (R(2+1)D's midplanes are e.g. 144 or 230).
    """
    levels, multiple = options.num_levels, options.channel_multiple
    widths = []
    for level in range(levels):
        fraction = options.min_width_fraction + (1.0 - options.min_width_fraction) * level / (levels - 1)
        width = max(multiple, int(round(channels * fraction / multiple)) * multiple)
        width = min(width, channels)
        widths.append(max(width, widths[-1]) if widths else width)
    widths[-1] = channels
    return widths


# --- BatchNorm and conv helpers -----------------------------------------------------------------------


def _bn_tensors(norm: nn.Module) -> tuple[Tensor, Tensor, Tensor, Tensor, float]:
    """(weight, bias, running_mean, running_var, eps) of a BatchNorm or torchvision FrozenBatchNorm."""
    return norm.weight, norm.bias, norm.running_mean, norm.running_var, float(norm.eps)


def _gated_from(
    conv: nn.Conv2d | nn.Conv3d,
    norm: nn.Module | None,
    in_order: Tensor | None,
    out_order: Tensor | None,
    in_widths: Sequence[int] | None,
    out_widths: Sequence[int] | None,
    num_levels: int,
) -> _GatedConvNd:
    """A gated copy of ``conv`` (+ ``norm``) with its channels permuted by the given orders.

    ``None`` orders keep that side as is; ``None`` widths keep it at full width on every level.
    Every level's BatchNorm starts as the matching slice of the original one.
    """
    cls = GatedConv3d if conv.weight.dim() == 5 else GatedConv2d
    gated = cls(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=conv.bias is not None,
        in_widths=in_widths,
        out_widths=out_widths,
        num_levels=num_levels,
        norm=norm is not None,
    )
    with torch.no_grad():
        weight = conv.weight
        if out_order is not None:
            weight = weight[out_order]
        if in_order is not None and not gated.depthwise:
            weight = weight[:, in_order]
        gated.weight.copy_(weight)
        if conv.bias is not None:
            gated.bias.copy_(conv.bias if out_order is None else conv.bias[out_order])
        if norm is not None:
            order = torch.arange(conv.out_channels) if out_order is None else out_order
            weight, bias, mean, var, eps = _bn_tensors(norm)
            for level_norm, width in zip(gated.norms, gated.out_widths):
                keep = order[:width]
                level_norm.weight.copy_(weight[keep])
                level_norm.bias.copy_(bias[keep])
                level_norm.running_mean.copy_(mean[keep])
                level_norm.running_var.copy_(var[keep])
                level_norm.eps = eps
                if isinstance(norm, nn.modules.batchnorm._BatchNorm):
                    level_norm.momentum = norm.momentum
    return gated


def _importance(norm: nn.Module, consumer: Tensor) -> Tensor:
    """Per-channel importance: |BN scale| x L2 norm of the consumer weights reading the channel."""
    reading = consumer.detach().transpose(0, 1).flatten(1).norm(dim=1)
    return norm.weight.detach().abs() * reading


def _order(scores: Tensor) -> Tensor:
    # Stable, so equal scores (e.g. a fresh BN's unit scales) keep their original order.
    return torch.sort(scores, descending=True, stable=True).indices


def _act(module: nn.Module | None) -> nn.Module | None:
    """The activation module itself (never in-place: it may see a view of a sliced tensor)."""
    if module is None or isinstance(module, nn.Identity):
        return None
    if hasattr(module, "inplace"):
        module.inplace = False
    return module


class ConvertedBlock(nn.Module):
    """Common part of the converted blocks: the shared level and depth gating."""

    def __init__(self, state: LevelState, min_level: int, skippable: bool) -> None:
        super().__init__()
        if min_level and not skippable:
            raise ValueError("only blocks with an identity shortcut can be skipped")
        self.state = state
        self.min_level = int(min_level)
        self.skippable = skippable

    def is_active(self, level: int) -> bool:
        """Whether the block runs at ``level`` (a skipped block returns its input unchanged)."""
        return level >= self.min_level


# --- MobileNetV3 --------------------------------------------------------------------------------------


class GatedSqueezeExcitation(nn.Module):
    """torchvision's ``SqueezeExcitation`` on the first ``widths[level]`` hidden channels."""

    def __init__(self, se: SqueezeExcitation, order: Tensor, widths: Sequence[int], num_levels: int) -> None:
        super().__init__()
        self.fc1 = _gated_from(se.fc1, None, order, None, widths, None, num_levels)
        self.fc2 = _gated_from(se.fc2, None, None, order, None, widths, num_levels)
        self.activation = _act(se.activation)
        self.scale_activation = se.scale_activation

    def forward(self, x: Tensor, level: int) -> Tensor:
        scale = F.adaptive_avg_pool2d(x, 1)
        scale = self.activation(self.fc1(scale, level))
        return x * self.scale_activation(self.fc2(scale, level))


class GatedInvertedResidual(ConvertedBlock):
    """A MobileNetV3 ``InvertedResidual`` whose expansion channels are gated (input/output full).

    Blocks without an expansion conv (the depthwise conv reads the block input directly) keep
    their width; they can still be skipped when they have an identity shortcut.
    """

    def __init__(
        self,
        block: InvertedResidual,
        options: ConvertOptions,
        state: LevelState,
        min_level: int = 0,
        permute: bool = True,
    ) -> None:
        super().__init__(state, min_level, skippable=block.use_res_connect)
        layers = list(block.block)
        self.use_res_connect = block.use_res_connect
        # [expand,] depthwise, [squeeze-excitation,] project; the expand conv is the ungrouped first one.
        expand = layers.pop(0) if layers[0][0].groups == 1 else None
        depthwise, *rest = layers
        se = rest[0] if len(rest) == 2 else None
        project = rest[-1]
        levels = options.num_levels
        hidden = depthwise[0].out_channels
        if expand is None:
            order, widths = None, None  # the depthwise conv works on the block input: full width
        else:
            order = _order(_importance(depthwise[1], project[0].weight)) if permute else torch.arange(hidden)
            widths = hidden_widths(hidden, options)
        self.hidden_widths = widths or [hidden] * levels
        self.expand = (
            None if expand is None else _gated_from(expand[0], expand[1], None, order, None, widths, levels)
        )
        self.expand_act = None if expand is None else _act(expand[2] if len(expand) > 2 else None)
        self.depthwise = _gated_from(depthwise[0], depthwise[1], order, order, widths, widths, levels)
        self.depthwise_act = _act(depthwise[2] if len(depthwise) > 2 else None)
        self.se = (
            None
            if se is None
            else GatedSqueezeExcitation(
                se, order if order is not None else torch.arange(hidden), self.hidden_widths, levels
            )
        )
        self.project = _gated_from(project[0], project[1], order, None, widths, None, levels)
        self.out_channels = block.out_channels

    def forward(self, x: Tensor) -> Tensor:
        level = self.state.level
        if level < self.min_level:
            return x
        out = x
        if self.expand is not None:
            out = self.expand(out, level)
            if self.expand_act is not None:
                out = self.expand_act(out)
        out = self.depthwise(out, level)
        if self.depthwise_act is not None:
            out = self.depthwise_act(out)
        if self.se is not None:
            out = self.se(out, level)
        out = self.project(out, level)
        return out + x if self.use_res_connect else out


# --- video ResNets ------------------------------------------------------------------------------------


def _conv_bn_act_chain(block: BasicBlock) -> list[tuple[nn.Module, nn.Module, nn.Module | None]]:
    """A BasicBlock as (conv, norm, activation) stages; R(2+1)D's factorised convs give two each."""
    stages = []
    for sequence, last in ((block.conv1, False), (block.conv2, True)):
        builder, norm = sequence[0], sequence[1]
        act = sequence[2] if len(sequence) > 2 else None
        if isinstance(builder, Conv2Plus1D):
            stages.append((builder[0], builder[1], builder[2]))
            stages.append((builder[3], norm, act))
        elif isinstance(builder, nn.Conv3d):
            stages.append((builder, norm, act))
        else:
            raise ValueError(f"unsupported conv builder {type(builder).__name__} in a video BasicBlock")
        assert last or act is not None
    return stages


class GatedVideoBasicBlock(ConvertedBlock):
    """A video-ResNet ``BasicBlock`` (R3D, MC3, R(2+1)D) with every inner channel dimension gated."""

    def __init__(
        self,
        block: BasicBlock,
        options: ConvertOptions,
        state: LevelState,
        min_level: int = 0,
        permute: bool = True,
    ) -> None:
        super().__init__(state, min_level, skippable=block.downsample is None)
        stages = _conv_bn_act_chain(block)
        levels = options.num_levels
        orders: list[Tensor | None] = [None]
        widths: list[list[int] | None] = [None]
        for (conv, norm, _), (next_conv, _, _) in zip(stages, stages[1:]):
            channels = conv.out_channels
            orders.append(_order(_importance(norm, next_conv.weight)) if permute else torch.arange(channels))
            widths.append(hidden_widths(channels, options))
        orders.append(None)
        widths.append(None)
        self.convs = nn.ModuleList(
            _gated_from(conv, norm, orders[i], orders[i + 1], widths[i], widths[i + 1], levels)
            for i, (conv, norm, _) in enumerate(stages)
        )
        self.acts = nn.ModuleList(_act(act) or nn.Identity() for _, _, act in stages)
        self.downsample = block.downsample
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        level = self.state.level
        if level < self.min_level:
            return x
        out = x
        for conv, act in zip(self.convs, self.acts):
            out = act(conv(out, level))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


# --- whole networks -----------------------------------------------------------------------------------


def _block_importance(block: nn.Module) -> float:
    """Depth importance of a block: mean |scale| of the BatchNorm that ends its residual branch."""
    if isinstance(block, InvertedResidual):
        norm = block.block[-1][1]
    else:
        norm = block.conv2[1]
    return float(norm.weight.detach().abs().mean())


def depth_min_levels(scores: Sequence[float], options: ConvertOptions) -> list[int]:
    """Level from which each skippable block runs, least important first to go.

    At level 0 the ``depth_fraction`` least important blocks are skipped; the number skipped falls
    linearly to none at level ``num_levels // 2``, so the set of active blocks grows with the level.
    """
    count = len(scores)
    stop = max(1, options.num_levels // 2)
    rank = sorted(range(count), key=lambda i: (scores[i], i))  # ascending importance
    min_levels = [0] * count
    for level in range(stop):
        skipped = int(round(count * options.depth_fraction * (1.0 - level / stop)))
        for i in rank[:skipped]:
            min_levels[i] = level + 1
    return min_levels


def _convertible_blocks(model: nn.Module) -> list[tuple[nn.Module, str, nn.Module]]:
    """(parent, attribute name, block) of every InvertedResidual / video BasicBlock, in model order."""
    found = []
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, (InvertedResidual, BasicBlock)):
                found.append((parent, name, child))
    return found


def convert_blocks(
    model: nn.Module,
    options: ConvertOptions,
    block_min_levels: Sequence[int] | None = None,
    permute: bool = True,
) -> tuple[LevelState, list[int]]:
    """Replace every InvertedResidual / video BasicBlock of ``model`` by its gated version, in place.

    Args:
        model: a torchvision network (detector or video ResNet), modified in place.
        options: levels, widths and depth gating.
        block_min_levels: per block (model order), the level from which it runs; ``None`` derives
            them from the blocks' importance (the converter's choice, stored in the model card).
        permute: order hidden channels by importance; ``False`` keeps them as they are (used when
            loading a converted model file, whose weights were permuted when it was made).

    Returns the shared :class:`LevelState` and the blocks' min levels.
    """
    options.check()
    blocks = _convertible_blocks(model)
    if not blocks:
        raise ValueError(f"{type(model).__name__} has no InvertedResidual / BasicBlock to convert")
    if block_min_levels is None:
        skippable = [i for i, (_, _, b) in enumerate(blocks) if _is_skippable(b)]
        levels = depth_min_levels([_block_importance(blocks[i][2]) for i in skippable], options)
        block_min_levels = [0] * len(blocks)
        for i, level in zip(skippable, levels):
            block_min_levels[i] = level
    block_min_levels = [int(v) for v in block_min_levels]
    if len(block_min_levels) != len(blocks):
        raise ValueError(f"block_min_levels has {len(block_min_levels)} entries for {len(blocks)} blocks")
    state = LevelState(options.num_levels)
    for (parent, name, block), min_level in zip(blocks, block_min_levels):
        if not 0 <= min_level < options.num_levels:
            raise ValueError(f"block min level {min_level} out of range [0, {options.num_levels - 1}]")
        cls = GatedInvertedResidual if isinstance(block, InvertedResidual) else GatedVideoBasicBlock
        gated = cls(block, options, state, min_level, permute=permute)
        gated.train(block.training)
        setattr(parent, name, gated)
    return state, block_min_levels


def _is_skippable(block: nn.Module) -> bool:
    if isinstance(block, InvertedResidual):
        return bool(block.use_res_connect)
    return block.downsample is None


def converted_blocks(model: nn.Module) -> list[ConvertedBlock]:
    """The converted blocks inside ``model``, in model order."""
    return [m for m in model.modules() if isinstance(m, ConvertedBlock)]


# --- further knobs: input resolution, clip length / frame stride ---------------------------------------


def pareto_front(costs: Sequence[float], qualities: Sequence[float]) -> list[int]:
    """Indices of the Pareto-optimal points (lower cost, higher quality), cheapest first.

    A point is dropped when another one is at most as costly and at least as good, and strictly
    better in one of the two. Of points equal in both, the first is kept. NaN quality counts as the
    worst possible (an unknown agreement never beats a measured one).
    """
    if len(costs) != len(qualities):
        raise ValueError(f"{len(costs)} costs for {len(qualities)} qualities")
    quality = [float("-inf") if q != q else float(q) for q in qualities]
    order = sorted(range(len(costs)), key=lambda i: (float(costs[i]), -quality[i], i))
    front: list[int] = []
    for i in order:
        # Sorted by cost (ties: best quality first), a point is optimal iff it beats every cheaper one.
        if not front or quality[i] > quality[front[-1]]:
            front.append(i)
    return front


def thin_front(costs: Sequence[float], limit: int) -> list[int]:
    """At most ``limit`` positions of a cost-sorted front, spread evenly in cost; both ends are kept."""
    count = len(costs)
    if limit < 2:
        raise ValueError(f"limit must be >= 2, got {limit}")
    if count <= limit:
        return list(range(count))
    low, high = float(costs[0]), float(costs[-1])
    chosen = {0, count - 1}
    for k in range(1, limit - 1):
        target = low + (high - low) * k / (limit - 1)
        free = [i for i in range(count) if i not in chosen]
        chosen.add(min(free, key=lambda i: (abs(float(costs[i]) - target), i)))
    return sorted(chosen)


def newest_frame_indices(available: int, clip_length: int, frame_stride: int) -> list[int]:
    """Indices of the ``clip_length`` newest frames, ``frame_stride`` apart, of ``available`` ones.

    Oldest first, ending on the newest frame (index ``available - 1``), so a short clip reacts to
    what just happened. ValueError when the span does not fit.
    """
    if clip_length < 1 or frame_stride < 1:
        raise ValueError(f"clip length and frame stride must be >= 1, got {clip_length}, {frame_stride}")
    span = (clip_length - 1) * frame_stride + 1
    if span > available:
        raise ValueError(
            f"{clip_length} frames {frame_stride} apart span {span} frames, the clip has {available}"
        )
    return list(range(available - span, available, frame_stride))
