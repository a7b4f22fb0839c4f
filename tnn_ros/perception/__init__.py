"""Perception core, no ROS: image codec, the per-frame pipeline, JSON payloads, vision_msgs, debug."""

from tnn_ros.perception.codec import SUPPORTED_ENCODINGS, ImageDecodeError, decode_image, encode_image
from tnn_ros.perception.cost import CostMeter, CostTotals, FrameCost
from tnn_ros.perception.debug import draw_debug
from tnn_ros.perception.formatting import detections_to_json, gesture_to_json, stamp_to_ns
from tnn_ros.perception.pipeline import FrameResult, PerceptionPipeline
from tnn_ros.perception.vision_msgs_converter import import_vision_msgs, to_detection2d_array

__all__ = [
    "SUPPORTED_ENCODINGS", "CostMeter", "CostTotals", "FrameCost", "ImageDecodeError", "decode_image",
    "encode_image", "draw_debug",
    "detections_to_json", "gesture_to_json", "stamp_to_ns", "FrameResult", "PerceptionPipeline",
    "import_vision_msgs", "to_detection2d_array",
]
