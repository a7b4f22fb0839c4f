"""Perception lifecycle node: throttled detector + gesture recognizer on the newest camera frame.

A thin rclpy shell around :class:`tnn_ros.perception.PerceptionPipeline`: it converts messages,
declares parameters and keeps counters; every rule lives in the ROS-free ``tnn_ros.perception``.

Lifecycle (as ros2/demos lifecycle_py): ``configure`` loads both models and warms up every level,
``activate`` starts the worker thread, ``deactivate`` stops it, ``cleanup`` frees the models. A failing
``configure`` logs why and leaves the node unconfigured. With ``auto_activate`` (default) the node
configures and activates itself at start-up, for launches without a lifecycle manager.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from typing import Any

from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Float32, String

from tnn_ros import topics
from tnn_ros.models.gesture_recognizer import DEFAULT_SMOOTHING, DEFAULT_STRIDE
from tnn_ros.nodes._spin import run_node
from tnn_ros.nodes.common import LOG_THROTTLE_S, OK, WARN, DiagnosticsPublisher
from tnn_ros.nodes.params import LiveParameters, ParamSpec
from tnn_ros.perception.codec import DEFAULT_MAX_PIXELS, ImageDecodeError, decode_image, encode_image
from tnn_ros.perception.cost import CostMeter, CostTotals, FrameCost, WorkerClock, thread_ids
from tnn_ros.perception.debug import draw_debug
from tnn_ros.perception.formatting import detections_to_json, gesture_to_json, stamp_to_ns
from tnn_ros.perception.gating import MODES, UtilizationGate
from tnn_ros.perception.loading import engine_info, load_models, torch_threads
from tnn_ros.perception.pipeline import PerceptionPipeline
from tnn_ros.perception.vision_msgs_converter import import_vision_msgs, to_detection2d_array

PARAMETERS = (
    ParamSpec(
        "mode",
        "auto",
        "auto: follow utilization_setpoint; manual: follow the utilization parameter",
        choices=MODES,
    ),
    ParamSpec("utilization", 1.0, "Utilization used in manual mode", min_value=0.0, max_value=1.0),
    ParamSpec("score_threshold", 0.3, "Minimum detection score published", min_value=0.0, max_value=1.0),
    ParamSpec("gesture.enabled", True, "Run the gesture recognizer"),
    ParamSpec(
        "gesture.stride",
        DEFAULT_STRIDE,
        "Frames between gesture classifications of the sliding clip",
        min_value=1,
        max_value=32,
    ),
    ParamSpec(
        "gesture.smoothing",
        DEFAULT_SMOOTHING,
        "Gesture windows averaged before a gesture is announced",
        min_value=1,
        max_value=16,
    ),
    ParamSpec(
        "gesture.streaming",
        True,
        "Run the gesture net frame by frame when it allows it (temporal='valid'); false: whole clips",
    ),
    ParamSpec(
        "gesture.max_gap_fill",
        3,
        "Dropped camera frames (seen from the header stamps) filled with the last frame, per gap; 0: off",
        min_value=0,
        max_value=15,
    ),
    ParamSpec(
        "gesture.min_confidence",
        -1.0,
        "Smoothed probability a gesture needs to be announced; negative: the gesture model card's value "
        "(0.5 when the card names none)",
        min_value=-1.0,
        max_value=1.0,
    ),
    ParamSpec("num_threads", 2, "torch intra-op threads of the perception worker", min_value=1, max_value=64),
    ParamSpec(
        "stale_timeout_s",
        2.0,
        "Auto mode: a setpoint older than this falls back to safe_utilization",
        min_value=0.05,
        max_value=600.0,
    ),
    ParamSpec(
        "safe_utilization",
        0.5,
        "Utilization used in auto mode without a fresh setpoint",
        min_value=0.0,
        max_value=1.0,
    ),
    ParamSpec("detector_model", "", "Detector state dict (.pt); empty = shipped model. Applied on configure"),
    ParamSpec("gesture_model", "", "Gesture state dict (.pt); empty = shipped model. Applied on configure"),
    ParamSpec(
        "backend",
        "torch",
        "Inference backend of both models: torch | onnxruntime (per-level ONNX "
        "graphs; falls back to torch with a logged reason if not installed). Applied on configure",
        choices=("torch", "onnxruntime"),
    ),
    ParamSpec(
        "image_reliability",
        "best_effort",
        "QoS reliability of the image subscription. Applied on configure",
        choices=("best_effort", "reliable"),
    ),
    ParamSpec(
        "max_image_pixels",
        DEFAULT_MAX_PIXELS,
        "Frames with more pixels are dropped (counted)",
        min_value=1,
        max_value=8192 * 8192,
    ),
    ParamSpec(
        "auto_activate",
        True,
        "Configure and activate at start-up (no lifecycle manager needed)",
        read_only=True,
    ),
)

# The model runs in a worker thread. torch releases the GIL inside every op and must take it back
# before the next one; with Python's default 5 ms switch interval, any busy thread of the same process
# (the executor, other nodes in `bringup`) delays every op by up to 5 ms. Measured in bringup on 2
# cores: 22 frames in 15 s with p90 1.8 s at 5 ms, 225 frames with p90 42 ms at 0.2 ms.
GIL_SWITCH_INTERVAL_S = 0.0002
# Frames after the worker starts (or num_threads changes) during which new threads are adopted as
# the helpers of the worker's torch pool, whose CPU time counts into cpu_ms.
HELPER_DISCOVERY_FRAMES = 3


class PerceptionNode(LifecycleNode):
    """Managed node `perception`: `image` + `utilization_setpoint` in; detections and gestures out."""

    def __init__(self, node_name: str = "perception", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_INTERVAL_S))  # process-wide
        self.params = LiveParameters(self, PARAMETERS, on_change=self._on_parameters)
        self.gate = UtilizationGate(self.params["safe_utilization"], self.params["stale_timeout_s"])
        self.pipeline: PerceptionPipeline | None = None
        self.vision_msgs = import_vision_msgs()
        self.counters: Counter = Counter()
        self.drops: Counter = Counter()
        self.last_result = None
        self.last_gesture_label = ""
        self._latency_sum_ms = 0.0
        self.cost = CostTotals()
        self._pending: Image | None = None
        self._pending_received_s = 0.0  # time.monotonic() when the pending frame arrived
        self._frame_ready = threading.Condition()
        self._active = threading.Event()
        self._stop = threading.Event()
        self._pipeline_lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self.worker_torch_threads = 0  # what torch reports in the worker thread (diagnostics)
        self.worker_clock: WorkerClock | None = None  # worker + torch helper threads' CPU clock
        self._inputs: list = []
        self._outputs: dict[str, Any] = {}
        self.diagnostics = DiagnosticsPublisher(self, "perception", self._diagnostic_status)
        if self.params["auto_activate"]:
            self.trigger_configure()
            if self.state == "inactive":
                self.trigger_activate()

    # -- lifecycle ---------------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """Current lifecycle state label: unconfigured | inactive | active | finalized."""
        return self._state_machine.current_state[1]

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            torch_threads(self.params["num_threads"])
            # load_detector / load_gesture warm up every level before they return.
            pipeline = load_models(
                self.params["detector_model"],
                self.params["gesture_model"],
                self.params["gesture.stride"],
                smoothing=self.params["gesture.smoothing"],
                backend=self.params["backend"],
                num_threads=self.params["num_threads"],
                log=self.get_logger().warning,
                gesture_streaming=self.params["gesture.streaming"],
                gesture_max_gap_fill=self.params["gesture.max_gap_fill"],
                gesture_min_confidence=_min_confidence(self.params["gesture.min_confidence"]),
            )
        except Exception as error:  # any load failure: report it and stay unconfigured
            self.get_logger().error(f"configure failed: {type(error).__name__}: {error}")
            self.counters["configure_failures"] += 1
            return TransitionCallbackReturn.FAILURE
        with self._pipeline_lock:
            self.pipeline = pipeline
        self._create_interfaces()
        info = engine_info(pipeline)
        self.get_logger().info(
            f"configured: backend {info['backend']} ({info['provider']}), "
            f"detector {pipeline.schedule.num_levels} levels, "
            f"gesture {_gesture_mode(pipeline)} (stream on {_gesture_stream_backend(pipeline)})"
        )
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop.clear()
        self._active.set()
        self._worker = threading.Thread(target=self._worker_loop, name="perception_worker", daemon=True)
        self._worker.start()
        self.get_logger().info("active: processing frames")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_worker()
        if self.pipeline is not None:
            self.pipeline.reset_gesture()
        self.get_logger().info("inactive: frames are ignored")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return super().on_shutdown(state)

    def destroy_node(self) -> None:
        self._stop_worker()
        super().destroy_node()

    def _release(self) -> None:
        self._stop_worker()
        self._destroy_interfaces()
        with self._pipeline_lock:
            self.pipeline = None
        self.gate.reset()

    def _stop_worker(self) -> None:
        self._active.clear()
        self._stop.set()
        with self._frame_ready:
            self._pending = None
            self._frame_ready.notify_all()
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(timeout=10.0)
        self._worker = None

    def _create_interfaces(self) -> None:
        reliability = (
            ReliabilityPolicy.RELIABLE
            if self.params["image_reliability"] == "reliable"
            else ReliabilityPolicy.BEST_EFFORT
        )
        # Depth 1: an image that arrives while one waits replaces it, so no backlog can build.
        image_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=reliability)
        # No QoS event handlers on what cleanup destroys: rclpy 7.1's MultiThreadedExecutor adds a
        # waitable to its wait set even after the waitable was destroyed by a callback in another
        # thread ("cannot use Destroyable"), which kills the executor (seen in bringup-style spinning).
        sub_events = SubscriptionEventCallbacks(use_default_callbacks=False)
        pub_events = PublisherEventCallbacks(use_default_callbacks=False)
        self._inputs = [
            self.create_subscription(
                Image, topics.IMAGE, self._on_image, image_qos, event_callbacks=sub_events
            ),
            self.create_subscription(
                Float32, topics.UTILIZATION_SETPOINT, self._on_setpoint, 10, event_callbacks=sub_events
            ),
        ]
        publishers = {
            "detections_json": (String, topics.DETECTIONS_JSON),
            "gesture_json": (String, topics.GESTURE_JSON),
            "utilization_applied": (Float32, topics.UTILIZATION_APPLIED),
            "latency_ms": (Float32, topics.LATENCY_MS),
            "cpu_ms": (Float32, topics.CPU_MS),
            "queue_ms": (Float32, topics.QUEUE_MS),
            "debug_image": (Image, topics.DEBUG_IMAGE),
        }
        self._outputs = {
            key: self.create_lifecycle_publisher(msg_type, topic, 10, event_callbacks=pub_events)
            for key, (msg_type, topic) in publishers.items()
        }
        if self.vision_msgs is not None:
            self._outputs["detections"] = self.create_lifecycle_publisher(
                self.vision_msgs.Detection2DArray, topics.DETECTIONS, 10, event_callbacks=pub_events
            )

    def _destroy_interfaces(self) -> None:
        for subscription in self._inputs:
            self.destroy_subscription(subscription)
        for publisher in self._outputs.values():
            self.destroy_lifecycle_publisher(publisher)
        self._inputs = []
        self._outputs = {}

    # -- parameters --------------------------------------------------------------------------------

    def _on_parameters(self, changed: dict) -> None:
        if "safe_utilization" in changed:
            self.gate.safe_utilization = changed["safe_utilization"]
        if "stale_timeout_s" in changed:
            self.gate.stale_timeout_s = changed["stale_timeout_s"]
        # num_threads: the worker applies it in its own thread before the next frame (see _worker_loop).
        gesture_params = {"gesture.stride", "gesture.smoothing", "gesture.enabled", "gesture.streaming"}
        if (gesture_params | {"gesture.max_gap_fill", "gesture.min_confidence"}) & set(changed):
            with self._pipeline_lock:
                if self.pipeline is not None:
                    self.pipeline.set_gesture_stride(self.params["gesture.stride"])
                    self.pipeline.set_gesture_smoothing(self.params["gesture.smoothing"])
                    self.pipeline.set_gesture_streaming(self.params["gesture.streaming"])
                    self.pipeline.set_gesture_gap_fill(self.params["gesture.max_gap_fill"])
                    self.pipeline.set_gesture_min_confidence(
                        _min_confidence(self.params["gesture.min_confidence"])
                    )
                    self.pipeline.reset_gesture()
        deferred = {"detector_model", "gesture_model", "image_reliability", "backend"} & set(changed)
        if deferred and self.state != "unconfigured":
            self.get_logger().info(f"{', '.join(sorted(deferred))} take effect at the next configure")

    # -- callbacks ---------------------------------------------------------------------------------

    def _on_setpoint(self, msg: Float32) -> None:
        warning = self.gate.offer_setpoint(msg.data, time.monotonic())
        if warning:
            self.get_logger().warning(warning, throttle_duration_sec=LOG_THROTTLE_S)

    def _on_image(self, msg: Image) -> None:
        self.counters["frames_received"] += 1
        if not self._active.is_set():
            self.drops["inactive"] += 1
            return
        with self._frame_ready:
            if self._pending is not None:
                self.drops["superseded"] += 1
            self._pending = msg
            self._pending_received_s = time.monotonic()
            self._frame_ready.notify()

    def _worker_loop(self) -> None:
        clock = WorkerClock()
        self.worker_clock = clock
        discovering = HELPER_DISCOVERY_FRAMES
        while not self._stop.is_set():
            with self._frame_ready:
                if self._pending is None:
                    self._frame_ready.wait(timeout=0.1)
                msg, self._pending = self._pending, None
                received_s = self._pending_received_s
            if msg is None or not self._active.is_set():
                continue
            # torch's thread count is per OS thread once set: it has to be set where the model runs,
            # and right before the frame, so a change made while the worker waited applies to it.
            if self.worker_torch_threads != self.params["num_threads"]:
                self.worker_torch_threads = torch_threads(self.params["num_threads"])
                discovering = HELPER_DISCOVERY_FRAMES
            before = thread_ids() if discovering else None
            try:
                self.process_frame(msg, received_s, clock)
            except Exception as error:  # the worker must outlive any one frame (e.g. a publish failing)
                if self._stop.is_set():
                    return  # shutting down: the publishers are going away, not a frame failure
                self._drop("processing_error", f"frame failed: {type(error).__name__}: {error}")
            if before is not None:
                clock.discover(before)
                discovering -= 1

    def process_frame(
        self, msg: Image, received_s: float | None = None, clock: WorkerClock | None = None
    ) -> None:
        """Decode, run at the current utilization and publish one frame; bad frames are counted.

        The frame's cost (CPU time of decode + inference on ``clock``, the worker thread and its torch
        helpers, default the calling thread alone; and the queueing delay since ``received_s``, a
        ``time.monotonic()`` stamp) is measured here, in the thread doing the work.
        """
        meter = CostMeter(received_s, thread_clock_ns=clock or time.thread_time_ns)
        try:
            rgb = decode_image(
                msg.height,
                msg.width,
                msg.encoding,
                msg.step,
                msg.data,
                max_pixels=self.params["max_image_pixels"],
            )
        except ImageDecodeError as error:
            self._drop(error.reason, f"dropped image: {error}")
            return
        decision = self.gate.decide(self.params["mode"], self.params["utilization"], time.monotonic())
        with self._pipeline_lock:
            if self.pipeline is None:
                return
            try:
                result = self.pipeline.process(
                    rgb,
                    decision.utilization,
                    self.params["score_threshold"],
                    run_gesture=self.params["gesture.enabled"],
                    stamp_s=stamp_to_ns(msg.header.stamp.sec, msg.header.stamp.nanosec) / 1e9,
                )
            except Exception as error:  # a model failure costs this frame, never the node
                self._drop("processing_error", f"processing failed: {type(error).__name__}: {error}")
                return
        cost = meter.stop()
        self.cost.add(cost)
        self.counters["frames_processed"] += 1
        self.counters[f"utilization_source_{decision.source}"] += 1
        self._latency_sum_ms += result.latency_ms
        self.last_result = result
        self._publish(msg, rgb, result, cost)

    def _drop(self, reason: str, text: str) -> None:
        self.drops[reason] += 1
        self.get_logger().warning(
            f"{text} ({self.drops[reason]} dropped for {reason})", throttle_duration_sec=LOG_THROTTLE_S
        )

    def _publish(self, msg: Image, rgb, result, cost: FrameCost | None = None) -> None:
        publishers = self._outputs
        if not publishers or self._stop.is_set():  # deactivating / shutting down: the frame is dropped
            return
        stamp_ns = stamp_to_ns(msg.header.stamp.sec, msg.header.stamp.nanosec)
        publishers["detections_json"].publish(
            String(data=detections_to_json(result, stamp_ns, msg.header.frame_id, cost))
        )
        if result.gesture is not None:
            self.last_gesture_label = f"{result.gesture.label} {result.gesture.confidence:.2f}"
            publishers["gesture_json"].publish(String(data=gesture_to_json(result, stamp_ns)))
        publishers["utilization_applied"].publish(Float32(data=float(result.utilization_applied)))
        if cost is not None:
            # Before latency_ms: a controller subscribed in this order pairs them with the same frame.
            publishers["cpu_ms"].publish(Float32(data=float(cost.cpu_ms)))
            publishers["queue_ms"].publish(Float32(data=float(cost.queue_ms)))
        publishers["latency_ms"].publish(Float32(data=float(result.latency_ms)))
        if "detections" in publishers:
            publishers["detections"].publish(
                to_detection2d_array(result.detections, msg.header, self.vision_msgs)
            )
        debug = publishers["debug_image"]
        # Drawing and encoding cost a few ms: only while someone looks.
        if debug.get_subscription_count() > 0:
            canvas = draw_debug(rgb, result, self.last_gesture_label or None)
            step, data = encode_image(canvas, "rgb8")
            debug.publish(
                Image(
                    header=msg.header,
                    height=canvas.shape[0],
                    width=canvas.shape[1],
                    encoding="rgb8",
                    step=step,
                    data=data,
                )
            )

    # -- diagnostics -------------------------------------------------------------------------------

    def diagnostics_values(self) -> dict[str, str]:
        """Counters and the operating point as the key/value pairs published on /diagnostics."""
        processed = self.counters["frames_processed"]
        result = self.last_result
        values = {
            "state": self.state,
            "mode": self.params["mode"],
            "frames_received": self.counters["frames_received"],
            "frames_processed": processed,
            "frames_dropped": sum(self.drops.values()),
            "bad_setpoints_rejected": self.gate.rejected,
            "bad_setpoints_clamped": self.gate.clamped,
            "level": result.level if result else -1,
            "utilization_applied": f"{result.utilization_applied:.3f}" if result else "nan",
            "latency_ms_last": f"{result.latency_ms:.2f}" if result else "nan",
            "latency_ms_mean": f"{self._latency_sum_ms / processed:.2f}" if processed else "nan",
            "configure_failures": self.counters["configure_failures"],
            "torch_threads": self.worker_torch_threads,
            "gesture_mode": _gesture_mode(self.pipeline),
            "gesture_stream_backend": _gesture_stream_backend(self.pipeline),
            **{f"engine_{key}": value for key, value in engine_info(self.pipeline).items()},
        }
        values.update(self.cost.values())
        values["cpu_helper_threads"] = len(self.worker_clock.helpers) if self.worker_clock else 0
        values.update({f"dropped_{reason}": count for reason, count in sorted(self.drops.items())})
        return {key: str(value) for key, value in values.items()}

    def _diagnostic_status(self) -> tuple[int, str, dict]:
        values = self.diagnostics_values()
        dropped_bad = sum(c for r, c in self.drops.items() if r not in ("superseded", "inactive"))
        if self.state != "active":
            level, message = WARN, f"not processing ({self.state})"
        elif dropped_bad or self.gate.rejected:
            level, message = WARN, "running; bad input dropped"
        else:
            level, message = OK, "running"
        return level, message, values


def _min_confidence(value: float) -> float | None:
    """The gesture.min_confidence parameter: negative means the gesture model card's value (None)."""
    return None if value < 0.0 else float(value)


def _gesture_mode(pipeline: PerceptionPipeline | None) -> str:
    """``off``, ``clips`` (whole clip every stride) or ``streaming`` (frame by frame)."""
    recognizer = getattr(pipeline, "gesture_recognizer", None)
    if recognizer is None:
        return "off"
    return "streaming" if getattr(recognizer, "streaming", False) else "clips"


def _gesture_stream_backend(pipeline: PerceptionPipeline | None) -> str:
    """What runs the gesture stream: ``onnxruntime``, ``torch`` or ``none`` (clips or gestures off)."""
    recognizer = getattr(pipeline, "gesture_recognizer", None)
    return getattr(recognizer, "stream_backend", "none") if recognizer is not None else "none"


def main(args: list[str] | None = None) -> int:
    """Run the perception node until Ctrl-C; returns 2 when its start-up parameters are invalid."""
    return run_node(PerceptionNode, args)


if __name__ == "__main__":
    sys.exit(main())
