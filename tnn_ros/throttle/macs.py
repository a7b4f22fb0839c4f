"""Per-level MAC and parameter counts, measured from the shapes that actually execute."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .ops import GatedOp, _GatedConvNd

_COUNTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


@dataclass
class LevelCost:
    """What one level executes: multiply-accumulates and the weights it reads."""

    level: int
    macs: int
    params: int


def _op_cost(module: nn.Module, inputs: tuple, output: Tensor) -> tuple[int, int]:
    """MACs and parameters of one executed conv/linear call, from its input and output tensors."""
    x = inputs[0]
    # Every output position is real work: the example is one image/clip, so a leading dimension
    # above 1 is work the network does per item (e.g. Faster R-CNN's box head runs once per proposal).
    if isinstance(module, nn.Linear):
        c_in, c_out = x.shape[-1], output.shape[-1]
        positions = output.numel() // c_out
        weight_params = c_in * c_out
    else:
        c_in, c_out = x.shape[1], output.shape[1]
        groups = c_in if isinstance(module, _GatedConvNd) and module.depthwise else module.groups
        kernel = math.prod(module.kernel_size)
        positions = output.numel() // c_out
        weight_params = c_out * (c_in // groups) * kernel
    has_bias = module.bias is not None or (isinstance(module, GatedOp) and module.norms is not None)
    return positions * weight_params, weight_params + (c_out if has_bias else 0)


@torch.no_grad()
def count_level_costs(model: nn.Module, example_input: Tensor) -> list[LevelCost]:
    """Run ``example_input`` (batch of 1) at every level and sum the executed conv/linear costs.

    ``model`` must be a :class:`~tnn_ros.throttle.module.ThrottleableModule`. Forward hooks on every
    conv/linear layer read the real input/output shapes, so skipped blocks and sliced channels count
    exactly as they execute. The model's mode and level are restored afterwards.
    """
    if example_input.shape[0] != 1:
        raise ValueError(f"count MACs with a batch of 1, got batch {example_input.shape[0]}")
    totals = {"macs": 0, "params": 0}

    def hook(module, inputs, output):
        macs, params = _op_cost(module, inputs, output)
        totals["macs"] += macs
        totals["params"] += params

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, _COUNTED)]
    was_training, previous = model.training, model.level
    model.eval()  # train mode would update BN running stats
    try:
        costs = []
        for level in range(model.num_levels):
            model.set_level(level)
            totals["macs"] = totals["params"] = 0
            model(example_input)
            costs.append(LevelCost(level, totals["macs"], totals["params"]))
    finally:
        for handle in handles:
            handle.remove()
        model.set_level(previous)
        model.train(was_training)
    return costs


def count_macs(model: nn.Module, example_input: Tensor) -> list[int]:
    """MACs per level (lowest level first) for one example, counted from executed shapes."""
    return [cost.macs for cost in count_level_costs(model, example_input)]
