"""The simulated camera's frame source (tnn_ros.sim.stream)."""

import numpy as np
import pytest

from tnn_ros.sim.gestures import GESTURE_CLASSES
from tnn_ros.sim.scenes import CLASSES
from tnn_ros.sim.stream import SimFrameSource


def test_frames_are_reproducible_and_move():
    a, b = SimFrameSource(96, 64, seed=3), SimFrameSource(96, 64, seed=3)
    first, again = a.next_frame(), b.next_frame()
    np.testing.assert_array_equal(first.rgb, again.rgb)
    np.testing.assert_array_equal(first.boxes, again.boxes)
    later = a.frame_at(30)
    assert first.seq == 0 and later.seq == 30 and a.seq == 1
    assert later.time_s == pytest.approx(2.0)
    assert not np.array_equal(first.boxes, later.boxes)  # objects drift
    assert not np.array_equal(SimFrameSource(96, 64, seed=4).next_frame().rgb, first.rgb)


def test_ground_truth_payload_is_consistent_with_the_frame():
    source = SimFrameSource(160, 120, seed=1, num_objects=3)
    labels = set()
    for seq in range(0, 150, 5):  # 10 s of scene time: rests and gestures
        frame = source.frame_at(seq)
        truth = frame.ground_truth(stamp_ns=123, frame_id="cam")
        assert truth["stamp_ns"] == 123 and truth["frame_id"] == "cam" and truth["seq"] == seq
        assert frame.rgb.shape == (120, 160, 3) and frame.rgb.dtype == np.uint8
        assert len(truth["objects"]) == len(frame.boxes) <= 3
        for obj in truth["objects"]:
            x1, y1, x2, y2 = obj["box"]
            assert 0 <= x1 < x2 <= 160 and 0 <= y1 < y2 <= 120
            assert obj["label"] == CLASSES[obj["class_id"]]
        assert truth["gesture"] in GESTURE_CLASSES
        labels.add(truth["gesture"])
    assert "no_gesture" in labels and len(labels) >= 2  # the script gestures between rests


def test_without_gestures_the_label_is_always_no_gesture():
    source = SimFrameSource(64, 48, seed=2, gestures=False)
    assert {source.frame_at(s).gesture for s in range(0, 100, 10)} == {"no_gesture"}


@pytest.mark.parametrize("kwargs", [dict(width=16), dict(height=8), dict(fps=0.0), dict(num_objects=-1)])
def test_bad_settings_are_rejected(kwargs):
    with pytest.raises(ValueError):
        SimFrameSource(**{"width": 64, "height": 48, **kwargs})
