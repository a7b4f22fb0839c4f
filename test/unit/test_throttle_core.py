"""Throttling core: schedule, sliced == zero-masked reference, caches, MAC counting."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tnn_ros.throttle import (
    GatedBasicBlock,
    GatedConv2d,
    GatedConv3d,
    GatedLinear,
    LevelSchedule,
    ThrottleableModule,
    count_level_costs,
    count_macs,
    gated_ops,
    level_widths,
)

LEVELS = 4


class TinyNet(ThrottleableModule):
    """conv+BN+relu -> depth-gated basic block -> depthwise conv -> conv (fixed out) -> pool -> 2 linears."""

    def __init__(self):
        super().__init__(num_levels=LEVELS)
        w32 = level_widths(32, LEVELS, 0.25)
        w16 = level_widths(16, LEVELS, 0.5)
        self.stem = GatedConv2d(3, 32, 3, stride=2, padding=1, out_widths=w32, norm=True, activation="relu")
        self.block = GatedBasicBlock(w32, min_level=2)
        self.dw = GatedConv2d(
            32, 32, 3, padding=1, groups=32, in_widths=w32, out_widths=w32, norm=True, activation="relu"
        )
        self.conv = GatedConv2d(32, 16, 1, in_widths=w32, out_widths=w16, norm=True, activation="relu")
        self.fc1 = GatedLinear(
            16, 24, in_widths=w16, out_widths=level_widths(24, LEVELS, 0.34), activation="relu"
        )
        self.fc2 = GatedLinear(24, 5, in_widths=level_widths(24, LEVELS, 0.34))

    def example_input(self, batch_size=1):
        return torch.zeros(batch_size, 3, 16, 16)

    def forward(self, x):
        k = self.level
        x = self.dw(self.block(self.stem(x, k), k), k)
        x = self.conv(x, k).mean(dim=(2, 3))
        return self.fc2(self.fc1(x, k), k)


def _randomize_bn(model):
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.3)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=gen) * 0.2)


def _masked(op, x, level, conv=True):
    """Reference: the FULL-width op, then zero every channel the level does not keep."""
    if conv:
        y = op._conv_fn(x, op.weight, op.bias, op.stride, op.padding, op.dilation, op.groups)
    else:
        y = F.linear(x, op.weight, op.bias)
    if op.norms is not None:
        bn, width, full = op.norms[level], op.out_widths[level], op.out_channels
        pad = full - width
        mean = F.pad(bn.running_mean, (0, pad))
        var = F.pad(bn.running_var, (0, pad), value=1.0)
        gamma, beta = F.pad(bn.weight, (0, pad)), F.pad(bn.bias, (0, pad))
        y = F.batch_norm(y, mean, var, gamma, beta, False, 0.0, bn.eps)
    mask = torch.zeros(y.shape[1])
    mask[: op.out_widths[level]] = 1
    y = y * mask.reshape(1, -1, *([1] * (y.dim() - 2)))
    return F.relu(y) if op.activation == "relu" else y


def _reference_forward(net, x, level):
    x = _masked(net.stem, x, level)
    if level >= net.block.min_level:  # a skipped block == its residual branch gated to zero
        r = _masked(net.block.conv2, _masked(net.block.conv1, x, level), level)
        x = F.relu(x + r)
    x = _masked(net.dw, x, level)
    x = _masked(net.conv, x, level).mean(dim=(2, 3))
    x = _masked(net.fc1, x, level, conv=False)
    return _masked(net.fc2, x, level, conv=False)


def _eval_net():
    torch.manual_seed(0)
    net = TinyNet()
    _randomize_bn(net)
    return net.eval()


def test_schedule_rule_and_inverse():
    s = LevelSchedule(8)
    assert s.level_for(0.0) == 0 and s.level_for(1.0) == 7 and s.level_for(-3) == 0 and s.level_for(9) == 7
    assert s.utilization_of(7) == 1.0 and 0 < s.utilization_of(0) < 1
    for k in range(8):
        assert s.level_for(s.utilization_of(k)) == k
    levels = [s.level_for(u / 1000) for u in range(1001)]
    assert levels == sorted(levels) and set(levels) == set(range(8))
    assert LevelSchedule(10).level_for(0.3) == 2  # 0.3 * 10 is 2.9999999999999996 in floats
    assert LevelSchedule(8, min_level=3).level_for(0.0) == 3
    with pytest.raises(ValueError):
        s.level_for(math.nan)
    with pytest.raises(ValueError):
        s.utilization_of(8)
    with pytest.raises(ValueError):
        LevelSchedule(4, min_level=4)


def test_level_widths_are_nested_multiples_of_8():
    widths = level_widths(128, 8, 0.5)
    assert widths[-1] == 128 and widths[0] == 64
    assert all(w % 8 == 0 for w in widths) and widths == sorted(widths)
    with pytest.raises(ValueError):
        level_widths(30, 8)


@pytest.mark.parametrize("level", range(LEVELS))
def test_sliced_forward_equals_zero_masked_reference(level):
    net = _eval_net()
    x = torch.randn(2, 3, 16, 16)
    net.set_level(level)
    with torch.no_grad():
        got = net(x)
        want = _reference_forward(net, x, level)
    assert got.shape == (2, 5)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_train_mode_slices_the_same_weights_as_eval():
    net = _eval_net()
    x = torch.randn(2, 3, 16, 16)
    net.set_level(1)
    with torch.no_grad():
        cached = net(x)
        # Train-mode path (sliced views, separate BN) with BN put in eval: must agree with the folded caches.
        net.train()
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        sliced = net(x)
    torch.testing.assert_close(sliced, cached, rtol=1e-4, atol=1e-5)


def test_gated_conv3d_matches_masked_reference():
    torch.manual_seed(0)
    widths = level_widths(16, 3, 0.5)
    conv_a = GatedConv3d(3, 16, 3, padding=1, out_widths=widths, norm=True, activation="relu")
    conv_b = GatedConv3d(16, 8, (1, 3, 3), padding=(0, 1, 1), in_widths=widths)
    for m in (conv_a, conv_b):
        _randomize_bn(m)
        m.eval()
    x = torch.randn(1, 3, 4, 8, 8)
    for level in range(3):
        with torch.no_grad():
            got = conv_b(conv_a(x, level), level)
            want = _masked(conv_b, _masked(conv_a, x, level), level)
        assert got.shape == (1, 8, 4, 8, 8)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_macs_strictly_decrease_and_match_hand_count():
    net = _eval_net()
    macs = count_macs(net, net.example_input())
    assert all(lo < hi for lo, hi in zip(macs, macs[1:])), macs
    conv = GatedConv2d(16, 24, 3, padding=1, in_widths=[8, 16], out_widths=[8, 24])
    holder = ThrottleableModule(num_levels=2)
    holder.conv = conv
    holder.forward = lambda x: conv(x[:, : conv.in_widths[holder.level]], holder.level)
    costs = count_level_costs(holder, torch.zeros(1, 16, 10, 10))
    assert costs[0].macs == 10 * 10 * 8 * 8 * 9 and costs[1].macs == 10 * 10 * 16 * 24 * 9
    assert costs[0].params == 8 * 8 * 9 + 8


def test_switching_is_o1_and_rebuilds_nothing():
    net = _eval_net()
    net.warmup()
    ops = gated_ops(net)
    builds = [op.cache_builds for op in ops]
    caches = [op._cache for op in ops]
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        for u in (0.1, 1.0, 0.5, 0.0, 0.76):
            level = net.set_utilization(u)
            assert net.level == level == net.schedule.level_for(u)
            net(x)
    assert [op.cache_builds for op in ops] == builds
    assert all(op._cache is cache for op, cache in zip(ops, caches))
    with pytest.raises(ValueError):
        net.set_level(LEVELS)
    with pytest.raises(ValueError):
        net.set_level(-1)
    with pytest.raises(ValueError):
        net.set_level(1.5)


def test_caches_follow_load_state_dict_and_training():
    net, other = _eval_net(), TinyNet().eval()
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        before = other(x)
        other.load_state_dict(net.state_dict())
        after = other(x)
        torch.testing.assert_close(after, net(x))
    assert not torch.allclose(before, after)
    net.train()
    assert all(op._cache is None for op in gated_ops(net))
    net.eval()
    assert all(op._cache is not None for op in gated_ops(net))


def test_rebuild_caches_picks_up_weights_edited_in_place():
    net = _eval_net()
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        stale = net(x)
        for op in gated_ops(net):
            op.weight.mul_(0.5)  # in place: eval caches still hold the old weights
        assert torch.equal(net(x), stale)
        net.rebuild_caches()
        for level in range(LEVELS):
            net.set_level(level)
            torch.testing.assert_close(net(x), _reference_forward(net, x, level))
        net.set_level(LEVELS - 1)
        assert not torch.allclose(net(x), stale)


def test_own_top_level_weights_freeze_the_top_level_only():
    """After keep_top_level_weights the top level reads its frozen copy (eval and train mode, and
    after a state-dict round trip) while the lower levels read the edited parameters."""
    net = _eval_net()
    x = torch.randn(1, 3, 16, 16)
    top = LEVELS - 1
    with torch.no_grad():
        original = []
        for level in range(LEVELS):
            net.set_level(level)
            original.append(net(x))
        for op in gated_ops(net):
            op.keep_top_level_weights()
            op.weight.mul_(0.5)
        net.rebuild_caches()
        net.set_level(top)
        assert torch.equal(net(x), original[top])
        net.set_level(0)
        assert not torch.allclose(net(x), original[0])
        op = gated_ops(net)[0]
        net.train()
        weight, _ = op._weights_for(top)
        assert torch.equal(weight, op.top_weight) and not weight.requires_grad
        assert op._weights_for(0)[0].requires_grad  # lower levels still train the parameters
        net.eval()
        copy = TinyNet()
        for other in gated_ops(copy):
            other.keep_top_level_weights()
        copy.load_state_dict(net.state_dict())
        copy.eval()
        for level in (0, top):
            net.set_level(level)
            copy.set_level(level)
            torch.testing.assert_close(copy(x), net(x))


def test_wrong_input_width_raises_clear_error():
    conv = GatedConv2d(16, 8, 1, in_widths=[8, 16], out_widths=[8, 8])
    with pytest.raises(ValueError, match="expects 8 input channels"):
        conv(torch.zeros(1, 16, 4, 4), 0)
    with pytest.raises(ValueError, match="non-decreasing"):
        GatedConv2d(16, 8, 1, in_widths=[16, 8])


@pytest.mark.parametrize("dims", [2, 3])
def test_pointwise_channels_last_path_matches_conv(dims):
    torch.manual_seed(0)
    cls = GatedConv2d if dims == 2 else GatedConv3d
    conv = cls(32, 16, 1, in_widths=[16, 32], out_widths=[8, 16], norm=True, activation="relu")
    _randomize_bn(conv)
    conv.eval()
    shape = (2, 16, 5, 6) if dims == 2 else (2, 16, 3, 5, 6)
    layout = torch.channels_last if dims == 2 else torch.channels_last_3d
    x = torch.randn(shape)
    with torch.no_grad():
        want = _masked(conv, F.pad(x, [0] * 2 * dims + [0, 16]), 0)[:, :8]
        got = conv(x.contiguous(memory_format=layout), 0)
    assert conv.pointwise and got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("num_levels", [8, 10])
def test_level_for_survives_a_float32_round_trip(num_levels):
    """Setpoints travel as std_msgs/Float32: each level's own utilization must map back to it."""
    import numpy as np

    schedule = LevelSchedule(num_levels=num_levels)
    for level in range(num_levels):
        as_float32 = float(np.float32(schedule.utilization_of(level)))
        assert schedule.level_for(as_float32) == level
