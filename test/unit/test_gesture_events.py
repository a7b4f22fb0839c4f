"""Event-level gesture scoring (tnn_ros.eval.gesture_events) on hand-computed cases."""

import numpy as np
import pytest

from tnn_ros.eval.gesture_events import (
    GestureEvent,
    announced_events,
    frame_accuracy,
    levenshtein,
    levenshtein_accuracy,
    match_events,
    score_stream,
    truth_events,
)

N = "no_gesture"


@pytest.mark.parametrize(
    "a, b, distance",
    [
        ("", "", 0),
        ("abc", "", 3),
        ("", "ab", 2),
        ("kitten", "sitting", 3),
        ("flaw", "lawn", 2),
        ("abc", "abc", 0),
        ("ab", "ba", 2),
    ],
)
def test_levenshtein_matches_hand_computed_distances(a, b, distance):
    assert levenshtein(list(a), list(b)) == distance
    assert levenshtein(list(b), list(a)) == distance


def test_levenshtein_accuracy():
    truth = ["L", "R", "U", "D"]
    assert levenshtein_accuracy(truth, truth) == 1.0
    assert levenshtein_accuracy(["L", "R", "U"], truth) == 0.75  # one deletion
    assert levenshtein_accuracy(["L", "X", "R", "U", "D"], truth) == 0.75  # one insertion (false alarm)
    assert levenshtein_accuracy(["L", "R", "D", "D"], truth) == 0.75  # one substitution
    assert levenshtein_accuracy(list("XXXXXXXXXX"), truth) == 0.0  # clipped at 0
    assert levenshtein_accuracy([], []) is None


def test_truth_events_are_runs_of_one_gesture():
    times = [0, 1, 2, 3, 4, 5, 6, 7]
    labels = [N, "L", "L", N, N, "R", "U", "U"]
    assert truth_events(times, labels) == [
        GestureEvent("L", 1, 2),
        GestureEvent("R", 5, 5),
        GestureEvent("U", 6, 7),
    ]
    assert announced_events([], []) == []
    with pytest.raises(ValueError):
        truth_events([0, 1], [N])
    with pytest.raises(ValueError):
        truth_events([1, 0], [N, N])


def test_match_events_counts_detections_misclassifications_misses_and_false_alarms():
    truth = [
        GestureEvent("L", 10, 11),
        GestureEvent("R", 20, 21),
        GestureEvent("U", 30, 31),
        GestureEvent("D", 40, 41),
    ]
    announced = [
        GestureEvent("L", 11.5, 12),  # detects L (delay 1.5, inside [10, 11 + 0.8])
        GestureEvent("L", 12.5, 13),  # outside every window (11.8 < 12.5 < 20): false alarm
        GestureEvent("U", 20.5, 21),  # wrong class in R's window: R misclassified, false alarm
        GestureEvent("U", 30.2, 30.5),  # detects U
        GestureEvent("U", 31.0, 31.2),  # second announcement in U's window: false alarm
        # D: nothing -> missed
    ]
    scores = match_events(truth, announced, allowance_s=0.8)
    assert (scores.gestures, scores.announced) == (4, 5)
    assert (scores.detected, scores.misclassified, scores.missed, scores.false_alarms) == (2, 1, 1, 3)
    assert scores.detection_rate == 0.5
    assert scores.mean_delay_s == pytest.approx((1.5 + 0.2) / 2)
    # announced L L U U U vs truth L R U D: L=L, L->R, U=U, U->D, one U inserted: distance 3
    assert scores.levenshtein_accuracy == pytest.approx(1 - 3 / 4)


def test_windows_stop_at_the_next_gesture():
    truth = [GestureEvent("L", 0, 1), GestureEvent("R", 1.5, 2)]
    scores = match_events(truth, [GestureEvent("L", 1.6, 1.7)], allowance_s=5.0)
    assert scores.detected == 0 and scores.misclassified == 1 and scores.false_alarms == 1


def test_score_stream_only_scores_what_the_recognizer_watched():
    # 10 Hz truth: gesture L at 0.0-0.2 (before the recognizer's first result), R at 1.0-1.2,
    # U at 2.0-2.2, and D at 2.9-3.0 which is cut off by the end of the announcements.
    times = [i / 10 for i in range(31)]
    labels = [N] * 31
    for lo, hi, g in ((0, 2, "L"), (10, 12, "R"), (20, 22, "U"), (29, 30, "D")):
        for i in range(lo, hi + 1):
            labels[i] = g
    announce_t = [0.5, 0.6, 1.1, 1.2, 1.3, 2.3, 2.4, 3.0]
    announce = [N, "L", "R", "R", N, "U", N, "D"]  # L: late echo of an unscored gesture; D: cut off
    scores = score_stream(times, labels, announce_t, announce, allowance_s=0.8)
    assert scores.gestures == 2 and scores.detected == 2 and scores.false_alarms == 0
    assert scores.levenshtein_accuracy == 1.0


def test_frame_accuracy():
    assert frame_accuracy(["a", "b", "c", "d"], ["a", "b", "x", "y"]) == 0.5
    assert frame_accuracy([], []) is None
    with pytest.raises(ValueError):
        frame_accuracy(["a"], [])


def test_kept_frames_drop_at_the_given_rate_and_keep_the_first():
    from tnn_ros.eval.gesture_stream import kept_frames

    assert kept_frames(50, 0.0) == list(range(50))
    kept = kept_frames(20000, 0.12, seed=3)
    assert kept[0] == 0 and kept == sorted(set(kept)) and kept == kept_frames(20000, 0.12, seed=3)
    assert abs(1 - len(kept) / 20000 - 0.12) < 0.01  # binomial sd 0.0023
    with pytest.raises(ValueError):
        kept_frames(10, 1.0)


def test_gesture_stream_cli_uses_the_cards_threshold_unless_given(tmp_path):
    import json

    from tnn_ros.eval.gesture_stream import main
    from tnn_ros.models import gesture_card_settings

    out = tmp_path / "stream.json"
    base = ["--seconds", "2", "--levels", "0", "--json", str(out)]
    assert main(base) == 0
    expected = gesture_card_settings().get("min_confidence", 0.5)
    assert json.loads(out.read_text())["recognizer"]["min_confidence"] == expected
    assert main(base + ["--min-confidence", "0.65"]) == 0
    assert json.loads(out.read_text())["recognizer"]["min_confidence"] == 0.65
    assert main(base + ["--min-confidence", "1.5"]) == 2


def test_stream_phase_starts_the_stream_and_its_truth_later():
    from tnn_ros.eval.gesture_stream import StreamRecording, stream_phase

    recording = StreamRecording(
        [np.full((2, 2, 3), i, np.uint8) for i in range(5)], [0.1 * i for i in range(5)], list("aabbc")
    )
    later = stream_phase(recording, 2)
    assert [int(f[0, 0, 0]) for f in later.frames] == [2, 3, 4]
    assert later.times == recording.times[2:] and later.labels == ["b", "b", "c"]
    assert stream_phase(recording, 0).frames == recording.frames
    for bad in (-1, 5):
        with pytest.raises(ValueError):
            stream_phase(recording, bad)


def test_gesture_stream_cli_reports_the_mean_over_stride_phases(tmp_path):
    import json

    from tnn_ros.eval.gesture_stream import main

    out = tmp_path / "stream.json"
    assert main(["--seconds", "6", "--seed", "5", "--levels", "0", "--phases", "3", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    level = result["levels"]["0"]
    assert result["phases"] == 3 and len(level["per_phase"]) == 3
    assert [p["frames_pushed"] for p in level["per_phase"]] == [90, 89, 88]
    accuracies = [p["event_accuracy"] for p in level["per_phase"] if p["event_accuracy"] is not None]
    assert level["event_accuracy"] == pytest.approx(sum(accuracies) / len(accuracies))
    assert level["events"]["gestures"] == pytest.approx(
        sum(p["events"]["gestures"] for p in level["per_phase"]) / 3
    )
    for bad in ("0", "65"):
        assert main(["--seconds", "1", "--levels", "0", "--phases", bad]) == 2
    assert main(["--seconds", "0.5", "--levels", "0", "--phases", "9"]) == 2  # 8 frames


def test_gesture_stream_cli_reports_the_mean_over_seeds_and_each_seed_as_alone(tmp_path):
    import json

    from tnn_ros.eval.gesture_stream import main

    base = ["--seconds", "5", "--levels", "0", "--phases", "2"]
    both, alone = tmp_path / "both.json", tmp_path / "alone.json"
    assert main(base + ["--seed", "5", "23", "--json", str(both)]) == 0
    assert main(base + ["--seed", "23", "--json", str(alone)]) == 0
    result, single = json.loads(both.read_text()), json.loads(alone.read_text())
    assert result["seed"] == [5, 23] and single["seed"] == 23
    level = result["levels"]["0"]
    assert [run["seed"] for run in level["per_seed"]] == [5, 23]
    # A seed scored among others gives what it gives alone (the streams do not share state).
    timed = ("seed", "ms_per_frame", "per_phase")  # per_phase holds each phase's ms_per_frame

    def untimed(figures):
        return {k: v for k, v in figures.items() if k not in timed}

    assert untimed(level["per_seed"][1]) == untimed(single["levels"]["0"])
    for key in ("frame_accuracy", "event_accuracy"):  # frame-level differs between these two seeds
        values = [run[key] for run in level["per_seed"] if run[key] is not None]
        assert values and level[key] == pytest.approx(sum(values) / len(values))
    assert level["per_seed"][0]["frame_accuracy"] != level["per_seed"][1]["frame_accuracy"]
    assert level["events"]["gestures"] == pytest.approx(
        sum(run["events"]["gestures"] for run in level["per_seed"]) / 2
    )
    assert "seed" not in level and "per_phase" not in level
    assert main(["--seconds", "1", "--levels", "0", "--seed", "5", "5"]) == 2  # the same stream twice


def test_gesture_stream_bench_runs_the_recognizer_the_perception_node_runs(tmp_path):
    # The bench's figures decide which weights and thresholds ship, so its recognizer must be the
    # node's (a smoothing of 3 instead of the node's 2 once turned a demo regression into a gain).
    import json

    pytest.importorskip("rclpy")
    from tnn_ros.eval.gesture_stream import main
    from tnn_ros.nodes.perception import PARAMETERS

    node = {spec.name: spec.default for spec in PARAMETERS}
    out = tmp_path / "stream.json"
    assert main(["--seconds", "2", "--levels", "0", "--json", str(out)]) == 0
    settings = json.loads(out.read_text())["recognizer"]
    assert settings["stride"] == node["gesture.stride"]
    assert settings["smoothing"] == node["gesture.smoothing"]
    assert settings["max_gap_fill"] == node["gesture.max_gap_fill"]
    assert settings["streaming"] == node["gesture.streaming"]
