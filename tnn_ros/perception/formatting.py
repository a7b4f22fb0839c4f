"""The JSON payloads the perception node publishes on std_msgs/String (see docs/core_api.md)."""

from __future__ import annotations

import json
import math
from typing import Any


def _round(value: float, digits: int = 4) -> float:
    return round(float(value), digits)


def detection_to_dict(detection: Any) -> dict:
    """One ``Detection`` as the JSON object in ``detections[]``."""
    return {
        "class_id": int(detection.class_id),
        "label": str(detection.label),
        "score": _round(detection.score),
        "box": [_round(v, 2) for v in detection.box],
    }


def detections_to_json(result: Any, stamp_ns: int, frame_id: str, cost: Any = None) -> str:
    """The ``detections/json`` payload for a ``FrameResult``.

    With ``cost`` (a :class:`tnn_ros.perception.cost.FrameCost`) the payload also carries the frame's
    measured ``cpu_ms`` and ``queue_ms`` (null when unknown), so a bag of this topic alone has them.
    """
    payload = {
        "stamp_ns": int(stamp_ns),
        "frame_id": str(frame_id),
        "level": int(result.level),
        "utilization": _round(result.utilization_applied),
        "latency_ms": _round(result.latency_ms, 3),
        "image_size": [int(result.image_size[0]), int(result.image_size[1])],
        "detections": [detection_to_dict(d) for d in result.detections],
    }
    if cost is not None:
        payload["cpu_ms"] = _finite_or_none(cost.cpu_ms)
        payload["queue_ms"] = _finite_or_none(cost.queue_ms)
    return json.dumps(payload)


def _finite_or_none(value: float, digits: int = 3) -> float | None:
    return _round(value, digits) if math.isfinite(value) else None


def gesture_to_json(result: Any, stamp_ns: int) -> str:
    """The ``gesture/json`` payload for a ``FrameResult`` whose ``gesture`` is set."""
    gesture = result.gesture
    if gesture is None:
        raise ValueError("this frame produced no gesture result")
    return json.dumps(
        {
            "stamp_ns": int(stamp_ns),
            "label": str(gesture.label),
            "class_id": int(gesture.class_id),
            "confidence": _round(gesture.confidence),
            "probabilities": {str(k): _round(v) for k, v in gesture.probabilities.items()},
            "level": int(result.level),
            "utilization": _round(result.utilization_applied),
        }
    )


def stamp_to_ns(sec: int, nanosec: int) -> int:
    """A builtin_interfaces/Time as integer nanoseconds (the ``stamp_ns`` key of every payload)."""
    return int(sec) * 1_000_000_000 + int(nanosec)
