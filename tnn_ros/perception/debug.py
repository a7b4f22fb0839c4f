"""Debug overlay: detection boxes, the gesture label and the operating point drawn on the frame."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

_PALETTE = [
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
]


def draw_debug(rgb: np.ndarray, result: Any, gesture_label: str | None = None) -> np.ndarray:
    """Return a copy of ``rgb`` with ``result``'s boxes, level and gesture label drawn on it.

    ``gesture_label`` overrides ``result.gesture`` so the last announced gesture stays visible on
    the frames between recognizer strides.
    """
    canvas = np.ascontiguousarray(rgb).copy()
    height, width = canvas.shape[:2]
    for detection in result.detections:
        x1, y1, x2, y2 = (int(round(v)) for v in detection.box)
        colour = _PALETTE[int(detection.class_id) % len(_PALETTE)]
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, 2)
        cv2.putText(
            canvas,
            f"{detection.label} {detection.score:.2f}",
            (x1, max(y1 - 4, 10)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4,
            colour,
            1,
            cv2.LINE_AA,
        )
    if gesture_label is None and result.gesture is not None:
        gesture_label = f"{result.gesture.label} {result.gesture.confidence:.2f}"
    status = f"L{result.level} u={result.utilization_applied:.2f} {result.latency_ms:.1f}ms"
    if gesture_label:
        status += f" | {gesture_label}"
    cv2.putText(
        canvas, status, (4, height - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA
    )
    return canvas
