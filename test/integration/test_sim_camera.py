"""sim_camera over real DDS (loopback): frames + ground truth with matching stamps, live parameters."""

import json

import numpy as np
import pytest
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image
from std_msgs.msg import String

from tnn_ros.nodes.sim_camera import SimCameraNode
from tnn_ros.perception import decode_image

from ros_utils import RosHarness, unique_namespace

pytestmark = [pytest.mark.integration, pytest.mark.smoke]


def _camera(ros, namespace, **params):
    overrides = [Parameter(name, value=value) for name, value in params.items()]
    return ros.add(SimCameraNode(context=ros.context, namespace=namespace, parameter_overrides=overrides))


def test_images_and_ground_truth_share_stamps():
    ns = unique_namespace("simcam")
    with RosHarness() as ros:
        images = ros.collect(f"{ns}/image", Image)
        truths = ros.collect(f"{ns}/ground_truth/json", String)
        _camera(ros, ns, fps=30.0, width=96, height=64, encoding="bgr8", seed=5, frame_id="sim")
        assert ros.wait_for(lambda: len(images) >= 5 and len(truths) >= 5, timeout_s=15.0)
        image_stamps = {(m.header.stamp.sec, m.header.stamp.nanosec) for m in images}
        for truth in map(lambda m: json.loads(m.data), truths[:5]):
            stamp = divmod(truth["stamp_ns"], 1_000_000_000)
            assert stamp in image_stamps
            assert truth["frame_id"] == "sim" and isinstance(truth["objects"], list)
        first = images[0]
        assert (first.width, first.height, first.encoding, first.header.frame_id) == (96, 64, "bgr8", "sim")
        rgb = decode_image(first.height, first.width, first.encoding, first.step, first.data)
        assert rgb.std() > 5  # a rendered scene, not a blank frame


def test_parameters_have_ranges_and_reject_bad_values():
    ns = unique_namespace("simcam")
    with RosHarness() as ros:
        camera = _camera(ros, ns, width=64, height=48)
        fqn = camera.get_fully_qualified_name()
        fps, width = ros.describe_parameters(fqn, ["fps", "width"])
        assert fps.floating_point_range[0].from_value == 0.5
        assert width.integer_range[0].to_value == 4096
        rejected = ros.set_parameters(fqn, {"encoding": "yuv422"})[0]
        assert not rejected.successful and "encoding" in rejected.reason
        assert not ros.set_parameters(fqn, {"width": 8})[0].successful
        images = ros.collect(f"{ns}/image", Image)
        assert ros.set_parameters(fqn, {"width": 80, "encoding": "mono8"})[0].successful
        assert ros.wait_for(lambda: any(m.width == 80 and m.encoding == "mono8" for m in images), 10.0)
        mono = next(m for m in images if m.width == 80)
        assert np.frombuffer(mono.data, np.uint8).size == 80 * 48


def test_wait_for_subscribers_holds_frame_zero_until_both_topics_are_matched():
    ns = unique_namespace("simcam")
    with RosHarness() as ros:
        images = ros.collect(f"{ns}/image", Image)
        camera = _camera(ros, ns, fps=30.0, width=64, height=48, wait_for_subscribers=True)
        # the image topic is subscribed, the ground truth not yet: nothing is published
        assert not ros.wait_for(lambda: camera.frames_published > 0, timeout_s=1.5)
        assert images == []
        truths = ros.collect(f"{ns}/ground_truth/json", String)
        assert ros.wait_for(lambda: len(truths) >= 3 and len(images) >= 3, timeout_s=15.0)
        assert json.loads(truths[0].data)["seq"] == 0  # the recording starts at frame 0
