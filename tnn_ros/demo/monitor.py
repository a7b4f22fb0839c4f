"""The demo's own node: watches the run for the live status line and sets controller parameters.

It only listens and calls the controller's standard ``set_parameters`` service, exactly as an
operator moving an rqt_reconfigure slider would; it never reaches into the other nodes.
"""

from __future__ import annotations

import json
import math
import threading
import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.srv import GetParameters, SetParameters
from rclpy.node import Node
from rclpy.parameter import Parameter, parameter_value_to_python
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import BatteryState, Temperature
from std_msgs.msg import Float32, String


class DemoMonitor(Node):
    """Subscribes to the run's topics in ``namespace`` and keeps the latest value of each."""

    def __init__(self, namespace: str = "/tnn", controller: str = "controller", **kwargs: Any) -> None:
        super().__init__("tnn_demo_monitor", namespace=namespace, **kwargs)
        self._lock = threading.Lock()
        self.latest: dict[str, Any] = {}
        self.frames = 0
        self.first_resource_time: float | None = None  # monotonic time of the first battery message
        self._mission_start: float | None = None  # monotonic time the sim mission started
        self._mission_waiting = False  # diagnostics said the mission clock has not started yet
        self.controller_fqn = f"{namespace.rstrip('/')}/{controller}"
        qos = qos_profile_sensor_data  # best effort matches reliable and best-effort publishers
        self.create_subscription(BatteryState, "battery", self._on_battery, qos)
        self.create_subscription(
            Temperature, "thermal", lambda m: self._set("temperature", m.temperature), qos
        )
        for topic, key in (
            ("deadline_ms", "deadline"),
            ("utilization_setpoint", "setpoint"),
            ("utilization_applied", "applied"),
            ("latency_ms", "latency"),
        ):
            self.create_subscription(Float32, topic, lambda m, k=key: self._set(k, m.data), qos)
        self.create_subscription(String, "detections/json", self._on_detections, qos)
        self.create_subscription(String, "gesture/json", self._on_gesture, qos)
        self.create_subscription(String, "controller/reason", lambda m: self._set("reason", m.data), qos)
        self._resource_monitor_status = f"{namespace.rstrip('/')}/resource_monitor"
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, qos)
        self._set_client = self.create_client(SetParameters, f"{self.controller_fqn}/set_parameters")
        self._get_client = self.create_client(GetParameters, f"{self.controller_fqn}/get_parameters")

    def _set(self, key: str, value: Any) -> None:
        with self._lock:
            self.latest[key] = value

    def _on_battery(self, msg: BatteryState) -> None:
        with self._lock:
            if self.first_resource_time is None:
                self.first_resource_time = time.monotonic()
            self.latest["battery"] = msg.percentage

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        """Track the sim mission's clock from the resource monitor's ``mission_time_s`` value."""
        for status in msg.status:
            if not status.name.startswith(self._resource_monitor_status):
                continue
            for item in status.values:
                if item.key == "mission_time_s":
                    try:
                        mission_s = float(item.value)
                    except ValueError:  # "not started" / "waiting for first frame"
                        with self._lock:
                            self._mission_waiting = self._mission_start is None
                        return
                    with self._lock:
                        self._mission_start = time.monotonic() - mission_s
                        self._mission_waiting = False
                    return

    def mission_started(self) -> bool:
        """Whether the resource monitor's diagnostics reported a running mission clock."""
        with self._lock:
            return self._mission_start is not None

    def mission_time(self) -> float | None:
        """Seconds since the sim mission started (from diagnostics; else since the first battery message).

        None before any resource message, and while the diagnostics say the mission has not started
        (``mission_start: first_frame`` waiting for the first measured frame).
        """
        with self._lock:
            if self._mission_start is None and self._mission_waiting:
                return None
            start = self._mission_start if self._mission_start is not None else self.first_resource_time
        return None if start is None else time.monotonic() - start

    def _on_detections(self, msg: String) -> None:
        try:
            payload = json.loads(msg.data)
            count, level = len(payload["detections"]), int(payload["level"])
            labels = sorted({d["label"] for d in payload["detections"]})
        except (ValueError, KeyError, TypeError):
            return  # the analysis counts bad payloads; the status line just skips them
        with self._lock:
            self.frames += 1
            self.latest.update(detections=count, level=level, labels=labels)

    def _on_gesture(self, msg: String) -> None:
        try:
            payload = json.loads(msg.data)
            self._set("gesture", f"{payload['label']} {float(payload['confidence']):.2f}")
        except (ValueError, KeyError, TypeError):
            return

    # -- controller parameters (what an rqt slider does) -----------------------------------------

    def subscribed_by(self, topic: str, node_name: str) -> bool:
        """Whether ``node_name`` subscribes to ``topic`` (relative to this node's namespace)."""
        full = topic if topic.startswith("/") else f"{self.get_namespace().rstrip('/')}/{topic}"
        return any(info.node_name == node_name for info in self.get_subscriptions_info_by_topic(full))

    def controller_ready(self) -> bool:
        """True once the controller's parameter services are reachable."""
        return self._set_client.service_is_ready() and self._get_client.service_is_ready()

    def set_controller_parameters(self, values: dict[str, Any], timeout_s: float = 5.0) -> str | None:
        """Set controller parameters; returns None on success or the reason it failed.

        Must not be called from the executor thread (it waits for the answer).
        """
        if not self._set_client.wait_for_service(timeout_sec=timeout_s):
            return f"{self.controller_fqn}/set_parameters not available"
        request = SetParameters.Request(
            parameters=[Parameter(name, value=value).to_parameter_msg() for name, value in values.items()]
        )
        response = self._call(self._set_client, request, timeout_s)
        if response is None:
            return f"{self.controller_fqn}/set_parameters did not answer in {timeout_s} s"
        failed = [r.reason or "rejected" for r in response.results if not r.successful]
        return "; ".join(failed) if failed else None

    def get_controller_parameter(self, name: str, timeout_s: float = 5.0) -> Any:
        """The current value of one controller parameter (None when unavailable)."""
        if not self._get_client.wait_for_service(timeout_sec=timeout_s):
            return None
        response = self._call(self._get_client, GetParameters.Request(names=[name]), timeout_s)
        if response is None or not response.values:
            return None
        return parameter_value_to_python(response.values[0])

    @staticmethod
    def _call(client, request, timeout_s: float):
        future = client.call_async(request)
        done = threading.Event()
        future.add_done_callback(lambda _f: done.set())
        if not done.wait(timeout_s):
            future.cancel()
            return None
        return future.result()

    # -- status line ------------------------------------------------------------------------------

    def status_text(self, mission_time_s: float, label: str = "") -> str:
        """One readable line: time, battery, temperature, deadline, setpoint, level, latency, outputs."""
        with self._lock:
            v = dict(self.latest)
            frames = self.frames

        def num(key: str, fmt: str, scale: float = 1.0) -> str:
            value = v.get(key)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                return "--"
            return format(value * scale, fmt)

        objects = f"{v.get('detections', 0)} obj" if "detections" in v else "-- obj"
        parts = [
            f"{label}t={mission_time_s:5.1f}s" if label else f"t={mission_time_s:5.1f}s",
            f"batt {num('battery', '4.1f', 100.0)}%",
            f"temp {num('temperature', '4.1f')}C",
            f"deadline {num('deadline', '3.0f')}ms",
            f"set {num('setpoint', '.2f')}",
            f"applied {num('applied', '.2f')} L{v.get('level', '-')}",
            f"lat {num('latency', '5.1f')}ms",
            f"{objects}",
            f"gesture {v.get('gesture', '--')}",
            f"frames {frames}",
        ]
        reason = v.get("reason")
        return "  ".join(parts) + (f"  [{reason}]" if reason else "")
