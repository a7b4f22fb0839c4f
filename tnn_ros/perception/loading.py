"""Building the perception pipeline from model files, and torch's per-thread settings (no ROS)."""

from __future__ import annotations

from collections.abc import Callable

from tnn_ros.models.gesture_recognizer import DEFAULT_SMOOTHING
from tnn_ros.perception.pipeline import PerceptionPipeline


def load_models(
    detector_path: str,
    gesture_path: str,
    stride: int,
    with_gesture: bool = True,
    smoothing: int = DEFAULT_SMOOTHING,
    backend: str = "torch",
    num_threads: int = 1,
    log: Callable[[str], None] | None = None,
    gesture_streaming: bool = True,
    gesture_max_gap_fill: int = 3,
    gesture_min_confidence: float | None = None,
) -> PerceptionPipeline:
    """Load the shipped or user models and build the pipeline; raises with a reason on failure.

    ``gesture_streaming``: run the gesture net frame by frame when it allows it (temporal="valid").
    ``gesture_max_gap_fill``: slots of dropped frames the recognizer fills per gap (0: off).
    ``gesture_min_confidence``: announcement threshold; None = the gesture card's (0.5 if it has none).
    """
    from tnn_ros.engines import create_engine
    from tnn_ros.models import (
        GestureRecognizer,
        gesture_card_settings,
        load_detector,
        load_gesture,
        shipped_model_path,
    )
    from tnn_ros.models.loading import DEFAULT_MIN_CONFIDENCE
    from tnn_ros.throttle import LevelSchedule

    def on_backend(model, path: str, name: str):
        return create_engine(
            model, backend, model_path=path or shipped_model_path(name), num_threads=num_threads, log=log
        )

    detector = on_backend(load_detector(detector_path or None), detector_path, "detector")
    recognizer = None
    card_min_confidence = DEFAULT_MIN_CONFIDENCE
    if with_gesture:
        net = on_backend(load_gesture(gesture_path or None), gesture_path, "gesture")
        card_min_confidence = gesture_card_settings(gesture_path or None).get(
            "min_confidence", DEFAULT_MIN_CONFIDENCE
        )
        # event_gate: one announcement per gesture (docs/gesture.md, "Online recognition")
        recognizer = GestureRecognizer(
            net,
            stride=stride,
            smoothing=smoothing,
            event_gate="no_gesture" in getattr(net, "classes", ()),  # a gate needs a rest class
            streaming=None if gesture_streaming else False,
            max_gap_fill=gesture_max_gap_fill,
            min_confidence=card_min_confidence if gesture_min_confidence is None else gesture_min_confidence,
        )
    schedule = getattr(detector, "schedule", None) or LevelSchedule(num_levels=detector.num_levels)
    return PerceptionPipeline(detector, recognizer, schedule, card_min_confidence=card_min_confidence)


def torch_threads(count: int) -> int:
    """Set torch's intra-op thread count for the calling thread (and threads started later).

    Threads that already ran torch keep their own count, so call this in the thread that runs the
    model. Returns the count torch reports afterwards.
    """
    import torch

    torch.set_num_threads(int(count))
    return torch.get_num_threads()


def engine_info(pipeline: PerceptionPipeline | None) -> dict[str, str]:
    """Backend and execution provider of the detector (and why a fallback happened), for diagnostics."""
    describe = getattr(getattr(pipeline, "detector", None), "engine_info", None)
    if describe is None:
        return {"backend": "none", "provider": "none"}
    info = describe()
    return {key: str(info[key]) for key in ("backend", "provider", "fallback_reason") if key in info}
