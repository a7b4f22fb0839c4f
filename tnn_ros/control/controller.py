"""The controller loop without ROS: inputs in, one Decision per tick out, counters for diagnostics."""

from __future__ import annotations

from typing import Any

from tnn_ros.control.config import ControllerConfig
from tnn_ros.control.latency import LatencyProfile, LatencyQuantiles
from tnn_ros.control.policies import (
    AutoPolicy,
    Policy,
    RulePolicy,
    StaleGuard,
    make_latency_model,
)
from tnn_ros.control.state import APPLIED, LATENCY, QUEUE, Decision, InputTracker
from tnn_ros.control.strategies import make_policy


class Controller:
    """Holds the inputs, the policy for the configured strategy and the latency profile.

    The node calls :meth:`update` for every message, :meth:`step` on its timer and
    :meth:`reconfigure` when parameters change; nothing here knows about ROS.
    ``manual_override`` forces the manual policy whatever the strategy (the demo's override window).
    Every measured frame latency (plus its queueing delay, when the ``queue`` input arrived just
    before it) goes into :attr:`latency` (per-level quantiles), which outlives strategy switches.
    """

    def __init__(self, config: ControllerConfig, latency_profile: LatencyProfile | None = None) -> None:
        self.config = config.validate()
        self.latency: LatencyQuantiles | None = None
        self._profile: LatencyProfile | None = None
        self._queue_ms: float | None = None  # queueing delay of the frame whose latency comes next
        self.profile = latency_profile
        self.tracker = InputTracker()
        self.policy: Policy = self._build()
        self._last_rule = _rule_policy_of(self.policy)
        self.last_decision: Decision | None = None
        self.ticks = 0

    @property
    def profile(self) -> LatencyProfile | None:
        """The card profile; setting it starts new latency quantiles over its levels."""
        return self._profile

    @profile.setter
    def profile(self, profile: LatencyProfile | None) -> None:
        self._profile = profile
        if profile is not None:
            profile.ema_alpha = self.config.latency_ema_alpha
        self.latency = make_latency_model(profile, self.config) if profile is not None else None
        if hasattr(self, "policy"):
            self.policy = self._build()

    @property
    def active_strategy(self) -> str:
        return "manual" if self.config.manual_override else self.config.strategy

    def _build(self) -> Policy:
        return make_policy(self.active_strategy, self.config, self.latency)

    @property
    def fallback_reason(self) -> str | None:
        """Why the configured strategy could not be built and ``auto`` runs instead (learned), or None."""
        policy = self.policy.inner if isinstance(self.policy, StaleGuard) else self.policy
        return getattr(policy, "fallback_reason", None)

    def reconfigure(self, config: ControllerConfig, now: float) -> None:
        """Switch to ``config`` (validated); the new policy starts from the last setpoint."""
        self.config = config.validate()
        if self.profile is not None:
            self.profile.ema_alpha = config.latency_ema_alpha
        if self.latency is not None and self._latency_settings_changed():
            self.latency = make_latency_model(self.latency.profile, self.config)  # new tuning: start over
        self.policy = self._build()
        if self.last_decision is not None:
            self.policy.reset(self.last_decision.setpoint, now)
        # Keep the hysteresis state across reconfigurations (manual windows included): a reading
        # inside a hysteresis band must not lift a cap just because a parameter changed.
        rule = _rule_policy_of(self.policy)
        if rule is not None:
            if self._last_rule is not None:
                for name in ("battery", "thermal", "cpu"):
                    getattr(rule, name).stage = getattr(self._last_rule, name).stage
            self._last_rule = rule

    def _latency_settings_changed(self) -> bool:
        latency, config = self.latency, self.config
        return (
            latency.quantile,
            latency.window,
            latency.horizon_s,
            latency.min_samples,
            latency.contention_window_s,
            latency.contention_on,
            latency.fixed_period_ms,
        ) != (
            config.latency_quantile,
            config.latency_window,
            config.latency_horizon_s,
            config.latency_min_samples,
            config.contention_window_s,
            config.contention_threshold,
            config.frame_period_ms,
        )

    def update(self, name: str, value: float, now: float) -> str | None:
        """Record one input value; returns why it was dropped, or None.

        A latency measurement (plus the queueing delay received just before it) goes into the
        per-level latency quantiles at the applied utilization, and corrects the card profile's
        EMA scale (diagnostics).
        """
        problem = self.tracker.update(name, value, now)
        inputs = self.tracker.inputs
        if name == QUEUE:
            self._queue_ms = inputs.queue_ms if problem is None else None
        if name == LATENCY:
            queue_ms, self._queue_ms = self._queue_ms, None
            if (
                problem is None
                and self.profile is not None
                and inputs.applied_utilization is not None
                and inputs.applied_utilization > 0.0
            ):
                self.profile.observe(inputs.applied_utilization, inputs.latency_ms)
                self.latency.observe(
                    inputs.applied_utilization, inputs.latency_ms + (queue_ms or 0.0), now, queue_ms or 0.0
                )
        return problem

    def observe_confidence(self, confidence: float) -> str | None:
        """Detection confidence (mean score of the newest frame) for policies that use it (learned).

        Returns why it was dropped (NaN / outside [0, 1]), or None.
        """
        policy = self.policy.inner if isinstance(self.policy, StaleGuard) else self.policy
        observe = getattr(policy, "observe_confidence", None)
        if observe is None:
            return None
        if not observe(confidence):
            self.tracker.dropped["confidence"] += 1
            return f"confidence: unusable value {confidence}"
        self.tracker.received["confidence"] += 1
        return None

    def mark_heard(self, name: str, now: float) -> None:
        self.tracker.mark_heard(name, now)

    def mark_unknown(self, name: str, now: float) -> None:
        """The sender of ``name`` is alive but has no value (NaN = unknown): see InputTracker."""
        self.tracker.mark_unknown(name, now)

    def step(self, now: float) -> Decision:
        """Decide the setpoint for this tick."""
        self.last_decision = self.policy.decide(self.tracker.inputs, now)
        self.ticks += 1
        return self.last_decision

    def diagnostics(self, now: float | None = None) -> dict[str, Any]:
        """Flat key -> value summary for DiagnosticStatus; input ages when ``now`` is given."""
        inputs = self.tracker.inputs
        values: dict[str, Any] = {
            "strategy": self.config.strategy,
            "active_strategy": self.active_strategy,
            "ticks": self.ticks,
        }
        if self.last_decision is not None:
            values.update(
                setpoint=f"{self.last_decision.setpoint:.3f}",
                binding=self.last_decision.binding,
                reason=self.last_decision.reason,
            )
        if self.fallback_reason:
            values["fallback"] = self.fallback_reason
        values["stale_inputs"] = ",".join(getattr(self.policy, "stale_inputs", [])) or "none"
        for name in sorted(set(self.tracker.received) | set(self.tracker.dropped)):
            values[f"received.{name}"] = self.tracker.received[name]
            values[f"dropped.{name}"] = self.tracker.dropped[name]
        values["dropped.total"] = sum(self.tracker.dropped.values())
        for name in sorted(self.tracker.unknown):
            values[f"unknown.{name}"] = self.tracker.unknown[name]
        if now is not None:
            for name, heard in sorted(inputs.heard.items()):
                values[f"age_s.{name}"] = f"{now - heard:.2f}"
        if self.profile is not None:
            values.update(
                {
                    "latency_profile": self.profile.source,
                    "latency_scale": f"{self.profile.scale:.3f}",
                    "latency_observations": self.profile.observations,
                }
            )
        if self.latency is not None and now is not None:
            values.update(self.latency.diagnostics(now))
        if inputs.applied_utilization is not None:
            values[APPLIED] = f"{inputs.applied_utilization:.3f}"
        return values


def _rule_policy_of(policy: Policy | None) -> RulePolicy | None:
    if isinstance(policy, StaleGuard):
        policy = policy.inner
    if isinstance(policy, AutoPolicy):
        return policy.rule
    return policy if isinstance(policy, RulePolicy) else None
