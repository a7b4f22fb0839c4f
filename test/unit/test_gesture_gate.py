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


# --- EventGate alone: refractory runs after a released event ------------------------------------------

NO, L, P = 0, 1, 2  # class indices of CLASSES


def _gate_outputs(runs, **settings):
    from tnn_ros.models.gesture_recognizer import EventGate

    gate = EventGate(CLASSES, **settings)
    return [gate.update(int(np.argmax(p)), np.asarray(p)) for p in runs]


def test_refractory_runs_ignore_what_follows_a_released_event():
    # LEFT commits at once (0.9 >= 0.4, lead 0.85 >= 0.2); one REST releases it (release_runs 1);
    # the next two runs are refractory, so the push-looking ones are ignored; the third push-looking
    # run after the release commits push (0.6 >= 0.4, lead 0.3 >= 0.2).
    runs = [LEFT, LEFT, REST, PUSHISH, PUSHISH, PUSHISH, REST]
    got = _gate_outputs(runs, release_runs=1, refractory_runs=2)
    assert got == [L, L, NO, NO, NO, P, NO]
    # without the refractory runs the first push-looking run right after the release is announced
    assert _gate_outputs(runs, release_runs=1, refractory_runs=0) == [L, L, NO, P, P, P, NO]


def test_refractory_runs_follow_only_announced_events():
    # a gesture-looking run that never reaches a clear lead leaves no refractory period behind
    mixed = [0.05, 0.5, 0.45]
    runs = [mixed, REST, LEFT]
    assert _gate_outputs(runs, release_runs=1, refractory_runs=3) == [NO, NO, L]


def test_gate_settings_are_checked():
    from tnn_ros.models.gesture_recognizer import EventGate

    for bad in (
        dict(refractory_runs=-1),
        dict(refractory_runs=1.5),
        dict(release_runs=0),
        dict(commit_margin=-0.1),
    ):
        with pytest.raises(ValueError):
            EventGate(CLASSES, **bad)
    with pytest.raises(ValueError, match="no_gesture"):
        EventGate(["swipe_left", "push"])


# --- frame gaps: the slots of dropped frames are filled with the last frame that arrived -------------


class _RecordingNet:
    """Returns a fixed vector and records the clips it was given (frame i is filled with value i)."""

    classes = CLASSES
    clip_length = 4
    frame_size = (2, 2)

    def __init__(self):
        self.clips = []

    def predict_clip(self, frames):
        self.clips.append([int(f[0, 0, 0]) for f in frames])
        return np.asarray(REST, np.float32)


def _push_stamped(stamps, values=None, **settings):
    net = _RecordingNet()
    recognizer = GestureRecognizer(net, stride=1, smoothing=1, streaming=False, **settings)
    values = values if values is not None else list(range(len(stamps)))
    results = [recognizer.push(np.full((2, 2, 3), v, np.uint8), stamp_s=t) for v, t in zip(values, stamps)]
    return net, recognizer, results


def test_a_dropped_frame_is_filled_with_the_previous_one():
    # period 1 s from the first four intervals; the frame of t=5 never came: t=6 arrives 2 periods
    # after t=4, so one slot is filled with frame 4 and the clip keeps its time scale.
    stamps = [0, 1, 2, 3, 4, 6]
    values = [0, 1, 2, 3, 4, 6]
    net, recognizer, results = _push_stamped(stamps, values)
    assert net.clips == [[0, 1, 2, 3], [1, 2, 3, 4], [3, 4, 4, 6]]
    assert recognizer.filled_frames == 1
    assert [r is not None for r in results] == [False, False, False, True, True, True]  # no extra result


def test_jitter_unknown_stamps_and_a_disabled_fill_add_nothing():
    # intervals 1.1, 0.8, 1.1, 1.0 -> lower quartile 0.95; 1.4 / 0.95 rounds to 1: no frame missing
    net, recognizer, _ = _push_stamped([0, 1.1, 1.9, 3.0, 4.0, 5.4])
    assert recognizer.filled_frames == 0 and net.clips[-1] == [2, 3, 4, 5]
    net, recognizer, _ = _push_stamped([0, 1, 2, 3, 4, float("nan"), 9])  # NaN: unknown, no gap seen
    assert recognizer.filled_frames == 0
    net, recognizer, _ = _push_stamped([0, 1, 2, 3, 4, 6], max_gap_fill=0)
    assert recognizer.filled_frames == 0 and net.clips[-1] == [2, 3, 4, 5]


def test_long_gaps_fill_at_most_max_gap_fill_and_a_clip_long_gap_starts_over():
    # t=4 -> t=7: two frames missing, max_gap_fill 1 fills one slot
    net, recognizer, _ = _push_stamped([0, 1, 2, 3, 4, 7], max_gap_fill=1)
    assert recognizer.filled_frames == 1 and net.clips[-1] == [3, 4, 4, 5]
    # t=4 -> t=10: 5 frames missing >= clip_length 4: the clip restarts, no result until 4 new frames
    net, recognizer, results = _push_stamped([0, 1, 2, 3, 4, 10, 11, 12, 13])
    assert [r is not None for r in results] == [False, False, False, True, True, False, False, False, True]
    assert net.clips[-1] == [5, 6, 7, 8] and recognizer.filled_frames == 0


def test_a_net_without_a_rest_class_runs_without_the_gate():
    # e.g. a converted Kinetics net: no no_gesture class, so nothing to release to
    class _KineticsLike(_ScriptedNet):
        classes = ["archery", "bowling"]

    recognizer = GestureRecognizer(_KineticsLike([[0.3, 0.7]]), stride=1, smoothing=1, min_confidence=0.0)
    frame = np.zeros((8, 8, 3), np.uint8)
    assert [r.label for r in (recognizer.push(frame) for _ in range(2)) if r] == ["bowling"]
    with pytest.raises(ValueError, match="no_gesture"):
        GestureRecognizer(_KineticsLike([]), event_gate=True)
