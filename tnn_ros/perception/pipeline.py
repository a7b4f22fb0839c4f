"""One frame through the throttled detector and gesture recognizer (ROS-free).

The node owns threads, messages and parameters; this class owns the order of work for one frame:
map the utilization to a level, switch both models to it, detect, feed the gesture clip buffer,
time it. Keeping it here lets plain pytest (and the benchmark) run exactly what the node runs.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tnn_ros.models.gesture import resize_frame


@dataclass
class FrameResult:
    """What one processed frame produced and at which operating point."""

    detections: list
    gesture: Any | None  # GestureResult when the recognizer emitted on this frame
    level: int
    utilization_applied: float
    latency_ms: float  # detector + gesture, wall clock, this frame
    detector_ms: float = 0.0
    gesture_ms: float = 0.0
    image_size: tuple[int, int] = (0, 0)  # (width, height) of the processed image
    extra: dict = field(default_factory=dict)


def _switch_level(model: Any, schedule: Any, level: int, utilization: float) -> None:
    """Put ``model`` at the operating point ``level`` of ``schedule`` stands for.

    Models trained with the schedule's level count take the level index directly (O(1)); a model
    with a different count maps the level's utilization through its own schedule.
    """
    if getattr(model, "num_levels", None) == schedule.num_levels:
        model.set_level(level)
    else:
        model.set_utilization(utilization)


class PerceptionPipeline:
    """Detector every frame, gesture recognizer on a sliding clip, both at one shared level.

    ``detector`` follows the ``ThrottleableDetector`` contract (``predict``, ``set_level``),
    ``gesture_recognizer`` the ``GestureRecognizer`` one (``push``, ``reset``, ``net``) or is None,
    ``schedule`` is the ``LevelSchedule`` that maps utilization to a level.
    """

    def __init__(
        self,
        detector: Any,
        gesture_recognizer: Any | None,
        schedule: Any,
        card_min_confidence: float | None = None,
    ) -> None:
        if detector is None:
            raise ValueError("PerceptionPipeline needs a detector")
        self.detector = detector
        self.gesture_recognizer = gesture_recognizer
        self.schedule = schedule
        # the gesture card's announcement threshold, for "back to the card's" (default: the
        # recognizer's own threshold)
        if card_min_confidence is None:
            card_min_confidence = getattr(gesture_recognizer, "min_confidence", 0.5)
        self.card_min_confidence = float(card_min_confidence)
        net = getattr(gesture_recognizer, "net", None)
        # Frames are shrunk to the gesture net's size before buffering: a clip of 16 full-size
        # frames would hold hundreds of MB at 4K, and the net resizes to this size anyway.
        self._gesture_frame_size = tuple(getattr(net, "frame_size", ())) or None

    def process(
        self,
        rgb: np.ndarray,
        utilization: float,
        score_threshold: float,
        run_gesture: bool = True,
        stamp_s: float | None = None,
    ) -> FrameResult:
        """Run one ``HxWx3`` uint8 RGB frame at ``utilization`` (clamped to [0, 1]; NaN rejected).

        ``stamp_s``: the camera stamp of the frame (seconds), so the gesture recognizer can fill the
        slots of frames dropped before it (None: unknown).
        """
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected HxWx3 uint8 RGB, got shape {rgb.shape} dtype {rgb.dtype}")
        if not math.isfinite(utilization):
            raise ValueError(f"utilization must be finite, got {utilization}")
        level = self.schedule.level_for(utilization)
        applied = float(self.schedule.utilization_of(level))
        start = time.perf_counter()
        _switch_level(self.detector, self.schedule, level, applied)
        detections = self.detector.predict(rgb, score_threshold=score_threshold)
        detector_done = time.perf_counter()
        gesture = None
        if run_gesture and self.gesture_recognizer is not None:
            _switch_level(self.gesture_recognizer.net, self.schedule, level, applied)
            frame = self._gesture_frame(rgb)
            # a recognizer without frame-gap handling takes the frame alone
            push = self.gesture_recognizer.push
            gesture = push(frame) if stamp_s is None else push(frame, stamp_s=stamp_s)
        end = time.perf_counter()
        return FrameResult(
            detections=list(detections),
            gesture=gesture,
            level=level,
            utilization_applied=applied,
            latency_ms=(end - start) * 1e3,
            detector_ms=(detector_done - start) * 1e3,
            gesture_ms=(end - detector_done) * 1e3,
            image_size=(rgb.shape[1], rgb.shape[0]),
        )

    def reset_gesture(self) -> None:
        """Forget the buffered clip (after a pause, a stride change or re-enabling gestures)."""
        if self.gesture_recognizer is not None:
            self.gesture_recognizer.reset()

    def set_gesture_stride(self, stride: int) -> None:
        """Rebuild the recognizer with a new stride around the same net (the clip restarts)."""
        self._rebuild_recognizer(stride=stride)

    def set_gesture_smoothing(self, smoothing: int) -> None:
        """Rebuild the recognizer to smooth over ``smoothing`` windows (the clip restarts)."""
        self._rebuild_recognizer(smoothing=smoothing)

    def set_gesture_gap_fill(self, max_gap_fill: int) -> None:
        """Rebuild the recognizer to fill at most ``max_gap_fill`` dropped frames per gap (0: off)."""
        self._rebuild_recognizer(max_gap_fill=max_gap_fill)

    def set_gesture_min_confidence(self, min_confidence: float | None) -> None:
        """Rebuild the recognizer with this announcement threshold; None = the gesture card's."""
        value = self.card_min_confidence if min_confidence is None else float(min_confidence)
        self._rebuild_recognizer(min_confidence=value)

    def set_gesture_streaming(self, enabled: bool) -> None:
        """Run the gesture net frame by frame when ``enabled`` and the net allows it, else whole clips."""
        from tnn_ros.models.gesture_recognizer import supports_streaming

        recognizer = self.gesture_recognizer
        if recognizer is not None:
            self._rebuild_recognizer(streaming=bool(enabled) and supports_streaming(recognizer.net))

    def _rebuild_recognizer(self, **changes: int) -> None:
        recognizer = self.gesture_recognizer
        if recognizer is None or all(getattr(recognizer, k, None) == v for k, v in changes.items()):
            return
        from tnn_ros.models.gesture_recognizer import recognizer_settings

        settings = recognizer_settings(recognizer)
        settings.update(changes)
        self.gesture_recognizer = type(recognizer)(recognizer.net, **settings)

    def _gesture_frame(self, rgb: np.ndarray) -> np.ndarray:
        if self._gesture_frame_size is None:
            return rgb
        # Centre-crop to the net's aspect ratio, then shrink: the net was trained on undistorted hands.
        return resize_frame(rgb, self._gesture_frame_size)

    def warmup(self) -> None:
        """Run every level once so no frame pays oneDNN's first-call cost later."""
        for model in (self.detector, getattr(self.gesture_recognizer, "net", None)):
            if model is not None and hasattr(model, "warmup"):
                model.warmup()
