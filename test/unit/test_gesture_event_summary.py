"""The demo summary's event-level gesture figure, on hand-made payloads (no bag needed)."""

import pytest

from tnn_ros.demo.analysis import gesture_event_accuracy

SECOND = 1_000_000_000


def _truth(labels: list[str], fps: int = 10) -> dict[int, dict]:
    stamps = [i * SECOND // fps for i in range(len(labels))]
    return {stamp: {"stamp_ns": stamp, "gesture": label} for stamp, label in zip(stamps, labels)}


def test_one_right_announcement_per_gesture_scores_one():
    labels = ["no_gesture"] * 60
    for lo, g in ((10, "swipe_left"), (30, "push")):
        labels[lo : lo + 8] = [g] * 8
    truth = _truth(labels)
    # every 0.2 s, the recognizer says no_gesture except once shortly after each gesture
    gestures = [{"stamp_ns": s, "label": "no_gesture"} for s in sorted(truth)[::2]]
    for g in gestures:
        if g["stamp_ns"] == 16 * SECOND // 10:
            g["label"] = "swipe_left"
        if g["stamp_ns"] in (36 * SECOND // 10, 38 * SECOND // 10):  # two in a row: still one event
            g["label"] = "push"
    assert gesture_event_accuracy(gestures, truth) == pytest.approx(1.0)
    # a false alarm between the gestures: one insertion over two gestures
    gestures[13]["label"] = "rotate"  # t = 2.6 s: after swipe_left's window (1.0-2.5 s), before push
    assert gesture_event_accuracy(gestures, truth) == pytest.approx(0.5)


def test_no_announcements_or_no_gestures_give_none():
    truth = _truth(["no_gesture"] * 20)
    assert gesture_event_accuracy([], truth) is None
    assert (
        gesture_event_accuracy(
            [{"stamp_ns": 0, "label": "no_gesture"}, {"stamp_ns": SECOND, "label": "no_gesture"}], truth
        )
        is None
    )
