"""Perception core, no ROS: image codec, the per-frame pipeline, cost meter, JSON payloads, vision_msgs.

The pipeline (and with it torch) is imported on first use, so the codec and the payload helpers stay
light for processes that never run a network (the simulated camera, the bag tools).
"""

from importlib import import_module

from tnn_ros.perception.codec import SUPPORTED_ENCODINGS, ImageDecodeError, decode_image, encode_image
from tnn_ros.perception.cost import CostMeter, CostTotals, FrameCost
from tnn_ros.perception.debug import draw_debug
from tnn_ros.perception.formatting import detections_to_json, gesture_to_json, stamp_to_ns
from tnn_ros.perception.vision_msgs_converter import import_vision_msgs, to_detection2d_array

_LAZY = {"FrameResult": "tnn_ros.perception.pipeline", "PerceptionPipeline": "tnn_ros.perception.pipeline"}

__all__ = [
    "SUPPORTED_ENCODINGS",
    "CostMeter",
    "CostTotals",
    "FrameCost",
    "ImageDecodeError",
    "decode_image",
    "encode_image",
    "draw_debug",
    "detections_to_json",
    "gesture_to_json",
    "stamp_to_ns",
    "FrameResult",
    "PerceptionPipeline",
    "import_vision_msgs",
    "to_detection2d_array",
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
