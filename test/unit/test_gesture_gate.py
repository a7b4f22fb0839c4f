"""The recognizer's event gate on scripted class probabilities (hand-computed expectations)."""

import numpy as np
import pytest

from tnn_ros.models.gesture_recognizer import GestureRecognizer

CLASSES = ["no_gesture", "swipe_left", "push"]


class _ScriptedNet:
    """Stands in for the net: returns the next scripted probability vector per clip."""

    classes = CLASSES
    clip_length = 2
    frame_size = (8, 8)

    def __init__(self, outputs):
        self.outputs = [np.asarray(o, np.float32) for o in outputs]

    def predict_clip(self, frames):
        return self.outputs.pop(0)


REST, LEFT, PUSHISH = [0.9, 0.05, 0.05], [0.05, 0.9, 0.05], [0.1, 0.3, 0.6]


def _labels(outputs, commit_mass=1.5, commit_margin=1.0, release_runs=2):
    recognizer = GestureRecognizer(
        _ScriptedNet(outputs),
        stride=1,
        smoothing=1,
        event_gate=True,
        commit_mass=commit_mass,
        commit_margin=commit_margin,
        release_runs=release_runs,
    )
    frame = np.zeros((8, 8, 3), np.uint8)
    results = [recognizer.push(frame) for _ in range(len(outputs) + 1)]
    return [r.label for r in results if r is not None]


def test_gate_commits_once_the_evidence_is_clear_and_holds_through_short_confusions():
    # evidence after each gesture run: push 0.6 (< 1.5), then left 0.3+0.9=1.2 / push 0.65, then
    # left 2.1 / push 0.7 -> lead 1.4 >= 1.0: committed at the 3rd gesture run; the push-looking run
    # after it does not start a second event; one no_gesture run (< release 2) keeps holding.
    outputs = [REST, PUSHISH, LEFT, LEFT, PUSHISH, REST, LEFT, REST, REST, REST]
    assert _labels(outputs) == [
        "no_gesture",
        "no_gesture",
        "no_gesture",
        "swipe_left",
        "swipe_left",
        "swipe_left",
        "swipe_left",
        "swipe_left",
        "no_gesture",
        "no_gesture",
    ]


def test_without_a_clear_lead_nothing_is_announced():
    mixed = [0.05, 0.5, 0.45]
    assert set(_labels([mixed] * 6)) == {"no_gesture"}  # the lead never reaches 1.0


def test_gate_off_reports_every_run_and_bad_settings_are_refused():
    recognizer = GestureRecognizer(_ScriptedNet([PUSHISH, LEFT]), stride=1, smoothing=1)
    frame = np.zeros((8, 8, 3), np.uint8)
    assert [r.label for r in (recognizer.push(frame) for _ in range(3)) if r] == ["push", "swipe_left"]
    with pytest.raises(ValueError):
        GestureRecognizer(_ScriptedNet([]), release_runs=0)
    with pytest.raises(ValueError):
        GestureRecognizer(_ScriptedNet([]), commit_mass=-1.0)
