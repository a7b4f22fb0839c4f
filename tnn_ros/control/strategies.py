"""The strategy factory: a strategy name + config -> the policy the controller runs.

Above both :mod:`tnn_ros.control.policies` and :mod:`tnn_ros.control.learned`, so neither imports the
other to dispatch.
"""

from __future__ import annotations

from tnn_ros.control.config import ControllerConfig
from tnn_ros.control.latency import LatencyProfile, LatencyQuantiles
from tnn_ros.control.learned import make_learned_policy
from tnn_ros.control.policies import (
    AutoPolicy,
    DeadlinePolicy,
    ManualPolicy,
    Policy,
    RulePolicy,
    StaleGuard,
)


def make_policy(
    strategy: str, config: ControllerConfig, latency_profile: LatencyQuantiles | LatencyProfile | None
) -> Policy:
    """Build the policy for ``strategy`` (manual | rule | deadline | auto | learned), config validated.

    ``deadline`` needs a latency model: the :class:`LatencyQuantiles` that is fed with the measured
    frames (:class:`tnn_ros.control.Controller` does that), or a card profile to start a new one from;
    ``auto`` without one uses the rule caps only.
    """
    config.validate()
    if strategy == "manual":
        return ManualPolicy(config)
    if strategy == "rule":
        policy: Policy = RulePolicy(config)
    elif strategy == "deadline":
        if latency_profile is None:
            raise ValueError("strategy 'deadline' needs a latency profile (model card)")
        policy = DeadlinePolicy(config, latency_profile)
    elif strategy == "auto":
        policy = AutoPolicy(config, latency_profile)
    elif strategy == "learned":  # a contextual bandit; falls back to auto (fallback_reason) without a model
        policy = make_learned_policy(config, latency_profile, config.learned_model)
    else:
        raise ValueError(f"unknown strategy {strategy!r}")
    return StaleGuard(policy, config)
