"""Runtime throttling core (pure torch): gated ops, level schedule, throttleable base, MAC counting."""

from .levels import CHANNEL_MULTIPLE, LevelSchedule, level_widths, round_channels
from .macs import LevelCost, count_level_costs, count_macs
from .module import ThrottleableModule
from .ops import (
    DepthGatedResidual,
    GatedBasicBlock,
    GatedConv2d,
    GatedConv3d,
    GatedLinear,
    GatedOp,
    GatedSequential,
    gated_ops,
)

__all__ = [
    "CHANNEL_MULTIPLE",
    "LevelSchedule",
    "level_widths",
    "round_channels",
    "LevelCost",
    "count_level_costs",
    "count_macs",
    "ThrottleableModule",
    "DepthGatedResidual",
    "GatedBasicBlock",
    "GatedConv2d",
    "GatedConv3d",
    "GatedLinear",
    "GatedOp",
    "GatedSequential",
    "gated_ops",
]
