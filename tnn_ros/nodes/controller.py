"""Controller node: resource readings and measured latency in, a utilization setpoint and a reason out.

A thin rclpy shell around :class:`tnn_ros.control.Controller`: it converts messages, declares the
parameters (ranges + validation, applied live) and publishes on a fixed-rate timer. All callbacks
share the node's default mutually exclusive callback group, so the core is never entered twice at once.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from typing import Any, Mapping

from rclpy.node import Node
from sensor_msgs.msg import BatteryState, Temperature
from std_msgs.msg import Float32, String

from tnn_ros import topics
from tnn_ros.control import STRATEGIES, Controller, ControllerConfig, LatencyProfile, LatencyProfileError
from tnn_ros.control.state import (
    APPLIED,
    BATTERY,
    CPU_LOAD,
    DEADLINE,
    FRAME_CPU,
    LATENCY,
    QUEUE,
    THERMAL,
)
from tnn_ros.nodes._spin import run_node
from tnn_ros.nodes.common import LOG_THROTTLE_S, OK, WARN, DiagnosticsPublisher, replace_timer
from tnn_ros.nodes.params import LiveParameters, ParamSpec

DEFAULT_CARD = "detector.card.json"
DEFAULT_NUM_LEVELS = 8
DEFAULT_LEARNED_MODEL = "controller.pt"

_DEFAULTS = ControllerConfig()


def _unit(name: str, description: str) -> ParamSpec:
    return ParamSpec(name, getattr(_DEFAULTS, name), description, min_value=0.0, max_value=1.0)


PARAMETERS = (
    ParamSpec(
        "strategy",
        _DEFAULTS.strategy,
        "Control policy: manual | rule | deadline | auto (min of all caps) | learned (contextual bandit)",
        choices=STRATEGIES,
    ),
    _unit("manual_utilization", "Utilization commanded by the manual strategy / manual_override"),
    ParamSpec("manual_override", False, "Force manual_utilization whatever the strategy"),
    _unit("min_utilization", "Lowest utilization ever commanded (except safe_utilization)"),
    _unit("max_utilization", "Highest utilization ever commanded"),
    _unit("battery_low", "Battery fraction below which battery_low_cap applies"),
    _unit("battery_low_cap", "Utilization cap while the battery is low"),
    _unit("battery_critical", "Battery fraction below which battery_critical_cap applies"),
    _unit("battery_critical_cap", "Utilization cap while the battery is critical"),
    ParamSpec(
        "battery_hysteresis",
        _DEFAULTS.battery_hysteresis,
        "A battery cap is lifted only this far (fraction) above its threshold",
        min_value=0.0,
        max_value=0.5,
    ),
    ParamSpec(
        "thermal_warn_c",
        _DEFAULTS.thermal_warn_c,
        "Temperature (C) above which thermal_warn_cap applies",
        min_value=0.0,
        max_value=150.0,
    ),
    _unit("thermal_warn_cap", "Utilization cap while the temperature is above thermal_warn_c"),
    ParamSpec(
        "thermal_critical_c",
        _DEFAULTS.thermal_critical_c,
        "Temperature (C) above which thermal_critical_cap applies",
        min_value=0.0,
        max_value=150.0,
    ),
    _unit("thermal_critical_cap", "Utilization cap while the temperature is above thermal_critical_c"),
    ParamSpec(
        "thermal_hysteresis_c",
        _DEFAULTS.thermal_hysteresis_c,
        "A thermal cap is lifted only this far (C) below its threshold",
        min_value=0.0,
        max_value=30.0,
    ),
    _unit("cpu_load_high", "CPU load above which cpu_load_cap applies (1.0 disables)"),
    _unit("cpu_load_cap", "Utilization cap while the CPU load is high"),
    ParamSpec(
        "cpu_load_hysteresis",
        _DEFAULTS.cpu_load_hysteresis,
        "CPU cap hysteresis (fraction)",
        min_value=0.0,
        max_value=0.5,
    ),
    ParamSpec(
        "deadline_margin",
        _DEFAULTS.deadline_margin,
        "Predicted latency must stay below deadline * (1 - margin)",
        min_value=0.0,
        max_value=0.9,
    ),
    ParamSpec(
        "latency_ema_alpha",
        _DEFAULTS.latency_ema_alpha,
        "Weight of a new measured/predicted latency ratio in the profile scale",
        min_value=0.01,
        max_value=1.0,
    ),
    ParamSpec(
        "latency_quantile",
        _DEFAULTS.latency_quantile,
        "deadline: latency quantile per level that must fit the deadline (0.95 = p95)",
        min_value=0.5,
        max_value=0.999,
    ),
    ParamSpec(
        "latency_window",
        _DEFAULTS.latency_window,
        "deadline: frames kept per level for the quantile",
        min_value=2,
        max_value=4096,
    ),
    ParamSpec(
        "latency_horizon_s",
        _DEFAULTS.latency_horizon_s,
        "deadline: frames older than this no longer count",
        min_value=0.5,
        max_value=600.0,
    ),
    ParamSpec(
        "latency_min_samples",
        _DEFAULTS.latency_min_samples,
        "deadline: frames a level needs before its own quantile is used (else card x slowdown)",
        min_value=1,
        max_value=4096,
    ),
    ParamSpec(
        "contention_window_s",
        _DEFAULTS.contention_window_s,
        "deadline: recent window compared with older frames to notice a load change",
        min_value=0.05,
        max_value=60.0,
    ),
    ParamSpec(
        "contention_threshold",
        _DEFAULTS.contention_threshold,
        "deadline: median latency ratio (either way) that counts as a load change",
        min_value=1.05,
        max_value=10.0,
    ),
    ParamSpec(
        "frame_period_ms",
        _DEFAULTS.frame_period_ms,
        "deadline: camera frame period a level must keep up with (0 = estimate from the frames)",
        min_value=0.0,
        max_value=10000.0,
    ),
    ParamSpec("model_card", "", "Model card (JSON) with levels[].latency_ms; empty = shipped detector card"),
    ParamSpec(
        "stale_timeout_s",
        _DEFAULTS.stale_timeout_s,
        "An input silent this long puts the controller in safe mode",
        min_value=0.1,
        max_value=600.0,
    ),
    _unit("safe_utilization", "Utilization commanded in safe mode (stale inputs)"),
    ParamSpec(
        "max_step_per_s",
        _DEFAULTS.max_step_per_s,
        "auto: fastest rise of the setpoint (1/s)",
        min_value=0.01,
        max_value=10.0,
    ),
    ParamSpec(
        "max_step_down_per_s",
        _DEFAULTS.max_step_down_per_s,
        "auto: fastest fall of the setpoint (1/s)",
        min_value=0.01,
        max_value=10.0,
    ),
    ParamSpec(
        "accuracy_tolerance",
        _DEFAULTS.accuracy_tolerance,
        "auto: run the cheapest level whose card accuracy is within this much (absolute) of the "
        "best level's; 0 = always the highest level the constraints allow",
        min_value=0.0,
        max_value=1.0,
    ),
    ParamSpec("rate_hz", 10.0, "Setpoint publish rate", min_value=0.5, max_value=100.0),
    ParamSpec(
        "learned_model",
        "",
        "learned: controller file (tnn-train controller); empty = shipped "
        "models/controller.pt; missing or corrupt -> auto, with the reason logged once",
    ),
    ParamSpec(
        "learned_alpha",
        _DEFAULTS.learned_alpha,
        "learned: exploration weight of the upper confidence bound",
        min_value=0.0,
        max_value=10.0,
    ),
    ParamSpec(
        "learned_online",
        _DEFAULTS.learned_online,
        "learned: keep learning online from measured latency (off: the trained file as is)",
    ),
    ParamSpec(
        "learned_switch_margin",
        _DEFAULTS.learned_switch_margin,
        "learned: change level only when the bound improves by this much",
        min_value=0.0,
        max_value=1.0,
    ),
)

_CONFIG_FIELDS = {field.name for field in dataclasses.fields(ControllerConfig)}


def load_latency_profile(model_card: str, ema_alpha: float) -> tuple[LatencyProfile, str]:
    """The profile from ``model_card`` (or the shipped detector card), else a synthetic one; and why.

    An explicitly named card that cannot be read raises LatencyProfileError.
    """
    if model_card:
        profile = LatencyProfile.from_card(model_card, ema_alpha=ema_alpha)
        return profile, profile.description
    from tnn_ros.paths import find_package_file

    try:
        path = find_package_file("models", DEFAULT_CARD)
        profile = LatencyProfile.from_card(path, ema_alpha=ema_alpha)
        return profile, profile.description
    except (FileNotFoundError, LatencyProfileError) as error:
        from tnn_ros.throttle.levels import LevelSchedule

        levels = LevelSchedule(DEFAULT_NUM_LEVELS).utilizations()
        profile = LatencyProfile.synthetic(levels, ema_alpha=ema_alpha)
        return profile, f"synthetic profile ({error}); the online scale correction sets its scale"


def _config_from(values: Mapping[str, Any]) -> ControllerConfig:
    config = ControllerConfig.from_mapping({k: v for k, v in values.items() if k in _CONFIG_FIELDS})
    if config.strategy == "learned" and not config.learned_model:
        from tnn_ros.paths import find_package_file

        try:
            config = config.replace(learned_model=str(find_package_file("models", DEFAULT_LEARNED_MODEL)))
        except FileNotFoundError:
            pass  # the learned policy falls back to auto and says so
    return config


def mean_detection_score(payload: str) -> float:
    """Mean score of a ``detections/json`` payload's detections; NaN when none; raises on bad JSON."""
    detections = json.loads(payload).get("detections", [])
    scores = [float(d["score"]) for d in detections]
    return sum(scores) / len(scores) if scores else math.nan


def validate_parameters(values: Mapping[str, Any]) -> str | None:
    """Cross-parameter checks (min <= max, threshold order, ...) and a readable model card."""
    problem = _config_from(values).problem()
    if problem is None and values.get("model_card"):
        try:
            LatencyProfile.from_card(values["model_card"])
        except LatencyProfileError as error:
            return f"model_card: {error}"
    return problem


class ControllerNode(Node):
    """Node `controller`: resource readings and latency in, utilization_setpoint + reason out.

    Subscribes battery, thermal, deadline_ms, cpu_load, latency_ms, utilization_applied; publishes
    utilization_setpoint and controller/reason at rate_hz and /diagnostics at 1 Hz.
    """

    def __init__(self, node_name: str = "controller", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.params = LiveParameters(
            self, PARAMETERS, validate=validate_parameters, on_change=self._on_parameters
        )
        values = self.params.as_dict()
        profile, self.profile_source = load_latency_profile(values["model_card"], values["latency_ema_alpha"])
        self.get_logger().info(f"latency profile: {self.profile_source}")
        self.controller = Controller(_config_from(values), profile)
        self._report_fallback()

        self.setpoint_pub = self.create_publisher(Float32, topics.UTILIZATION_SETPOINT, 10)
        self.reason_pub = self.create_publisher(String, topics.CONTROLLER_REASON, 10)
        self.diagnostics = DiagnosticsPublisher(self, "controller", self._diagnostic_status)
        self.create_subscription(BatteryState, topics.BATTERY, self._on_battery, 10)
        self.create_subscription(Temperature, topics.THERMAL, self._on_thermal, 10)
        # utilization_applied, cpu_ms and queue_ms before latency_ms: when all are waiting, the
        # executor takes them in creation order, so a latency is paired with the utilization, CPU
        # time and queueing delay of its own frame (perception publishes them in that order).
        for topic, name in (
            (topics.DEADLINE_MS, DEADLINE),
            (topics.CPU_LOAD, CPU_LOAD),
            (topics.UTILIZATION_APPLIED, APPLIED),
            (topics.CPU_MS, FRAME_CPU),
            (topics.QUEUE_MS, QUEUE),
            (topics.LATENCY_MS, LATENCY),
        ):
            self.create_subscription(
                Float32, topic, lambda msg, name=name: self._on_value(name, msg.data), 10
            )
        # detection confidence is context for the learned strategy (ignored by the others)
        self.create_subscription(String, topics.DETECTIONS_JSON, self._on_detections, 10)
        self.timer = replace_timer(self, None, values["rate_hz"], self._tick)
        self.get_logger().info(f"controller up: strategy {values['strategy']}, {values['rate_hz']:.1f} Hz")

    # -- inputs -----------------------------------------------------------------------------------
    def _on_value(self, name: str, value: float) -> None:
        problem = self.controller.update(name, value, time.monotonic())
        if problem:
            dropped = self.controller.tracker.dropped[name]
            self.get_logger().warning(
                f"dropped input {problem} ({dropped} dropped so far)", throttle_duration_sec=LOG_THROTTLE_S
            )

    def _on_detections(self, msg: String) -> None:
        try:
            confidence = mean_detection_score(msg.data)
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            self.controller.tracker.dropped["confidence"] += 1
            self.get_logger().warning(
                f"dropped detections/json: {error!r}", throttle_duration_sec=LOG_THROTTLE_S
            )
            return
        if math.isnan(confidence):
            return  # no detections: confidence unknown, nothing to learn from
        problem = self.controller.observe_confidence(confidence)
        if problem:
            self.get_logger().warning(f"dropped input {problem}", throttle_duration_sec=LOG_THROTTLE_S)

    def _report_fallback(self) -> None:
        """Log once per (re)configuration why the learned strategy runs as auto."""
        reason = self.controller.fallback_reason
        if reason and reason != getattr(self, "_fallback_logged", None):
            self.get_logger().warning(reason)
        self._fallback_logged = reason

    def _on_battery(self, msg: BatteryState) -> None:
        if not msg.present and math.isnan(msg.percentage):
            self.controller.mark_heard(BATTERY, time.monotonic())  # no battery here: alive, nothing to cap
            return
        self._on_value(BATTERY, msg.percentage)

    def _on_thermal(self, msg: Temperature) -> None:
        if math.isnan(msg.temperature):  # NaN is "unknown" (no sensor): alive, no cap, no warning
            self.controller.mark_unknown(THERMAL, time.monotonic())
            return
        self._on_value(THERMAL, msg.temperature)

    # -- outputs ----------------------------------------------------------------------------------
    def _tick(self) -> None:
        decision = self.controller.step(time.monotonic())
        self.setpoint_pub.publish(Float32(data=float(decision.setpoint)))
        self.reason_pub.publish(String(data=decision.reason))

    def _diagnostic_status(self) -> tuple[int, str, dict]:
        values = self.controller.diagnostics(time.monotonic())
        values["latency_profile"] = self.profile_source
        decision = self.controller.last_decision
        if decision is not None and decision.binding == "stale":
            level, message = WARN, f"safe mode: {decision.reason}"
        elif values["dropped.total"]:
            level, message = WARN, f"bad inputs dropped: {values['dropped.total']}"
        else:
            level, message = OK, decision.reason if decision else "starting"
        return level, message, values

    # -- parameters -------------------------------------------------------------------------------
    def _on_parameters(self, changed: Mapping[str, Any]) -> None:
        values = self.params.as_dict()
        if "model_card" in changed:
            self.controller.profile, self.profile_source = load_latency_profile(
                values["model_card"], values["latency_ema_alpha"]
            )
            self.get_logger().info(f"latency profile: {self.profile_source}")
        if "rate_hz" in changed:
            self.timer = replace_timer(self, self.timer, values["rate_hz"], self._tick)
        self.controller.reconfigure(_config_from(values), time.monotonic())
        self._report_fallback()
        self.get_logger().info("parameters applied: " + ", ".join(f"{k}={v}" for k, v in changed.items()))


def main(args: list[str] | None = None) -> int:
    """Run the controller node until Ctrl-C; returns 2 when its start-up parameters are invalid."""
    return run_node(ControllerNode, args)


if __name__ == "__main__":
    sys.exit(main())
