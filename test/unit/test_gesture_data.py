"""Synthetic gesture clips and the scripted gesture stream: determinism, semantics, bad input."""

import math

import numpy as np
import pytest

from tnn_ros.data.gestures import SyntheticGestureDataset, label_cycle
from tnn_ros.sim.gestures import (
    GESTURE_CLASSES,
    NO_GESTURE,
    GestureScript,
    HandPose,
    draw_hand,
    render_clip,
    sample_motion,
)


def test_render_clip_is_deterministic_per_seed():
    a = render_clip(np.random.default_rng(7), "swipe_left", 16, 48, 40)
    b = render_clip(np.random.default_rng(7), "swipe_left", 16, 48, 40)
    c = render_clip(np.random.default_rng(8), "swipe_left", 16, 48, 40)
    assert a.shape == (16, 40, 48, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("label", GESTURE_CLASSES)
def test_every_label_renders_and_moves_or_rests(label):
    clip = render_clip(np.random.default_rng(1), label, 8, 32, 32)
    assert clip.shape == (8, 32, 32, 3)
    assert clip.std() > 5  # not a blank frame


def test_unknown_label_and_bad_sizes_raise():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="unknown gesture"):
        render_clip(rng, "wave", 8, 32, 32)
    with pytest.raises(ValueError):
        render_clip(rng, "push", 1, 32, 32)


def _hand_centroid(pose: HandPose, size=64):
    canvas = np.zeros((size, size, 3), np.float32)
    draw_hand(canvas, pose, (1.0, 0.7, 0.5))
    mask = canvas[..., 0] > 0.5
    ys, xs = np.nonzero(mask)
    return xs.mean(), ys.mean(), mask.sum()


@pytest.mark.parametrize(
    "label,axis,sign",
    [("swipe_left", 0, -1), ("swipe_right", 0, 1), ("swipe_up", 1, -1), ("swipe_down", 1, 1)],
)
def test_swipes_move_the_drawn_hand_the_right_way(label, axis, sign):
    for seed in range(5):
        motion = sample_motion(np.random.default_rng(seed), label)
        start, end = _hand_centroid(motion.pose_at(0.0)), _hand_centroid(motion.pose_at(1.0))
        assert sign * (end[axis] - start[axis]) > 8  # pixels of a 64x64 frame


def test_push_grows_pull_shrinks_rotate_turns():
    for seed in range(5):
        push = sample_motion(np.random.default_rng(seed), "push")
        pull = sample_motion(np.random.default_rng(seed), "pull")
        rotate = sample_motion(np.random.default_rng(seed), "rotate")
        assert _hand_centroid(push.pose_at(1.0))[2] > 2 * _hand_centroid(push.pose_at(0.0))[2]
        assert _hand_centroid(pull.pose_at(1.0))[2] < 0.5 * _hand_centroid(pull.pose_at(0.0))[2]
        assert abs(rotate.pose_at(1.0).angle - rotate.pose_at(0.0).angle) >= math.pi / 2 - 1e-6


def test_no_gesture_barely_moves():
    for seed in range(10):
        motion = sample_motion(np.random.default_rng(seed), NO_GESTURE)
        a, b = motion.pose_at(0.0), motion.pose_at(1.0)
        assert math.hypot(b.x - a.x, b.y - a.y) < 0.15 and b.size == pytest.approx(a.size)


def test_dataset_is_balanced_and_order_independent():
    dataset = SyntheticGestureDataset(16, seed=3, clip_length=4, frame_size=(24, 20))
    assert len(dataset) == 16
    assert [dataset.label_of(i) for i in range(8)] == list(range(8))
    clip, label = dataset[9]
    assert clip.shape == (4, 20, 24, 3) and label == 1
    again, _ = SyntheticGestureDataset(16, seed=3, clip_length=4, frame_size=(24, 20))[9]
    assert np.array_equal(clip.numpy(), again.numpy())
    with pytest.raises(IndexError):
        dataset[16]


def test_class_repeats_weight_a_class_and_keep_the_rest_of_the_cycle():
    assert label_cycle(["a", "b", "c"]) == [0, 1, 2]
    assert label_cycle(["a", "b", "c"], {"b": 3}) == [0, 1, 1, 1, 2]
    rotate = GESTURE_CLASSES.index("rotate")
    dataset = SyntheticGestureDataset(
        18, seed=3, clip_length=4, frame_size=(24, 20), class_repeats={"rotate": 2}
    )
    labels = [dataset.label_of(i) for i in range(18)]
    assert labels[:9] == [*range(8), rotate] and labels[9:] == labels[:9]
    assert labels.count(rotate) == 4 and all(labels.count(k) == 2 for k in range(7))
    clip, label = dataset[8]  # a clip is still a function of (seed, index) only
    assert label == rotate and np.array_equal(clip.numpy(), dataset[8][0].numpy())
    for bad, message in (
        ({"wave": 2}, "unknown classes"),
        ({"rotate": 0}, ">= 1"),
        ({"rotate": 1.5}, ">= 1"),
    ):
        with pytest.raises(ValueError, match=message):
            SyntheticGestureDataset(4, class_repeats=bad)


def test_script_is_deterministic_contiguous_and_labels_gestures():
    a, b = GestureScript(seed=5), GestureScript(seed=5)
    times = np.arange(0, 30, 1 / 15)
    labels = [a.hand_at(t).label for t in times]
    assert labels == [b.hand_at(t).label for t in times]
    assert labels[0] == NO_GESTURE
    assert len(set(labels) - {NO_GESTURE}) >= 3  # several different gestures in 30 s
    segments = a._segments
    assert all(s1.end_s == s2.start_s for s1, s2 in zip(segments, segments[1:]))
    # Asking for an earlier time after a later one gives the same answer (lazy generation is stable).
    assert a.hand_at(3.0) == GestureScript(seed=5).hand_at(3.0)


def test_overlay_hand_draws_on_a_copy_and_reports_the_label():
    script = GestureScript(seed=2)
    frame = np.full((120, 160, 3), 40, np.uint8)
    drawn_any = False
    for t in np.arange(0, 6, 0.25):
        out, label = script.overlay_hand(frame, t)
        assert out.shape == frame.shape and out.dtype == np.uint8
        assert label == script.hand_at(t).label
        drawn_any |= bool((out != 40).any())
    assert drawn_any
    assert (frame == 40).all()  # input untouched
    with pytest.raises(ValueError):
        script.overlay_hand(np.zeros((10, 10), np.uint8), 0.0)
    with pytest.raises(ValueError):
        script.hand_at(float("nan"))
