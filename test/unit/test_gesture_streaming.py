"""Streaming (continual) gesture inference against the clip model as the reference."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from model_utils import randomize_batchnorm

from tnn_ros.models.gesture import (
    DEFAULT_ARCHITECTURE,
    ThrottleableGestureNet,
    conv3d_by_conv2d,
    temporal_plan,
)
from tnn_ros.models.gesture_streaming import StreamingGestureNet

SMALL = {
    "temporal": "valid",
    "frame_size": [24, 24],
    "num_levels": 3,
    "stages": [[16], [16, 16], [24], [24]],
    "fc": [32, 32],
}


def _net(arch: dict, seed: int = 0) -> ThrottleableGestureNet:
    torch.manual_seed(seed)
    return randomize_batchnorm(ThrottleableGestureNet(architecture=arch))


def _frames(count: int, size=(24, 24), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, size[1], size[0], 3), dtype=np.uint8)


def _clip_logits(net, frames: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        return net(net.preprocess(torch.from_numpy(frames)[None]))[0]


@pytest.mark.parametrize("padding", [0, 1])
@pytest.mark.parametrize("kernel", [1, 3])
def test_folded_conv_matches_conv3d(kernel, padding):
    if padding > kernel // 2:
        pytest.skip("padding larger than the kernel's half is not a layer we build")
    x = torch.randn(2, 5, 7, 9, 8)
    weight, bias = torch.randn(6, 5, kernel, 3, 3), torch.randn(6)
    expected = F.conv3d(x, weight, bias, padding=(padding, 1, 1))
    torch.testing.assert_close(
        conv3d_by_conv2d(x, weight, bias, padding=(padding, 1, 1)), expected, atol=1e-4, rtol=1e-4
    )


def test_valid_plan_of_the_default_clip():
    plan = temporal_plan({**DEFAULT_ARCHITECTURE, "temporal": "valid"})
    # 16 frames: conv1 14, conv2 12, pool 6, conv3a 4, conv3b 2, pool 1, then per-frame 3x3 convs.
    assert plan.kernels == (3, 3, 3, 3, 1, 1, 1) and set(plan.paddings) == {0}
    assert plan.pools == (2, 2, 1, 1) and plan.final_length == 1
    same = temporal_plan(DEFAULT_ARCHITECTURE)
    assert same.kernels == (3,) * 7 and same.paddings == (1,) * 7 and same.pools == (2,) * 4


@pytest.mark.parametrize(
    "clip_length, conv1_min_width, conv1_stride_levels",
    [(16, None, 0), (24, None, 0), (16, 2, 0), (16, None, 2)],
)
def test_every_frame_equals_the_clip_model_at_every_level(clip_length, conv1_min_width, conv1_stride_levels):
    net = _net(
        {
            **SMALL,
            "clip_length": clip_length,
            "conv1_min_width": conv1_min_width,
            "conv1_stride_levels": conv1_stride_levels,
        }
    )
    stream = StreamingGestureNet(net)
    frames = _frames(clip_length + 12)
    for level in range(net.num_levels):
        net.set_level(level)
        stream.reset()
        for i, frame in enumerate(frames):
            out = stream.push(frame)
            if i < clip_length - 1:
                assert out is None
                continue
            expected = _clip_logits(net, frames[i - clip_length + 1 : i + 1])
            torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)


def test_level_changes_replay_the_clip_at_the_new_level():
    net = _net({**SMALL, "clip_length": 16})
    stream = StreamingGestureNet(net)
    frames = _frames(40, seed=1)
    levels = [2, 2, 0, 1, 1, 1, 2, 0]
    for i, frame in enumerate(frames):
        net.set_level(levels[i % len(levels)])
        out = stream.push(frame)
        if i >= 15:
            torch.testing.assert_close(out, _clip_logits(net, frames[i - 15 : i + 1]), atol=1e-4, rtol=1e-4)
    assert stream.replays > 0


def test_full_size_default_architecture_matches_too():
    net = _net({"temporal": "valid"})
    stream = StreamingGestureNet(net)
    frames = _frames(18, size=(48, 48), seed=2)
    outputs = [stream.push(f) for f in frames]
    for i in (15, 17):
        torch.testing.assert_close(
            outputs[i], _clip_logits(net, frames[i - 15 : i + 1]), atol=1e-4, rtol=1e-4
        )


def test_padded_nets_and_bad_frames_are_refused():
    with pytest.raises(ValueError, match="temporal='valid'"):
        StreamingGestureNet(ThrottleableGestureNet().eval())
    net = _net({**SMALL, "clip_length": 16})
    stream = StreamingGestureNet(net)
    with pytest.raises(ValueError):
        stream.push(np.zeros((24, 24), np.uint8))
    with pytest.raises(ValueError):
        stream.push_tensor(torch.zeros(1, 3, 10, 10))
    net.train()
    with pytest.raises(RuntimeError):
        stream.push(_frames(1)[0])


# --- the recognizer on the stream ---------------------------------------------------------------------


def _recognizer_results(net, frames, levels, streaming, stride=3):
    from tnn_ros.models.gesture_recognizer import GestureRecognizer

    recognizer = GestureRecognizer(net, stride=stride, smoothing=1, streaming=streaming)
    results = []
    for frame, level in zip(frames, levels):
        net.set_level(level)
        result = recognizer.push(frame)
        results.append(None if result is None else result.probabilities)
    return recognizer, results


def test_streaming_recognizer_reports_the_clip_results_at_every_stride():
    # Reference: the same recognizer running whole clips through the clip model (the C3D forward).
    net = _net({**DEFAULT_ARCHITECTURE, **SMALL, "clip_length": 8})
    frames = _frames(40, seed=3)
    levels = [2] * 15 + [0] * 10 + [1] * 15  # level changes mid-stream replay the stream's caches
    streamed, stream_results = _recognizer_results(net, frames, levels, streaming=True)
    clipped, clip_results = _recognizer_results(net, frames, levels, streaming=False)
    assert streamed.streaming and not clipped.streaming
    assert [r is None for r in stream_results] == [r is None for r in clip_results]
    compared = 0
    for got, want in zip(stream_results, clip_results):
        if want is not None:
            np.testing.assert_allclose(list(got.values()), list(want.values()), atol=1e-4)
            compared += 1
    assert compared == (40 - 8) // 3 + 1 and streamed.runs == clipped.runs == compared


def test_streaming_recognizer_follows_an_engine_facades_level():
    from tnn_ros.engines import create_engine
    from tnn_ros.models.gesture_recognizer import GestureRecognizer

    net = _net({**DEFAULT_ARCHITECTURE, **SMALL, "clip_length": 8})
    facade = create_engine(net, "torch")
    recognizer = GestureRecognizer(facade, stride=1, smoothing=1)
    assert recognizer.streaming  # default: stream when the net is temporal="valid"
    frames = _frames(8, seed=4)
    facade.set_level(0)
    net.set_level(2)  # the torch net's own level must not be what the stream uses
    for frame in frames[:-1]:
        assert recognizer.push(frame) is None
    got = recognizer.push(frames[-1]).probabilities
    net.set_level(0)
    want = torch.softmax(_clip_logits(net, frames), dim=0).numpy()
    np.testing.assert_allclose(list(got.values()), want, atol=1e-4)


def test_recognizer_streams_only_nets_without_temporal_padding():
    from tnn_ros.models.gesture_recognizer import GestureRecognizer

    padded = _net({**DEFAULT_ARCHITECTURE, **SMALL, "temporal": "same", "clip_length": 16})
    assert not GestureRecognizer(padded).streaming
    with pytest.raises(ValueError, match="temporal='valid'"):
        GestureRecognizer(padded, streaming=True)
    valid = _net({**DEFAULT_ARCHITECTURE, **SMALL, "clip_length": 8})
    assert not GestureRecognizer(valid, streaming=False).streaming
    recognizer = GestureRecognizer(valid, stride=1, smoothing=1)
    with pytest.raises(ValueError):
        recognizer.push(np.zeros((5, 5), np.uint8))
    frames = _frames(8, seed=5)
    for frame in frames[:-1]:
        assert recognizer.push(frame) is None  # the bad frame did not count as one of the clip
    assert recognizer.push(frames[-1]) is not None


def test_streaming_recognizer_fills_dropped_frames_like_the_clip_model_sees_them():
    # Reference: the clip model on the clip with the dropped frame's slot holding the frame before it.
    from tnn_ros.models.gesture_recognizer import GestureRecognizer

    net = _net({**DEFAULT_ARCHITECTURE, **SMALL, "clip_length": 8})
    net.set_level(2)
    frames = _frames(12, seed=5)
    arrived = [0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 11]  # frame 6 dropped
    recognizer = GestureRecognizer(net, stride=1, smoothing=1, streaming=True)
    results = {i: recognizer.push(frames[i], stamp_s=i / 15) for i in arrived}
    assert recognizer.filled_frames == 1
    filled = frames.copy()
    filled[6] = frames[5]
    for end in (8, 11):
        want = torch.softmax(_clip_logits(net, filled[end - 7 : end + 1]), 0).numpy()
        np.testing.assert_allclose(list(results[end].probabilities.values()), want, atol=1e-4)
