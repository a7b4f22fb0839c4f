"""Pipeline, gating, JSON payloads, vision_msgs converter and debug drawing (no ROS)."""

import json
import math
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pytest

from tnn_ros.perception import (
    FrameResult,
    PerceptionPipeline,
    detections_to_json,
    draw_debug,
    gesture_to_json,
    stamp_to_ns,
    to_detection2d_array,
)
from tnn_ros.perception.gating import UtilizationGate
from tnn_ros.sim.scenes import CLASSES as CLASS_NAMES
from tnn_ros.throttle.levels import LevelSchedule


@dataclass
class _Det:
    class_id: int
    label: str
    score: float
    box: tuple


@dataclass
class _Gesture:
    label: str
    class_id: int
    confidence: float
    probabilities: dict


class _RecordingModel:
    """Records the level it runs at; stands in for a throttleable model in pipeline-logic tests."""

    def __init__(self, num_levels):
        self.num_levels = num_levels
        self.level = num_levels - 1
        self.calls = []

    def set_level(self, level):
        if not 0 <= level < self.num_levels:
            raise ValueError(level)
        self.level = level

    def set_utilization(self, u):
        self.level = LevelSchedule(self.num_levels).level_for(u)
        return self.level


class _Detector(_RecordingModel):
    def predict(self, image_rgb, score_threshold=0.3):
        self.calls.append((self.level, image_rgb.shape, score_threshold))
        return [_Det(1, "box", 0.9, (1.0, 2.0, 11.0, 22.0))]


@dataclass
class _Recognizer:
    net: object
    stride: int = 4
    frames: list = field(default_factory=list)

    def push(self, frame):
        self.frames.append((self.net.level, frame.shape))
        if len(self.frames) % self.stride == 0:
            return _Gesture("wave", 1, 0.8, {"no_gesture": 0.2, "wave": 0.8})
        return None

    def reset(self):
        self.frames.clear()


def _pipeline(det_levels=8, gesture_levels=8):
    net = _RecordingModel(gesture_levels)
    net.frame_size = (40, 30)
    detector = _Detector(det_levels)
    recognizer = _Recognizer(net, stride=2)
    return PerceptionPipeline(detector, recognizer, LevelSchedule(det_levels)), detector, recognizer


def test_pipeline_runs_both_models_at_the_level_of_the_utilization():
    pipeline, detector, recognizer = _pipeline()
    frame = np.zeros((240, 320, 3), np.uint8)
    result = pipeline.process(frame, 0.3, 0.25)
    assert result.level == 1 and result.utilization_applied == pytest.approx(0.25)
    assert detector.calls[-1] == (1, (240, 320, 3), 0.25)
    # the gesture clip holds frames shrunk to the net's frame size, at the same level
    assert recognizer.frames[-1] == (1, (30, 40, 3))
    assert result.gesture is None
    result = pipeline.process(frame, 1.0, 0.25)
    assert result.level == 7 and result.utilization_applied == 1.0
    assert result.gesture is not None and result.gesture.label == "wave"
    assert result.image_size == (320, 240)
    assert result.latency_ms >= result.detector_ms >= 0.0


def test_pipeline_maps_levels_through_utilization_when_level_counts_differ():
    pipeline, detector, recognizer = _pipeline(det_levels=8, gesture_levels=4)
    pipeline.process(np.zeros((30, 40, 3), np.uint8), 0.5, 0.3)
    assert detector.level == 3
    assert recognizer.net.level == LevelSchedule(4).level_for(0.5)


def test_pipeline_skips_gesture_when_disabled_and_rejects_bad_input():
    pipeline, _, recognizer = _pipeline()
    pipeline.process(np.zeros((30, 40, 3), np.uint8), 0.5, 0.3, run_gesture=False)
    assert recognizer.frames == []
    with pytest.raises(ValueError):
        pipeline.process(np.zeros((30, 40), np.uint8), 0.5, 0.3)
    with pytest.raises(ValueError):
        pipeline.process(np.zeros((30, 40, 3), np.uint8), math.nan, 0.3)
    with pytest.raises(ValueError):
        PerceptionPipeline(None, None, LevelSchedule())


def test_pipeline_stride_change_rebuilds_the_recognizer():
    pipeline, _, recognizer = _pipeline()
    pipeline.set_gesture_stride(5)
    assert pipeline.gesture_recognizer is not recognizer
    assert pipeline.gesture_recognizer.stride == 5 and pipeline.gesture_recognizer.net is recognizer.net


def test_gate_auto_manual_stale_and_bad_setpoints():
    gate = UtilizationGate(safe_utilization=0.4, stale_timeout_s=2.0)
    assert gate.decide("auto", 0.9, now=0.0).source == "stale"
    assert gate.decide("auto", 0.9, now=0.0).utilization == 0.4
    assert gate.offer_setpoint(0.7, now=10.0) is None
    assert gate.decide("auto", 0.9, now=11.0).utilization == pytest.approx(0.7)
    assert gate.decide("manual", 0.9, now=11.0).utilization == 0.9
    assert gate.decide("auto", 0.9, now=12.5).source == "stale"
    assert "clamped" in gate.offer_setpoint(1.5, now=20.0)
    assert gate.decide("auto", 0.9, now=20.0).utilization == 1.0
    assert "clamped" in gate.offer_setpoint(-3.0, now=20.0)
    assert gate.decide("auto", 0.9, now=20.0).utilization == 0.0
    for bad in (math.nan, math.inf, -math.inf):
        assert "rejected" in gate.offer_setpoint(bad, now=21.0)
    assert gate.decide("auto", 0.9, now=21.0).utilization == 0.0  # NaN kept the previous one
    assert (gate.rejected, gate.clamped) == (3, 2)
    with pytest.raises(ValueError):
        gate.decide("turbo", 0.5, now=0.0)


def _result(gesture=None):
    return FrameResult(
        detections=[_Det(2, "cup", 0.87654, (1.234, 2.0, 30.5, 40.25))],
        gesture=gesture,
        level=3,
        utilization_applied=0.5,
        latency_ms=12.3456,
        image_size=(320, 240),
    )


def test_detections_json_payload_matches_the_contract():
    payload = json.loads(detections_to_json(_result(), stamp_to_ns(12, 345), "camera"))
    assert payload == {
        "stamp_ns": 12_000_000_345,
        "frame_id": "camera",
        "level": 3,
        "utilization": 0.5,
        "latency_ms": 12.346,
        "image_size": [320, 240],
        "detections": [{"class_id": 2, "label": "cup", "score": 0.8765, "box": [1.23, 2.0, 30.5, 40.25]}],
    }


def test_gesture_json_payload_matches_the_contract():
    result = _result(_Gesture("swipe_left", 2, 0.9, {"no_gesture": 0.1, "swipe_left": 0.9}))
    payload = json.loads(gesture_to_json(result, 7))
    assert payload == {
        "stamp_ns": 7,
        "label": "swipe_left",
        "class_id": 2,
        "confidence": 0.9,
        "probabilities": {"no_gesture": 0.1, "swipe_left": 0.9},
        "level": 3,
        "utilization": 0.5,
    }
    with pytest.raises(ValueError):
        gesture_to_json(_result(), 7)


class _FakeVisionMsgs:
    """The Jazzy vision_msgs field layout (vision_msgs is not installed here)."""

    class Point2D:
        def __init__(self):
            self.x = 0.0
            self.y = 0.0

    class Pose2D:
        def __init__(self):
            self.position = _FakeVisionMsgs.Point2D()
            self.theta = 0.0

    class BoundingBox2D:
        def __init__(self):
            self.center = _FakeVisionMsgs.Pose2D()
            self.size_x = 0.0
            self.size_y = 0.0

    class ObjectHypothesis:
        def __init__(self):
            self.class_id = ""
            self.score = 0.0

    class ObjectHypothesisWithPose:
        __slots__ = ("hypothesis", "pose")

        def __init__(self):
            self.hypothesis = _FakeVisionMsgs.ObjectHypothesis()
            self.pose = SimpleNamespace(pose=None, covariance=[0.0] * 36)

    class Detection2D:
        __slots__ = ("header", "results", "bbox", "id")

        def __init__(self):
            self.header = None
            self.results = []
            self.bbox = _FakeVisionMsgs.BoundingBox2D()
            self.id = ""

    class Detection2DArray:
        __slots__ = ("header", "detections")

        def __init__(self):
            self.header = None
            self.detections = []


def test_vision_msgs_converter_fills_the_jazzy_layout():
    header = SimpleNamespace(frame_id="camera")
    dets = [_Det(2, "cup", 0.5, (10.0, 20.0, 30.0, 60.0)), _Det(0, "ball", 0.25, (0.0, 0.0, 4.0, 2.0))]
    array = to_detection2d_array(dets, header, _FakeVisionMsgs)
    assert array.header is header and len(array.detections) == 2
    first = array.detections[0]
    assert first.header is header
    assert first.results[0].hypothesis.class_id == "cup" and first.results[0].hypothesis.score == 0.5
    assert (first.bbox.center.position.x, first.bbox.center.position.y) == (20.0, 40.0)
    assert (first.bbox.size_x, first.bbox.size_y, first.bbox.center.theta) == (20.0, 40.0, 0.0)
    assert array.detections[1].results[0].hypothesis.class_id == "ball"
    assert len(to_detection2d_array([], header, _FakeVisionMsgs).detections) == 0


def test_debug_drawing_marks_the_boxes_without_touching_the_input():
    frame = np.zeros((240, 320, 3), np.uint8)
    canvas = draw_debug(frame, _result(_Gesture("wave", 1, 0.8, {})))
    assert frame.sum() == 0
    assert canvas.shape == frame.shape and canvas.dtype == np.uint8
    assert canvas[20, 1:31].any()  # the box outline
    assert canvas[-12:, :].any()  # the status line with the gesture label


def test_pipeline_with_the_shipped_models_runs_every_level_and_finds_objects():
    from tnn_ros.perception.loading import load_models
    from tnn_ros.sim.stream import SimFrameSource

    pipeline = load_models("", "", stride=2)
    schedule = pipeline.schedule
    source = SimFrameSource(320, 240, seed=21)
    frames = [source.next_frame() for _ in range(4)]
    for level in range(schedule.num_levels):
        result = pipeline.process(frames[0].rgb, schedule.utilization_of(level), 0.3)
        assert result.level == level and pipeline.detector.level == level
        assert pipeline.gesture_recognizer.net.level == level
    found = 0
    for frame in frames:
        result = pipeline.process(frame.rgb, 1.0, 0.3)
        labels = {d.label for d in result.detections}
        found += sum(1 for c in frame.class_ids if CLASS_NAMES[int(c)] in labels)
    assert found >= sum(len(f.class_ids) for f in frames) // 2
    gestures = [pipeline.process(f.rgb, 1.0, 0.3).gesture for f in frames * 6]
    emitted = [g for g in gestures if g is not None]
    assert emitted and all(g.label in pipeline.gesture_recognizer.net.classes for g in emitted)
    # the announcement threshold comes from the gesture card (its recognizer block) unless given
    from tnn_ros.models import gesture_card_settings, read_card, shipped_model_path

    card = read_card(shipped_model_path("gesture"))
    expected = card.get("recognizer", {}).get("min_confidence", 0.5)
    assert gesture_card_settings() == ({"min_confidence": expected} if "recognizer" in card else {})
    assert pipeline.gesture_recognizer.min_confidence == pipeline.card_min_confidence == expected
    pipeline.set_gesture_min_confidence(0.7)
    assert pipeline.gesture_recognizer.min_confidence == 0.7
    pipeline.set_gesture_min_confidence(None)  # back to the card's
    assert pipeline.gesture_recognizer.min_confidence == expected


@pytest.mark.parametrize("block", [{"min_confidence": 1.5}, {"min_confidence": "high"}, [0.4]])
def test_gesture_card_recognizer_settings_are_checked(tmp_path, block):
    import shutil

    from tnn_ros.models import ModelFileError, gesture_card_settings, shipped_model_path

    weights = tmp_path / "gesture.pt"
    shutil.copy(shipped_model_path("gesture"), weights)
    card = json.loads(shipped_model_path("gesture").with_name("gesture.card.json").read_text())
    card.pop("recognizer", None)
    (tmp_path / "gesture.card.json").write_text(json.dumps(card))
    assert gesture_card_settings(weights) == {}  # none named: the recognizer's own default
    card["recognizer"] = block
    (tmp_path / "gesture.card.json").write_text(json.dumps(card))
    with pytest.raises(ModelFileError, match="recognizer"):
        gesture_card_settings(weights)


def test_gesture_frames_are_centre_cropped_not_squashed():
    """A 4:3 frame reaches the square gesture net centre-cropped (hands keep their shape)."""
    from tnn_ros.models.gesture import resize_frame

    class _Recognizer:
        def __init__(self, net, stride=4, smoothing=2, min_confidence=0.5):
            self.net, self.stride, self.smoothing = net, stride, smoothing
            self.min_confidence = min_confidence
            self.frames = []

        def push(self, frame):
            self.frames.append(frame)

        def reset(self):
            self.frames.clear()

    class _Net:
        frame_size = (48, 48)

    pipeline = PerceptionPipeline(object(), _Recognizer(_Net()), LevelSchedule(8))
    frame = np.zeros((240, 320, 3), np.uint8)
    frame[:, :40] = 255  # a bar at the left edge: outside the centred 240x240 window
    shrunk = pipeline._gesture_frame(frame)
    assert shrunk.shape == (48, 48, 3)
    assert shrunk.max() == 0, "the left bar must be cropped away, not squashed into the frame"
    np.testing.assert_array_equal(shrunk, resize_frame(frame, (48, 48)))
    pipeline.set_gesture_smoothing(3)
    assert pipeline.gesture_recognizer.smoothing == 3 and pipeline.gesture_recognizer.stride == 4


def test_pipeline_passes_the_camera_stamp_to_the_recognizer_and_rebuilds_it_for_gap_filling():
    from tnn_ros.models.gesture_recognizer import GestureRecognizer

    class _Net(_RecordingModel):
        classes = ["no_gesture", "wave"]
        clip_length = 2
        frame_size = (4, 4)

        def predict_clip(self, frames):
            return np.array([0.9, 0.1], np.float32)

    recognizer = GestureRecognizer(_Net(1), stride=1, smoothing=1, streaming=False, max_gap_fill=2)
    pipeline = PerceptionPipeline(_Detector(1), recognizer, LevelSchedule(1))
    frame = np.zeros((8, 8, 3), np.uint8)
    for t in (0.0, 0.1, 0.2, 0.3, 0.4, 0.6):  # the frame of t=0.5 was dropped before the pipeline
        pipeline.process(frame, 1.0, 0.3, stamp_s=t)
    assert pipeline.gesture_recognizer.filled_frames == 1
    pipeline.set_gesture_gap_fill(0)
    rebuilt = pipeline.gesture_recognizer
    assert rebuilt is not recognizer and rebuilt.max_gap_fill == 0
    assert (rebuilt.stride, rebuilt.smoothing, rebuilt.event_gate) == (1, 1, False)
    # a recognizer without stamps support (push(frame) only) still works without a stamp
    plain, _, fake = _pipeline()
    plain.process(np.zeros((30, 40, 3), np.uint8), 1.0, 0.3)
    assert len(fake.frames) == 1
