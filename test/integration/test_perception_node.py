"""Perception node over real DDS (loopback) with the shipped models.

One node serves most tests (loading and warming up the models is the slow part); lifecycle and
failing-configure tests build their own.
"""

import json
import math
import threading
import time

import numpy as np
import pytest
import torch
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Float32, String
from torchvision.ops import box_iou

from tnn_ros.nodes.perception import PerceptionNode
from tnn_ros.perception import SUPPORTED_ENCODINGS, encode_image
from tnn_ros.sim.stream import SimFrameSource

from ros_utils import RosHarness, unique_namespace

pytestmark = pytest.mark.integration

NS = unique_namespace("perception_test")
LIFECYCLE_NS = unique_namespace("perception_lifecycle")  # apart from the shared node: unambiguous services
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


def _overrides(**params):
    return [Parameter(name, value=value) for name, value in params.items()]


def _image_msg(rgb, encoding="rgb8", padding=0, stamp_ns=0):
    step, data = encode_image(rgb, encoding, row_padding=padding)
    msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding=encoding, step=step, data=data)
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg.header.frame_id = "test_cam"
    return msg


class _Client:
    """Sends frames one at a time and waits for the node's answer for each (matched by stamp)."""

    def __init__(self, ros, node, ns=NS):
        self.ros, self.node = ros, node
        self.detections = ros.collect(f"{ns}/detections/json", String, RELIABLE)
        self.gestures = ros.collect(f"{ns}/gesture/json", String, RELIABLE)
        self.applied = ros.collect(f"{ns}/utilization_applied", Float32, RELIABLE)
        self.images = ros.publisher(f"{ns}/image", Image, RELIABLE)
        self.setpoints = ros.publisher(f"{ns}/utilization_setpoint", Float32, RELIABLE)
        self.stamp_ns = 1_000_000_000
        assert ros.wait_for(
            lambda: self.images.get_subscription_count() > 0 and self.setpoints.get_subscription_count() > 0,
            10.0,
        )
        time.sleep(0.2)

    def answer(self, stamp_ns):
        for msg in reversed(self.detections):
            payload = json.loads(msg.data)
            if payload["stamp_ns"] == stamp_ns:
                return payload
        return None

    def send(self, rgb, encoding="rgb8", padding=0, timeout_s=10.0):
        """Publish one frame, return its detections/json payload (None if it never came)."""
        self.stamp_ns += 1_000_000
        stamp_ns = self.stamp_ns
        self.images.publish(_image_msg(rgb, encoding, padding, stamp_ns))
        self.ros.wait_for(lambda: self.answer(stamp_ns) is not None, timeout_s)
        return self.answer(stamp_ns)

    def send_raw(self, msg):
        self.images.publish(msg)

    def setpoint(self, value):
        before, rejected = self.node.gate.setpoint_stamp, self.node.gate.rejected
        self.setpoints.publish(Float32(data=value))
        # The node has received it once its gate recorded it (or counted it as rejected).
        return self.ros.wait_for(
            lambda: self.node.gate.setpoint_stamp != before or self.node.gate.rejected != rejected, 5.0
        )


@pytest.fixture(scope="module")
def served():
    """(harness, node, client) shared by the tests of this module."""
    with RosHarness() as ros:
        node = ros.add(
            PerceptionNode(
                context=ros.context,
                namespace=NS,
                parameter_overrides=_overrides(
                    mode="manual", utilization=1.0, **{"gesture.stride": 2, "image_reliability": "reliable"}
                ),
            )
        )
        assert node.state == "active"
        yield ros, node, _Client(ros, node)


@pytest.fixture
def frames():
    source = SimFrameSource(320, 240, seed=11)
    return [source.next_frame() for _ in range(4)]


@pytest.fixture(scope="module")
def reference_detector():
    """The shipped detector loaded on its own, outside the node, at full width: the reference."""
    from tnn_ros.models import load_detector

    detector = load_detector()
    detector.set_level(detector.num_levels - 1)
    return detector


def _reference(detector, rgb, score_threshold):
    """Detections of the reference detector on the original array (no ROS message, no decoding)."""
    return [(d.label, d.score, list(d.box)) for d in detector.predict(rgb, score_threshold=score_threshold)]


def _got(payload):
    return [(d["label"], d["score"], d["box"]) for d in payload["detections"]]


def _same_detections(got, expected):
    """Equal up to the JSON rounding (scores to 4 decimals, boxes to 0.01 px)."""
    return len(got) == len(expected) and all(
        g_label == e_label
        and abs(g_score - e_score) <= 1e-3
        and all(abs(g - e) <= 0.05 for g, e in zip(g_box, e_box))
        for (g_label, g_score, g_box), (e_label, e_score, e_box) in zip(got, expected)
    )


@pytest.mark.parametrize("encoding", SUPPORTED_ENCODINGS)
@pytest.mark.parametrize("padding", [0, 12])
def test_every_encoding_and_padded_rows_give_the_detections_of_the_decoded_frame(
    served, frames, reference_detector, encoding, padding
):
    ros, node, client = served
    ros.set_parameters(node.get_fully_qualified_name(), {"mode": "manual", "utilization": 1.0})
    rgb = frames[0].rgb
    if encoding == "mono8":  # mono8 carries gray: the node must see the gray frame in all channels
        gray = rgb.mean(axis=2, keepdims=True).round().astype(np.uint8)
        rgb = np.repeat(gray, 3, axis=2)
    payload = client.send(rgb, encoding, padding)
    assert payload is not None, f"no detections/json for {encoding} padding {padding}"
    assert payload["image_size"] == [320, 240] and payload["frame_id"] == "test_cam"
    assert payload["utilization"] == 1.0
    assert payload["detections"], "the shipped detector found nothing in a synthetic scene"
    expected = _reference(reference_detector, rgb, node.params["score_threshold"])
    assert _same_detections(_got(payload), expected), (_got(payload), expected)
    if encoding == "mono8":
        return  # a gray frame is not the scene the ground truth describes (colours tell classes apart)
    # and they are the scene's objects (ground truth), not merely self-consistent
    found = box_iou(
        torch.tensor(frames[0].boxes, dtype=torch.float32),
        torch.tensor([d["box"] for d in payload["detections"]], dtype=torch.float32),
    )
    classes = [d["class_id"] for d in payload["detections"]]
    hits = sum(
        any(found[i, j] >= 0.5 and classes[j] == int(cls) for j in range(len(classes)))
        for i, cls in enumerate(frames[0].class_ids)
    )
    assert hits >= len(frames[0].class_ids) // 2, (hits, len(frames[0].class_ids))


def test_detections_match_the_ground_truth_objects(served, frames):
    _, node, client = served
    hits = 0
    for frame in frames:
        payload = client.send(frame.rgb)
        for obj_box, obj_id in zip(frame.boxes, frame.class_ids):
            for det in payload["detections"]:
                if det["class_id"] == int(obj_id) and _iou(det["box"], obj_box) >= 0.5:
                    hits += 1
                    break
    total = sum(len(f.boxes) for f in frames)
    assert hits >= total // 2, f"only {hits}/{total} objects found"


def _iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def test_gesture_json_is_published_from_the_clip_buffer(served):
    ros, node, client = served
    source = SimFrameSource(320, 240, seed=2)
    before = len(client.gestures)
    clip_length = node.pipeline.gesture_recognizer.net.clip_length
    for _ in range(clip_length + 4):
        client.send(source.next_frame().rgb)
    assert ros.wait_for(lambda: len(client.gestures) > before, 5.0)
    payload = json.loads(client.gestures[-1].data)
    classes = node.pipeline.gesture_recognizer.net.classes
    assert payload["label"] in classes and set(payload["probabilities"]) == set(classes)
    assert math.isclose(sum(payload["probabilities"].values()), 1.0, abs_tol=1e-2)
    assert payload["utilization"] == 1.0 and 0.0 <= payload["confidence"] <= 1.0
    assert client.answer(payload["stamp_ns"]) is not None  # stamps match the frame's


def test_the_shipped_gesture_net_streams_and_streaming_can_be_switched_off_live(served):
    ros, node, client = served
    fqn = node.get_fully_qualified_name()
    # The shipped net is temporal="valid" (docs/gesture.md), so the default runs it frame by frame.
    assert node.pipeline.gesture_recognizer.net.architecture["temporal"] == "valid"
    assert node.diagnostics_values()["gesture_mode"] == "streaming"
    source = SimFrameSource(320, 240, seed=6)
    try:
        assert ros.set_parameters(fqn, {"gesture.streaming": False})[0].successful
        assert node.diagnostics_values()["gesture_mode"] == "clips"
        before = len(client.gestures)
        for _ in range(node.pipeline.gesture_recognizer.net.clip_length + 4):
            client.send(source.next_frame().rgb)
        assert ros.wait_for(lambda: len(client.gestures) > before, 5.0)  # clips still announce
    finally:
        assert ros.set_parameters(fqn, {"gesture.streaming": True})[0].successful
    assert node.diagnostics_values()["gesture_mode"] == "streaming"


def test_gesture_min_confidence_comes_from_the_card_and_can_be_set_live(served):
    ros, node, _ = served
    fqn = node.get_fully_qualified_name()
    card = node.pipeline.card_min_confidence  # read from the gesture card at configure
    assert node.pipeline.gesture_recognizer.min_confidence == card
    (descriptor,) = ros.describe_parameters(fqn, ["gesture.min_confidence"])
    assert descriptor.floating_point_range[0].from_value == -1.0
    assert not ros.set_parameters(fqn, {"gesture.min_confidence": 1.5})[0].successful
    try:
        assert ros.set_parameters(fqn, {"gesture.min_confidence": 0.8})[0].successful
        assert node.pipeline.gesture_recognizer.min_confidence == 0.8
    finally:
        assert ros.set_parameters(fqn, {"gesture.min_confidence": -1.0})[0].successful
    assert node.pipeline.gesture_recognizer.min_confidence == card


def test_a_new_setpoint_applies_on_the_next_frame(served, frames):
    ros, node, client = served
    fqn = node.get_fully_qualified_name()
    assert ros.set_parameters(fqn, {"mode": "auto", "stale_timeout_s": 60.0})[0].successful
    schedule = node.pipeline.schedule
    try:
        for requested in (0.0, 1.0, 0.5, 0.0):
            assert client.setpoint(requested)
            payload = client.send(frames[1].rgb)
            level = schedule.level_for(requested)
            assert payload["level"] == level
            assert payload["utilization"] == pytest.approx(schedule.utilization_of(level), abs=1e-4)
        assert ros.wait_for(
            lambda: client.applied and client.applied[-1].data == pytest.approx(schedule.utilization_of(0)),
            5.0,
        )
    finally:
        ros.set_parameters(fqn, {"mode": "manual"})


def test_stale_setpoint_falls_back_to_safe_utilization(served, frames):
    ros, node, client = served
    fqn = node.get_fully_qualified_name()
    schedule = node.pipeline.schedule
    assert all(
        r.successful
        for r in ros.set_parameters(fqn, {"mode": "auto", "stale_timeout_s": 0.3, "safe_utilization": 0.25})
    )
    try:
        assert client.setpoint(1.0)
        assert client.send(frames[0].rgb)["utilization"] == 1.0
        time.sleep(0.5)
        payload = client.send(frames[0].rgb)
        assert payload["level"] == schedule.level_for(0.25)
    finally:
        ros.set_parameters(fqn, {"mode": "manual", "stale_timeout_s": 2.0, "safe_utilization": 0.5})


def test_manual_mode_follows_the_utilization_parameter(served, frames):
    ros, node, client = served
    fqn = node.get_fully_qualified_name()
    schedule = node.pipeline.schedule
    for value in (0.0, 0.6, 1.0):
        assert all(r.successful for r in ros.set_parameters(fqn, {"mode": "manual", "utilization": value}))
        assert client.setpoint(1.0 - value)  # ignored in manual mode
        assert client.send(frames[2].rgb)["level"] == schedule.level_for(value)


def test_gesture_can_be_disabled_live_and_threads_follow_num_threads(served):
    ros, node, client = served
    fqn = node.get_fully_qualified_name()
    source = SimFrameSource(320, 240, seed=4)
    try:
        changes = {"gesture.enabled": False, "num_threads": 1}
        assert all(r.successful for r in ros.set_parameters(fqn, changes))
        assert client.send(source.next_frame().rgb) is not None
        assert node.worker_torch_threads == 1  # read back by torch in the worker thread
        before = len(client.gestures)
        for _ in range(24):
            assert client.send(source.next_frame().rgb) is not None
        time.sleep(0.2)
        assert len(client.gestures) == before
    finally:
        assert all(r.successful for r in ros.set_parameters(fqn, {"gesture.enabled": True, "num_threads": 2}))
    assert client.send(source.next_frame().rgb) is not None
    assert node.diagnostics_values()["torch_threads"] == "2"


def test_parameters_are_described_with_ranges(served):
    ros, node, _ = served
    names = [
        "utilization",
        "score_threshold",
        "gesture.stride",
        "num_threads",
        "stale_timeout_s",
        "safe_utilization",
        "max_image_pixels",
        "mode",
        "image_reliability",
        "auto_activate",
    ]
    described = dict(zip(names, ros.describe_parameters(node.get_fully_qualified_name(), names)))
    for name in ("utilization", "score_threshold", "stale_timeout_s", "safe_utilization"):
        assert described[name].floating_point_range, name
        assert described[name].description, name
    assert described["utilization"].floating_point_range[0].to_value == 1.0
    for name in ("gesture.stride", "num_threads", "max_image_pixels"):
        assert described[name].integer_range, name
    assert "manual" in described["mode"].additional_constraints
    assert "reliable" in described["image_reliability"].additional_constraints
    assert described["auto_activate"].read_only


@pytest.mark.parametrize(
    "name,value,why",
    [
        ("mode", "turbo", "mode"),
        ("utilization", 1.5, "utilization"),
        ("utilization", math.nan, "utilization"),
        ("score_threshold", -0.1, "score_threshold"),
        ("gesture.stride", 0, "gesture.stride"),
        ("num_threads", 0, "num_threads"),
        ("image_reliability", "sometimes", "image_reliability"),
        ("stale_timeout_s", 0.0, "stale_timeout_s"),
        ("gesture.enabled", "yes", "type"),
        ("max_image_pixels", 0, "max_image_pixels"),
        ("auto_activate", False, "auto_activate"),
    ],
)
def test_bad_parameter_values_are_rejected_with_a_reason(served, name, value, why):
    ros, node, _ = served
    before = node.params.as_dict()
    result = ros.set_parameters(node.get_fully_qualified_name(), {name: value})[0]
    assert not result.successful
    assert why in result.reason or "read-only" in result.reason.lower() or "read only" in result.reason
    assert node.params.as_dict() == before


def test_bad_input_is_dropped_counted_and_the_node_stays_up(served, frames):
    ros, node, client = served
    fqn = node.get_fully_qualified_name()
    rgb = frames[0].rgb
    good = _image_msg(rgb)
    bad = {
        "encoding": Image(height=240, width=320, encoding="yuv422", step=640, data=bytes(640 * 240)),
        "short_data": Image(height=240, width=320, encoding="rgb8", step=960, data=good.data[:-1]),
        "empty": Image(height=0, width=0, encoding="rgb8", step=0, data=b""),
        "bad_step": Image(height=240, width=320, encoding="rgb8", step=100, data=bytes(100 * 240)),
    }
    before = dict(node.drops)
    for reason, msg in bad.items():
        client.send_raw(msg)
        assert ros.wait_for(lambda: node.drops[reason] > before.get(reason, 0), 5.0), reason
    # A 4K UHD frame over a 1080p limit is refused before decoding ...
    assert ros.set_parameters(fqn, {"max_image_pixels": 1920 * 1080})[0].successful
    uhd = np.zeros((2160, 3840, 3), np.uint8)
    client.send_raw(_image_msg(uhd))
    assert ros.wait_for(lambda: node.drops["too_large"] > before.get("too_large", 0), 10.0)
    # ... and processed (resized by the detector) under the default 4K limit.
    assert ros.set_parameters(fqn, {"max_image_pixels": 4096 * 2160})[0].successful
    payload = client.send(uhd, timeout_s=20.0)
    assert payload is not None and payload["image_size"] == [3840, 2160]
    # NaN / inf setpoints are rejected, out-of-range ones clamped; all counted.
    rejected, clamped = node.gate.rejected, node.gate.clamped
    for value in (math.nan, math.inf, -math.inf, 7.0):
        assert client.setpoint(value)
    assert node.gate.rejected == rejected + 3 and node.gate.clamped == clamped + 1
    # still up and answering
    assert client.send(rgb) is not None
    values = node.diagnostics_values()
    assert int(values["dropped_encoding"]) >= 1 and int(values["bad_setpoints_rejected"]) >= 3


def test_diagnostics_are_published(served):
    ros, node, _ = served
    arrays = ros.collect("/diagnostics", DiagnosticArray)
    name = node.get_fully_qualified_name()
    assert ros.wait_for(lambda: any(s.name.startswith(name) for a in arrays for s in a.status), 5.0)
    status = next(s for a in arrays for s in a.status if s.name.startswith(name))
    keys = {kv.key for kv in status.values}
    expected = {"frames_processed", "frames_dropped", "bad_setpoints_rejected", "level", "latency_ms_mean"}
    assert expected <= keys


def test_newest_frame_only_no_backlog(served, frames):
    ros, node, client = served
    processed, superseded = node.counters["frames_processed"], node.drops["superseded"]
    received = node.counters["frames_received"]
    msgs = [_image_msg(frames[i % 4].rgb, stamp_ns=5_000_000_000 + i) for i in range(40)]
    for msg in msgs:
        client.send_raw(msg)
    last = 5_000_000_000 + 39
    assert ros.wait_for(lambda: client.answer(last) is not None, 10.0), "the newest frame was not processed"
    # Depth-1 queues drop old frames in DDS or in the node (counted as superseded): never all 40.
    done = node.counters["frames_processed"] - processed
    assert done < 40
    assert node.counters["frames_received"] - received == done + node.drops["superseded"] - superseded
    time.sleep(0.3)
    assert node._pending is None


def test_debug_image_only_while_subscribed(served, frames):
    ros, node, client = served
    assert node._outputs["debug_image"].get_subscription_count() == 0
    debug = ros.collect(f"{NS}/debug_image", Image, RELIABLE)
    assert ros.wait_for(lambda: node._outputs["debug_image"].get_subscription_count() > 0, 5.0)
    client.send(frames[0].rgb)
    assert ros.wait_for(lambda: len(debug) > 0, 5.0)
    assert (debug[0].width, debug[0].height, debug[0].encoding) == (320, 240, "rgb8")


def _change_state(ros, node_fqn, transition_id):
    request = ChangeState.Request()
    request.transition.id = transition_id
    return ros._call(ChangeState, f"{node_fqn}/change_state", request, 30.0).success


def _get_state(ros, node_fqn):
    return ros._call(GetState, f"{node_fqn}/get_state", GetState.Request(), 5.0).current_state.label


def test_lifecycle_transitions_through_the_services(frames):
    with RosHarness() as ros:
        node = ros.add(
            PerceptionNode(
                context=ros.context,
                namespace=LIFECYCLE_NS,
                parameter_overrides=(
                    _overrides(auto_activate=False, mode="manual", image_reliability="reliable")
                ),
            )
        )
        fqn = node.get_fully_qualified_name()
        assert _get_state(ros, fqn) == "unconfigured"
        assert _change_state(ros, fqn, Transition.TRANSITION_CONFIGURE)
        assert _get_state(ros, fqn) == "inactive"
        assert _change_state(ros, fqn, Transition.TRANSITION_ACTIVATE)
        assert _get_state(ros, fqn) == "active"
        client = _Client(ros, node, LIFECYCLE_NS)
        assert client.send(frames[0].rgb) is not None
        assert _change_state(ros, fqn, Transition.TRANSITION_DEACTIVATE)
        assert _get_state(ros, fqn) == "inactive"
        inactive = node.drops["inactive"]
        assert client.send(frames[0].rgb, timeout_s=1.0) is None
        assert node.drops["inactive"] > inactive
        assert _change_state(ros, fqn, Transition.TRANSITION_CLEANUP)
        assert _get_state(ros, fqn) == "unconfigured" and node.pipeline is None


def test_failing_configure_leaves_the_node_unconfigured_and_recoverable(tmp_path):
    bad_model = tmp_path / "not_a_model.pt"
    bad_model.write_bytes(b"this is not a state dict")
    with RosHarness() as ros:
        node = ros.add(
            PerceptionNode(
                context=ros.context,
                namespace=LIFECYCLE_NS,
                parameter_overrides=(_overrides(detector_model=str(tmp_path / "missing.pt"))),
            )
        )
        fqn = node.get_fully_qualified_name()
        # auto_activate tried, failed, and left it unconfigured
        assert node.state == "unconfigured" and node.counters["configure_failures"] == 1
        assert ros.set_parameters(fqn, {"detector_model": str(bad_model)})[0].successful
        assert not _change_state(ros, fqn, Transition.TRANSITION_CONFIGURE)
        assert _get_state(ros, fqn) == "unconfigured" and node.counters["configure_failures"] == 2
        assert ros.set_parameters(fqn, {"detector_model": ""})[0].successful
        assert _change_state(ros, fqn, Transition.TRANSITION_CONFIGURE)
        assert _get_state(ros, fqn) == "inactive"


def test_sim_camera_to_perception_outputs_match_ground_truth_stamps():
    from tnn_ros.nodes.sim_camera import SimCameraNode

    ns = unique_namespace("perception_e2e")
    with RosHarness() as ros:
        detections = ros.collect(f"{ns}/detections/json", String, RELIABLE)
        truths = ros.collect(f"{ns}/ground_truth/json", String, RELIABLE)
        ros.add(
            PerceptionNode(
                context=ros.context,
                namespace=ns,
                parameter_overrides=_overrides(mode="manual", utilization=1.0),
            )
        )
        ros.add(SimCameraNode(context=ros.context, namespace=ns, parameter_overrides=_overrides(fps=10.0)))
        assert ros.wait_for(lambda: len(detections) >= 5, 20.0)
        truth_by_stamp = {json.loads(m.data)["stamp_ns"]: json.loads(m.data) for m in truths}
        matched = [json.loads(m.data) for m in detections if json.loads(m.data)["stamp_ns"] in truth_by_stamp]
        assert len(matched) >= 4
        assert all(p["frame_id"] == "camera" and p["image_size"] == [320, 240] for p in matched)


class _Stream:
    """Publishes frames at ~20 Hz from a background thread; ``last_stamp`` is the newest one sent."""

    def __init__(self, publisher, rgb):
        self.publisher, self.rgb = publisher, rgb
        self.last_stamp = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        stamp = 10_000_000_000
        while not self._stop.wait(0.05):
            stamp += 1_000_000
            self.publisher.publish(_image_msg(self.rgb, stamp_ns=stamp))
            self.last_stamp = stamp

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5.0)


def test_lifecycle_deactivate_reactivate_cleanup_and_shutdown_while_frames_flow(frames):
    ns = unique_namespace("perception_lifecycle_stream")
    with RosHarness() as ros:
        node = ros.add(
            PerceptionNode(
                context=ros.context,
                namespace=ns,
                parameter_overrides=_overrides(
                    auto_activate=False,
                    mode="manual",
                    utilization=0.0,
                    image_reliability="reliable",
                    **{"gesture.enabled": False},
                ),
            )
        )
        fqn = node.get_fully_qualified_name()
        assert _change_state(ros, fqn, Transition.TRANSITION_CONFIGURE)
        assert _change_state(ros, fqn, Transition.TRANSITION_ACTIVATE)
        client = _Client(ros, node, ns)

        def stamps():
            return [json.loads(m.data)["stamp_ns"] for m in list(client.detections)]

        def answered_after(stamp):
            return any(s > stamp for s in stamps())

        with _Stream(client.images, frames[0].rgb) as stream:
            assert ros.wait_for(lambda: len(stamps()) >= 3, 30.0), "no answers while active"

            # deactivate: every frame sent after the transition returned goes unanswered, counted
            assert _change_state(ros, fqn, Transition.TRANSITION_DEACTIVATE)
            off_at, dropped = stream.last_stamp, node.drops["inactive"]
            assert ros.wait_for(lambda: node.drops["inactive"] >= dropped + 5, 10.0), "no frames arrive"
            assert not answered_after(off_at)

            # reactivate: answers resume, for frames sent after the transition
            assert _change_state(ros, fqn, Transition.TRANSITION_ACTIVATE)
            on_at = stream.last_stamp
            assert ros.wait_for(lambda: answered_after(on_at), 30.0), "no answers after reactivation"

            # deactivate + cleanup while frames flow: unconfigured, models released, nothing answered
            assert _change_state(ros, fqn, Transition.TRANSITION_DEACTIVATE)
            assert _change_state(ros, fqn, Transition.TRANSITION_CLEANUP)
            cleaned_at = stream.last_stamp
            assert _get_state(ros, fqn) == "unconfigured" and node.pipeline is None
            # configure + activate again: the same stream is answered again
            assert _change_state(ros, fqn, Transition.TRANSITION_CONFIGURE)
            assert not answered_after(cleaned_at)
            assert _change_state(ros, fqn, Transition.TRANSITION_ACTIVATE)
            again_at = stream.last_stamp
            assert ros.wait_for(lambda: answered_after(again_at), 60.0), "no answers after re-configure"

            # shutdown from active while frames flow: finalized, nothing answered afterwards
            assert _change_state(ros, fqn, Transition.TRANSITION_ACTIVE_SHUTDOWN)
            down_at = stream.last_stamp
            assert _get_state(ros, fqn) == "finalized" and node.pipeline is None
            answered = len(stamps())
            ros.wait_for(lambda: len(stamps()) > answered, 1.0)  # give a stray answer a chance to show
            assert not answered_after(down_at)
        assert node.drops.get("processing_error", 0) == 0


def test_measured_cost_is_published_per_frame(served, frames):
    """cpu_ms / queue_ms topics and JSON fields: the worker's thread CPU time, not the commanded level."""
    ros, node, client = served
    cpu = ros.collect(f"{NS}/cpu_ms", Float32, RELIABLE)
    queue = ros.collect(f"{NS}/queue_ms", Float32, RELIABLE)
    time.sleep(0.3)
    frames_before, cpu_before = node.cost.frames, node.cost.cpu_s
    payload = client.send(frames[1].rgb)
    assert payload is not None
    assert ros.wait_for(lambda: len(cpu) >= 1 and len(queue) >= 1, 5.0)
    # the payload, the topic and the running total describe the same measured frame
    assert payload["cpu_ms"] > 0.0 and payload["queue_ms"] >= 0.0
    assert cpu[-1].data == pytest.approx(payload["cpu_ms"], abs=1e-3)
    assert node.cost.frames == frames_before + 1
    assert node.cost.cpu_s - cpu_before == pytest.approx(payload["cpu_ms"] / 1e3, abs=1e-5)
    values = node.diagnostics_values()
    assert float(values["cpu_s_total"]) > 0.0 and values["cpu_ms_last"] != "nan"
