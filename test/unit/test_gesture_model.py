"""Gated C3D gesture net: slicing == masking, MACs, tensor/numpy API, model files, recognizer."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tnn_ros.models.gesture import (
    DEFAULT_ARCHITECTURE,
    ThrottleableGestureNet,
    conv1_channel_order,
    conv1_widths,
    conv3d_by_conv2d,
    fit_frame,
    max_pool_clip,
    permute_conv1_channels,
)
from tnn_ros.models.gesture_recognizer import GestureRecognizer, GestureResult
from tnn_ros.models.io import ModelFileError, save_model
from tnn_ros.models.loading import load_gesture
from tnn_ros.throttle import count_level_costs, count_macs

TINY = {
    "clip_length": 4,
    "frame_size": [12, 10],
    "num_levels": 4,
    "conv1": 8,
    "stages": [[16], [24]],
    "fc": [16],
    "min_fraction": 0.5,
}
CLASSES = ["no_gesture", "swipe_left", "push"]


def _tiny_net(seed=0, **overrides) -> ThrottleableGestureNet:
    torch.manual_seed(seed)
    net = ThrottleableGestureNet(CLASSES, {**TINY, **overrides})
    # Non-trivial BatchNorm statistics for every level, set in train mode so eval() folds them.
    for module in net.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return net.eval()


def test_conv3d_by_conv2d_matches_conv3d():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 6, 7, 9, dtype=torch.float64)
    weight = torch.randn(11, 5, 3, 3, 3, dtype=torch.float64)
    bias = torch.randn(11, dtype=torch.float64)
    expected = F.conv3d(x, weight, bias, padding=1)
    assert torch.allclose(conv3d_by_conv2d(x, weight, bias), expected, atol=1e-10)
    strided = F.conv3d(x, weight, bias, stride=(1, 2, 2), padding=1)  # odd 7 x 9: ceil
    assert torch.allclose(conv3d_by_conv2d(x, weight, bias, stride=(1, 2, 2)), strided, atol=1e-10)
    with pytest.raises(ValueError, match="strides"):
        conv3d_by_conv2d(x, weight, bias, stride=(2, 2, 2))


@pytest.mark.parametrize("shape", [(2, 5, 4, 7, 9), (1, 3, 2, 6, 6), (1, 4, 16, 3, 3)])
def test_max_pool_clip_matches_max_pool3d_in_ceil_mode(shape):
    x = torch.randn(*shape)
    assert torch.equal(max_pool_clip(x, 2), F.max_pool3d(x, 2, ceil_mode=True))
    assert torch.equal(max_pool_clip(x, 1), F.max_pool3d(x, (1, 2, 2), ceil_mode=True))


def _bn(x, norm):
    shape = (1, -1, 1, 1, 1) if x.dim() == 5 else (1, -1)
    return (x - norm.running_mean.view(shape)) / torch.sqrt(
        norm.running_var.view(shape) + norm.eps
    ) * norm.weight.view(shape) + norm.bias.view(shape)


def _masked_reference(net: ThrottleableGestureNet, clips: torch.Tensor, level: int) -> torch.Tensor:
    """Full-width forward with native conv3d where everything a level drops is multiplied by zero."""

    def gated_conv(conv, x, stride=1):
        c_in, c_out = conv.in_widths[level], conv.out_widths[level]
        mask = torch.zeros_like(conv.weight)
        mask[:c_out, :c_in] = 1
        out = F.conv3d(x, conv.weight * mask, None, stride=(1, stride, stride), padding=1)
        kept = F.relu(_bn(out[:, :c_out], conv.norms[level]))
        return torch.cat([kept, torch.zeros_like(out[:, c_out:])], dim=1)

    if level < net.architecture.get("conv1_stride_levels", 0):
        x = gated_conv(net.conv1, clips, stride=2)  # in place of conv1 + pool1
    else:
        x = F.max_pool3d(gated_conv(net.conv1, clips), (1, 2, 2), ceil_mode=True)
    for conv, pool in zip(net.convs, net._pool_after):
        x = gated_conv(conv, x)
        if pool:
            x = F.max_pool3d(x, 2, ceil_mode=True)
    x = x.flatten(1)
    for fc in [*net.fcs, net.classifier]:
        c_in, c_out = fc.in_widths[level], fc.out_widths[level]
        mask = torch.zeros_like(fc.weight)
        mask[:c_out, :c_in] = 1
        bias_mask = torch.zeros_like(fc.bias)
        bias_mask[:c_out] = 1
        x = F.linear(x, fc.weight * mask, fc.bias * bias_mask)
        if fc is not net.classifier:
            x = F.relu(x)
    return x


@torch.no_grad()
@pytest.mark.parametrize("conv1_min_width, conv1_stride_levels", [(None, 0), (2, 0), (None, 2)])
def test_sliced_forward_equals_zero_masked_reference_at_every_level(conv1_min_width, conv1_stride_levels):
    net = _tiny_net(conv1_min_width=conv1_min_width, conv1_stride_levels=conv1_stride_levels)
    clips = torch.randn(3, 3, 4, 10, 12)
    outputs = []
    for level in range(net.num_levels):
        net.set_level(level)
        got = net(clips)
        assert got.shape == (3, len(CLASSES))
        assert torch.allclose(got, _masked_reference(net, clips, level), atol=1e-4), level
        outputs.append(got)
    # The levels really differ (otherwise the comparison above would prove little).
    assert not torch.allclose(outputs[0], outputs[-1], atol=1e-3)


def test_lower_levels_really_run_narrower_layers():
    net = _tiny_net()
    seen = []
    hook = net.convs[0].register_forward_hook(lambda m, i, o: seen.append((i[0].shape[1], o.shape[1])))
    with torch.no_grad():
        for level in (0, net.num_levels - 1):
            net.set_level(level)
            net(net.example_input())
    hook.remove()
    assert seen[0][1] < seen[1][1] == 16  # level 0 computes fewer output channels


def test_macs_strictly_decrease_with_the_level_and_lowest_is_about_a_quarter():
    net = ThrottleableGestureNet(architecture=DEFAULT_ARCHITECTURE).eval()
    macs = count_macs(net, net.example_input())
    assert len(macs) == DEFAULT_ARCHITECTURE["num_levels"]
    assert all(a < b for a, b in zip(macs, macs[1:]))
    assert 0.15 <= macs[0] / macs[-1] <= 0.3


# --- gated conv1 ------------------------------------------------------------------------------------


@torch.no_grad()
def test_strided_conv1_levels_skip_three_quarters_of_conv1_and_change_nothing_above():
    from tnn_ros.models.gesture_streaming import streaming_macs

    arch = {**DEFAULT_ARCHITECTURE, "temporal": "valid"}
    torch.manual_seed(0)
    plain = ThrottleableGestureNet(architecture=arch).eval()
    strided = ThrottleableGestureNet(architecture={**arch, "conv1_stride_levels": 3})
    strided.load_state_dict(plain.state_dict())  # same parameters: only the conv1 path differs
    strided.eval()
    width, height = arch["frame_size"]
    conv1_macs = 14 * height * width * 8 * 3 * 27  # 14 valid positions of 16 frames, 8 x (3 x 3x3x3)
    clip = plain.example_input() + torch.randn(plain.example_input().shape)
    for level, (a, b) in enumerate(zip(count_macs(plain, clip), count_macs(strided, clip))):
        plain.set_level(level)
        strided.set_level(level)
        if level < 3:
            assert a - b == conv1_macs * 3 // 4
            assert streaming_macs(plain, level) - streaming_macs(strided, level) == conv1_macs // 14 * 3 // 4
            assert not torch.allclose(plain(clip), strided(clip), atol=1e-3)
        else:
            assert a == b and streaming_macs(plain, level) == streaming_macs(strided, level)
            assert torch.equal(plain(clip), strided(clip))


def test_gated_conv1_widths_and_macs_fall_by_level():
    arch = {**DEFAULT_ARCHITECTURE, "temporal": "valid"}
    assert conv1_widths(arch) == [8] * 8  # ungated: the default, and what cards without the key mean
    gated_arch = {**arch, "conv1_min_width": 3}
    widths = conv1_widths(gated_arch)
    assert widths == [3, 4, 4, 5, 6, 7, 7, 8]  # 3 + 5 * k / 7 channels, rounded, top = full
    ungated = ThrottleableGestureNet(architecture=arch).eval()
    gated = ThrottleableGestureNet(architecture=gated_arch).eval()
    assert gated.conv1.out_widths == gated.convs[0].in_widths == widths
    full = count_level_costs(ungated, ungated.example_input())
    cut = count_level_costs(gated, gated.example_input())
    # Hand count of what a level saves with conv1 at w channels instead of 8 (valid: conv1 gives 14
    # frames of 48x48 from 3x3x3 RGB taps; convs.0 gives 12 frames of 24x24 from 3x3x3 taps per input).
    for level, width in enumerate(widths):
        dropped = 8 - width
        convs0_out = gated.convs[0].out_widths[level]
        saved = dropped * (3 * 27 * 14 * 48 * 48 + convs0_out * 27 * 12 * 24 * 24)
        assert full[level].macs - cut[level].macs == saved
    assert cut[-1].macs == full[-1].macs
    assert cut[0].macs / cut[-1].macs < 0.17 < full[0].macs / full[-1].macs


@torch.no_grad()
def test_permuting_conv1_channels_keeps_every_output():
    net = _tiny_net()
    clips = torch.randn(2, 3, 4, 10, 12)
    before = []
    for level in range(net.num_levels):
        net.set_level(level)
        before.append(net(clips))
    order = torch.tensor([5, 2, 7, 0, 1, 6, 3, 4])
    permute_conv1_channels(net, order)
    for level in range(net.num_levels):
        net.set_level(level)
        torch.testing.assert_close(net(clips), before[level], atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="permutation"):
        permute_conv1_channels(net, torch.tensor([0, 0, 1, 2, 3, 4, 5, 6]))
    with pytest.raises(ValueError, match="ungated"):
        permute_conv1_channels(_tiny_net(conv1_min_width=2), order)


@torch.no_grad()
def test_conv1_channel_order_puts_the_strongest_channels_first():
    net = _tiny_net()
    net.conv1.norms[-1].weight.fill_(1.0)
    net.convs[0].weight.fill_(0.1)
    net.convs[0].weight[:, 6] = 1.0  # read 10x as strongly
    net.conv1.norms[-1].weight[3] = -4.0  # |scale| counts: 4 x 0.1 = 0.4 > 0.1
    order = conv1_channel_order(net).tolist()
    assert order[:2] == [6, 3] and sorted(order[2:]) == [0, 1, 2, 4, 5, 7]
    assert order[2:] == [0, 1, 2, 4, 5, 7]  # ties keep their order


def test_bad_architecture_and_inputs_raise():
    for bad in (0, 9, True, 2.5):
        with pytest.raises(ValueError, match="conv1_min_width"):
            ThrottleableGestureNet(CLASSES, {**TINY, "conv1_min_width": bad})
    for bad in (-1, 5, True, 1.0):  # TINY has 4 levels
        with pytest.raises(ValueError, match="conv1_stride_levels"):
            ThrottleableGestureNet(CLASSES, {**TINY, "conv1_stride_levels": bad})
    with pytest.raises(ValueError, match="multiples of 8"):
        ThrottleableGestureNet(CLASSES, {**TINY, "conv1": 6})
    for bad in (0, True, 16.0):
        with pytest.raises(ValueError, match="channel_multiple must be a positive int"):
            ThrottleableGestureNet(CLASSES, {**TINY, "channel_multiple": bad})
    with pytest.raises(ValueError, match="must divide every gated width"):
        ThrottleableGestureNet(CLASSES, {**TINY, "stages": [[24], [16]], "channel_multiple": 16})
    with pytest.raises(ValueError, match="divisible"):
        ThrottleableGestureNet(CLASSES, {**TINY, "clip_length": 6})
    with pytest.raises(ValueError, match="unknown"):
        ThrottleableGestureNet(CLASSES, {**TINY, "depth": 3})
    with pytest.raises(ValueError, match="no_gesture"):
        ThrottleableGestureNet(["a", "b"], TINY)
    net = _tiny_net()
    with pytest.raises(ValueError, match="expected clips"):
        net(torch.zeros(1, 3, 4, 12, 10))  # width and height swapped
    with pytest.raises(ValueError):
        net.set_level(4)


def test_predict_clip_takes_frames_of_any_size():
    net = _tiny_net()
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (30, 41, 3), dtype=np.uint8) for _ in range(4)]
    probabilities = net.predict_clip(frames)
    assert probabilities.shape == (3,) and probabilities.sum() == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="expected 4 frames"):
        net.predict_clip(frames[:3])
    with pytest.raises(ValueError, match="uint8"):
        net.predict_clip(frames[:3] + [np.zeros((30, 41, 3), np.float32)])


def test_fit_frame_centre_crops_to_the_aspect_ratio_then_resizes():
    frame = np.zeros((30, 40, 3), np.uint8)
    frame[:, :5] = 255  # left strip: outside the centred 30x30 window
    frame[10:20, 15:25, 1] = 255  # centred square stays a square
    out = fit_frame(frame, (12, 12))
    assert out.shape == (12, 12, 3)
    assert out[..., 0].max() == 0
    rows, cols = np.nonzero(out[..., 1] > 127)
    assert rows.max() - rows.min() == cols.max() - cols.min()
    assert fit_frame(frame, (40, 30)) is not frame and np.array_equal(fit_frame(frame, (40, 30)), frame)


def test_save_and_load_round_trip(tmp_path):
    net = _tiny_net()
    path = tmp_path / "gesture.pt"
    save_model(net, path, {"name": "gesture", "architecture": net.architecture, "classes": net.classes})
    loaded = load_gesture(str(path))
    clips = torch.randn(1, 3, 4, 10, 12)
    for level in range(net.num_levels):
        net.set_level(level)
        loaded.set_level(level)
        assert torch.allclose(net(clips), loaded(clips), atol=1e-6)
    assert loaded.card["name"] == "gesture" and not loaded.training
    # A card whose architecture does not match the weights is refused, naming the file.
    # An architecture written before conv1 could be gated (no conv1_min_width key) loads ungated.
    assert "conv1_min_width" not in TINY and net.conv1.out_widths == [8] * net.num_levels
    gated = _tiny_net(conv1_min_width=3)
    save_model(gated, path, {"name": "gesture", "architecture": gated.architecture, "classes": CLASSES})
    loaded = load_gesture(str(path))
    assert loaded.conv1.out_widths == gated.conv1.out_widths == conv1_widths(gated.architecture)
    loaded.set_level(0)
    gated.set_level(0)
    assert torch.allclose(gated(clips), loaded(clips), atol=1e-6)
    wrong = {"name": "gesture", "architecture": {**TINY, "conv1": 16}, "classes": CLASSES}
    save_model(_tiny_net(), path, wrong)
    with pytest.raises(ModelFileError, match="gesture.pt"):
        load_gesture(str(path))


# --- recognizer -----------------------------------------------------------------------------------------


class ScriptedNet:
    """Stands in for the net: returns queued probabilities and records what it was asked."""

    clip_length = 4
    frame_size = (8, 6)
    classes = ["no_gesture", "swipe_left", "push"]

    def __init__(self, outputs):
        self.outputs = list(outputs)
        self.clips = []

    def predict_clip(self, frames):
        self.clips.append([int(f[0, 0, 0]) for f in frames])
        return np.asarray(self.outputs.pop(0), dtype=np.float32)


def _frame(value, size=(20, 16)):
    return np.full((size[1], size[0], 3), value, np.uint8)


def test_recognizer_waits_for_a_full_buffer_then_runs_every_stride_frames():
    net = ScriptedNet([[0.1, 0.8, 0.1]] * 10)
    recognizer = GestureRecognizer(net, stride=2, smoothing=1, min_confidence=0.5)
    results = [recognizer.push(_frame(i)) for i in range(9)]
    ran = [i for i, r in enumerate(results) if r is not None]
    assert ran == [3, 5, 7]  # buffer full at frame 3, then every 2nd frame
    assert net.clips == [[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7]]  # sliding window of the newest 4
    assert results[3] == GestureResult("swipe_left", 1, pytest.approx(0.8), results[3].probabilities)


def test_recognizer_smooths_over_the_last_windows_and_falls_back_to_no_gesture():
    net = ScriptedNet([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.2, 0.4, 0.4]])
    recognizer = GestureRecognizer(net, stride=1, smoothing=2, min_confidence=0.6)
    out = [recognizer.push(_frame(i)) for i in range(7)]
    assert out[:4] == [None] * 4  # first run at frame 3, but smoothing needs 2 runs
    assert out[4].label == "no_gesture"  # mean of (swipe 1.0) and (push 1.0) = 0.5 each < 0.6
    assert out[4].probabilities == pytest.approx({"no_gesture": 0.0, "swipe_left": 0.5, "push": 0.5})
    assert out[5].label == "push" and out[5].confidence == pytest.approx(1.0)
    assert out[6].label == "push" and out[6].confidence == pytest.approx(0.7)


def test_recognizer_reset_and_bad_frames():
    net = ScriptedNet([[0.1, 0.1, 0.8]] * 4)
    recognizer = GestureRecognizer(net, stride=4, smoothing=1)
    for i in range(3):
        recognizer.push(_frame(i))
    with pytest.raises(ValueError):
        recognizer.push(np.zeros((16, 20), np.uint8))  # not HxWx3: refused, buffer unchanged
    assert recognizer.push(_frame(3)) is not None  # 4th good frame fills the buffer
    recognizer.reset()
    assert [recognizer.push(_frame(i)) for i in range(3)] == [None] * 3
    assert recognizer.push(_frame(9)).label == "push"
    with pytest.raises(ValueError):
        GestureRecognizer(net, stride=0)
    with pytest.raises(ValueError):
        GestureRecognizer(net, min_confidence=1.5)


def test_recognizer_on_a_real_net_gives_consistent_results():
    net = _tiny_net()
    recognizer = GestureRecognizer(net, stride=1, smoothing=1, min_confidence=0.0)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (24, 30, 3), dtype=np.uint8) for _ in range(4)]
    result = [recognizer.push(f) for f in frames][-1]
    expected = net.predict_clip(frames)
    assert result.class_id == int(np.argmax(expected))
    assert result.probabilities[result.label] == pytest.approx(float(expected.max()), abs=1e-6)


# Eight levels of the shipped min_fraction over 64- and 128-wide layers (the shipped net's widths).
EIGHT_LEVELS = {**TINY, "stages": [[64], [128]], "fc": [64], "min_fraction": 0.375, "num_levels": 8}


def test_channel_multiple_sets_the_gated_widths_and_leaves_conv1_and_the_full_level():
    """16 (onnxruntime's channel group on AVX-512): every gated width is a multiple of 16; the default
    (8) keeps the widths old cards were trained with."""
    default, blocked = (
        ThrottleableGestureNet(CLASSES, EIGHT_LEVELS),
        ThrottleableGestureNet(CLASSES, {**EIGHT_LEVELS, "channel_multiple": 16}),
    )
    assert default.convs[0].out_widths == [24, 32, 32, 40, 48, 56, 56, 64]
    assert blocked.convs[0].out_widths == [32, 32, 32, 48, 48, 48, 64, 64]
    assert all(w % 16 == 0 for conv in blocked.convs for w in conv.out_widths)
    assert blocked.conv1.out_widths == default.conv1.out_widths  # conv1 is not a gated width
    shapes = [
        {k: v.shape for k, v in net.state_dict().items() if ".norms." not in k} for net in (default, blocked)
    ]
    assert shapes[0] == shapes[1]  # same weights (allocated at full width): only the levels' BN differ


def test_lowest_fraction_narrows_level_0_alone():
    """A cheaper lowest level: level 0 at the smaller fraction (a multiple of channel_multiple), every
    other level at the widths it had; checked against min_fraction and refused when not a number."""
    default = ThrottleableGestureNet(CLASSES, EIGHT_LEVELS)
    cheap = ThrottleableGestureNet(CLASSES, {**EIGHT_LEVELS, "lowest_fraction": 0.25})
    assert default.convs[0].out_widths == [24, 32, 32, 40, 48, 56, 56, 64]
    assert cheap.convs[0].out_widths == [16, 32, 32, 40, 48, 56, 56, 64]
    assert cheap.convs[1].out_widths[0] == 32 and default.convs[1].out_widths[0] == 48
    assert cheap.conv1.out_widths == default.conv1.out_widths
    macs = [count_macs(net, net.example_input()) for net in (default, cheap)]
    assert macs[1][0] < 0.75 * macs[0][0] and macs[1][1:] == macs[0][1:]
    for bad in (0.5, 0.0, -0.1, True, "0.25"):
        with pytest.raises(ValueError, match="lowest_fraction"):
            ThrottleableGestureNet(CLASSES, {**EIGHT_LEVELS, "lowest_fraction": bad})
