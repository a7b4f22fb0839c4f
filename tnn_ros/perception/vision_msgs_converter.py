"""Detections -> vision_msgs/Detection2DArray (Jazzy field layout), without importing vision_msgs.

The message module is passed in, so the node uses the real ``vision_msgs.msg`` where it is installed
and the unit tests use a faithful fake of its field layout where it is not.
"""

from __future__ import annotations

from typing import Any


def import_vision_msgs() -> Any | None:
    """``vision_msgs.msg`` if installed, else None (the node then publishes JSON only)."""
    try:
        from vision_msgs import msg
    except ImportError:
        return None
    return msg


def to_detection2d_array(detections: list, header: Any, vision_msgs_msg: Any) -> Any:
    """Build a ``Detection2DArray``: one ``Detection2D`` per detection, box as centre + size.

    ``hypothesis.class_id`` carries the class label (vision_msgs uses strings for class ids);
    every detection gets the image's header so it can be matched to its frame.
    """
    array = vision_msgs_msg.Detection2DArray()
    array.header = header
    for detection in detections:
        x1, y1, x2, y2 = (float(v) for v in detection.box)
        item = vision_msgs_msg.Detection2D()
        item.header = header
        hypothesis = vision_msgs_msg.ObjectHypothesisWithPose()
        hypothesis.hypothesis.class_id = str(detection.label)
        hypothesis.hypothesis.score = float(detection.score)
        item.results.append(hypothesis)
        item.bbox.center.position.x = (x1 + x2) / 2.0
        item.bbox.center.position.y = (y1 + y2) / 2.0
        item.bbox.center.theta = 0.0
        item.bbox.size_x = x2 - x1
        item.bbox.size_y = y2 - y1
        array.detections.append(item)
    return array
