"""Controller policies, ROS-free: the latest resource state in, a utilization setpoint and a reason out."""

from tnn_ros.control.config import STRATEGIES, ControllerConfig
from tnn_ros.control.controller import Controller
from tnn_ros.control.latency import LatencyProfile, LatencyProfileError, LatencyQuantiles
from tnn_ros.control.policies import (
    AutoPolicy,
    Cap,
    DeadlinePolicy,
    ManualPolicy,
    Policy,
    RateLimiter,
    RulePolicy,
    StaleGuard,
    ThresholdLadder,
    make_latency_model,
)
from tnn_ros.control.state import INPUT_NAMES, ControlInputs, Decision, InputTracker
from tnn_ros.control.strategies import make_policy

__all__ = [
    "STRATEGIES",
    "INPUT_NAMES",
    "AutoPolicy",
    "Cap",
    "ControlInputs",
    "Controller",
    "ControllerConfig",
    "Decision",
    "DeadlinePolicy",
    "InputTracker",
    "LatencyProfile",
    "LatencyProfileError",
    "LatencyQuantiles",
    "ManualPolicy",
    "Policy",
    "RateLimiter",
    "RulePolicy",
    "StaleGuard",
    "ThresholdLadder",
    "make_latency_model",
    "make_policy",
]
