"""Simulated camera node: synthetic frames with objects and a gesturing hand, plus exact ground truth.

Publishes ``image`` (sensor_msgs/Image) and ``ground_truth/json`` (std_msgs/String) with the same
header stamp, at ``fps``. The frames come from :class:`tnn_ros.sim.stream.SimFrameSource`.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import String

from tnn_ros import topics
from tnn_ros.nodes._spin import run_node
from tnn_ros.nodes.common import replace_timer
from tnn_ros.nodes.params import LiveParameters, ParamSpec
from tnn_ros.perception.codec import SUPPORTED_ENCODINGS, encode_image
from tnn_ros.perception.formatting import stamp_to_ns
from tnn_ros.sim.stream import MIN_SIZE, SimFrameSource

PARAMETERS = (
    ParamSpec("fps", 15.0, "Frames per second", min_value=0.5, max_value=120.0),
    ParamSpec("width", 320, "Frame width in pixels", min_value=MIN_SIZE, max_value=4096),
    ParamSpec("height", 240, "Frame height in pixels", min_value=MIN_SIZE, max_value=4096),
    ParamSpec("encoding", "rgb8", "Image encoding", choices=SUPPORTED_ENCODINGS),
    ParamSpec("seed", 0, "Scene and gesture script seed", min_value=0, max_value=2**31 - 1),
    ParamSpec("num_objects", 4, "Drifting objects in view", min_value=0, max_value=20),
    ParamSpec("gestures", True, "Overlay the scripted gesturing hand"),
    ParamSpec("frame_id", "camera", "header.frame_id of the images"),
    ParamSpec(
        "wait_for_subscribers",
        False,
        "Hold the first frame until image and ground_truth/json each have a matched subscriber "
        "(a recording then starts at frame 0 instead of losing the frames published during discovery)",
    ),
)

# A size or content change restarts the stream from frame 0 with a new source.
_SOURCE_PARAMETERS = {"fps", "width", "height", "seed", "num_objects", "gestures"}


class SimCameraNode(Node):
    """Node `sim_camera`: synthetic `image` + `ground_truth/json` at a fixed rate."""

    def __init__(self, node_name: str = "sim_camera", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.params = LiveParameters(self, PARAMETERS, on_change=self._on_parameters)
        # Reliable publisher: matches both best-effort and reliable image subscribers.
        image_qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=2, reliability=ReliabilityPolicy.RELIABLE
        )
        self.image_pub = self.create_publisher(Image, topics.IMAGE, image_qos)
        self.truth_pub = self.create_publisher(String, topics.GROUND_TRUTH_JSON, 10)
        self.frames_published = 0
        self.waiting_logged = False
        self.source = self._make_source()
        self.timer = replace_timer(self, None, self.params["fps"], self._tick)
        self.get_logger().info(
            f"publishing {self.params['width']}x{self.params['height']} {self.params['encoding']} "
            f"at {self.params['fps']} fps"
        )

    def _make_source(self) -> SimFrameSource:
        return SimFrameSource(
            self.params["width"],
            self.params["height"],
            seed=self.params["seed"],
            fps=self.params["fps"],
            num_objects=self.params["num_objects"],
            gestures=self.params["gestures"],
        )

    def _on_parameters(self, changed: dict) -> None:
        if _SOURCE_PARAMETERS & set(changed):
            self.source = self._make_source()
        if "fps" in changed:
            self.timer = replace_timer(self, self.timer, self.params["fps"], self._tick)

    def _subscribers_missing(self) -> list[str]:
        """Topics still without a matched subscriber while ``wait_for_subscribers`` holds frame 0."""
        if self.frames_published or not self.params["wait_for_subscribers"]:
            return []
        publishers = ((topics.IMAGE, self.image_pub), (topics.GROUND_TRUTH_JSON, self.truth_pub))
        return [name for name, pub in publishers if pub.get_subscription_count() < 1]

    def _tick(self) -> None:
        missing = self._subscribers_missing()
        if missing:
            if not self.waiting_logged:
                self.get_logger().info(f"waiting for a subscriber on {', '.join(missing)} before frame 0")
                self.waiting_logged = True
            return
        frame = self.source.next_frame()
        encoding = self.params["encoding"]
        step, data = encode_image(frame.rgb, encoding)
        msg = Image(
            height=frame.rgb.shape[0], width=frame.rgb.shape[1], encoding=encoding, step=step, data=data
        )
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.params["frame_id"]
        stamp_ns = stamp_to_ns(msg.header.stamp.sec, msg.header.stamp.nanosec)
        self.image_pub.publish(msg)
        self.truth_pub.publish(String(data=json.dumps(frame.ground_truth(stamp_ns, msg.header.frame_id))))
        self.frames_published += 1


def main(args: list[str] | None = None) -> int:
    """Run the simulated camera until Ctrl-C; returns 2 when its start-up parameters are invalid."""
    return run_node(SimCameraNode, args)


if __name__ == "__main__":
    sys.exit(main())
