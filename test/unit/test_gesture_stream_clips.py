"""Stream-window training clips (tnn_ros.data.stream) and warm-starting a valid net (train.gesture)."""

import numpy as np
import pytest
import torch

from tnn_ros.data.stream import StreamGestureDataset, _coverage


def test_coverage_by_hand():
    # gesture on frames 10..19 (10 frames); a 16-frame clip ending at 19 holds all of it,
    # one ending at 14 holds 10..14 (5 of 10), one ending at 9 none, one ending at 30 holds 15..19 (5).
    assert _coverage(10, 19, 19, 16) == 1.0
    assert _coverage(10, 19, 14, 16) == 0.5
    assert _coverage(10, 19, 9, 16) == 0.0
    assert _coverage(10, 19, 30, 16) == 0.5


def test_stream_clips_are_seeded_and_cycle_through_the_classes():
    data = StreamGestureDataset(16, seed=3, clip_length=16, frame_size=(32, 32))
    clip, label = data[9]
    again, same_label = StreamGestureDataset(16, seed=3, clip_length=16, frame_size=(32, 32))[9]
    assert clip.shape == (16, 32, 32, 3) and clip.dtype == torch.uint8
    assert torch.equal(clip, again) and label == same_label == 9 % 8
    assert not torch.equal(clip, StreamGestureDataset(16, seed=4, frame_size=(32, 32))[9][0])
    with pytest.raises(IndexError):
        data[16]
    weighted = StreamGestureDataset(16, seed=3, frame_size=(32, 32), class_repeats={"push": 2})
    assert [weighted.label_of(i) for i in range(10)] == [0, 1, 2, 3, 4, 5, 5, 6, 7, 0]
    assert weighted[6][1] == 5


def test_a_valid_net_can_start_from_a_padded_one(tmp_path):
    from tnn_ros.models.gesture import ThrottleableGestureNet
    from tnn_ros.train.gesture import init_from

    arch = {"frame_size": [16, 16], "num_levels": 2, "stages": [[8], [8, 8], [16], [16]], "fc": [16, 16]}
    same = ThrottleableGestureNet(architecture=arch)
    torch.save(same.state_dict(), tmp_path / "same.pt")
    valid = ThrottleableGestureNet(architecture={**arch, "temporal": "valid"})
    init_from(valid, tmp_path / "same.pt")
    source, target = same.state_dict(), valid.state_dict()
    for key, value in source.items():
        if value.shape == target[key].shape:
            assert torch.equal(value, target[key]), key
        else:  # a temporal-kernel-1 conv: the kernel-3 weights summed over time
            np.testing.assert_allclose(target[key].numpy(), value.sum(dim=2, keepdim=True).numpy(), rtol=1e-6)


def test_drop_rate_repeats_frames_and_bad_settings_are_refused():
    from tnn_ros.data.stream import render_stream_clip

    # drop_rate 1: every frame after the first is replaced by the one before it: all equal the first
    clip = render_stream_clip(np.random.default_rng(1), "swipe_left", 16, (24, 24), drop_rate=1.0)
    assert all(np.array_equal(frame, clip[0]) for frame in clip)
    plain = render_stream_clip(np.random.default_rng(1), "swipe_left", 16, (24, 24))
    assert len({frame.tobytes() for frame in plain}) > 8  # the hand moves: frames differ
    for bad in (dict(boundary_fraction=1.5), dict(drop_rate=-0.1)):
        with pytest.raises(ValueError):
            StreamGestureDataset(4, **bad)


def test_boundary_windows_hold_part_of_a_gesture(monkeypatch):
    # With boundary_fraction 1 a no_gesture window is drawn where a gesture is partly (<= 40%) in
    # view. Checked on the script's own ground truth: the labels of the frames the window draws.
    from tnn_ros.data import stream
    from tnn_ros.sim.gestures import NO_GESTURE, GestureScript

    seen = []
    original = GestureScript.overlay_hand

    def overlay(self, frame, t):
        out, label = original(self, frame, t)
        seen.append(label)
        return out, label

    monkeypatch.setattr(GestureScript, "overlay_hand", overlay)
    for seed in range(4):
        seen.clear()
        stream.render_stream_clip(
            np.random.default_rng(seed), NO_GESTURE, 16, (24, 24), boundary_fraction=1.0
        )
        gesture_frames = sum(label != NO_GESTURE for label in seen)
        assert 0 < gesture_frames, seed
    seen.clear()
    counts = []
    for seed in range(4):
        seen.clear()
        stream.render_stream_clip(np.random.default_rng(seed), NO_GESTURE, 16, (24, 24))
        counts.append(sum(label != NO_GESTURE for label in seen))
    assert min(counts) == 0  # drawn uniformly, some no_gesture windows hold no gesture frame at all


def test_partial_weight_by_hand():
    from tnn_ros.data.stream import partial_weight

    # hard labels at both ends (<= 40 %: no_gesture, >= 70 %: the gesture), linear in between
    assert partial_weight(0.0) == 0.0 and partial_weight(0.4) == 0.0
    assert partial_weight(0.55) == pytest.approx(0.5)
    assert partial_weight(0.7) == 1.0 and partial_weight(1.0) == 1.0


def test_partial_windows_hold_part_of_the_gesture_and_carry_its_soft_label(monkeypatch):
    # With partial_fraction 1 a gesture window holds only part of its gesture (0 < coverage < 70 %),
    # checked on the script's own per-frame truth; the target puts partial_weight(coverage) on the
    # gesture and the rest on no_gesture.
    from tnn_ros.data import stream
    from tnn_ros.sim.gestures import GESTURE_CLASSES, NO_GESTURE, GestureScript

    seen = []
    original = GestureScript.overlay_hand

    def overlay(self, frame, t):
        out, label = original(self, frame, t)
        seen.append(label)
        return out, label

    monkeypatch.setattr(GestureScript, "overlay_hand", overlay)
    data = StreamGestureDataset(24, seed=2, frame_size=(24, 24), partial_fraction=1.0)
    weights = []
    for index in range(24):
        if index % 8 == 0:
            continue  # no_gesture windows are drawn as before
        seen.clear()
        clip, target = data[index]
        label = GESTURE_CLASSES[index % 8]
        assert target.shape == (8,) and target.sum().item() == pytest.approx(1.0)
        assert set(torch.nonzero(target).flatten().tolist()) <= {index % 8, 0}
        inside = sum(name == label for name in seen)
        assert 0 < inside, index  # part of the gesture is in view ...
        weights.append(target[index % 8].item())
    assert min(weights) < 1.0  # ... and not always enough of it for a hard label
    # the default draws the plain windows with class indices, as before
    clip, label = StreamGestureDataset(8, seed=2, frame_size=(24, 24))[3]
    assert label == 3
    assert stream.NO_GESTURE == NO_GESTURE
