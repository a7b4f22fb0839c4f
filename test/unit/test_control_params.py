"""tnn_ros.nodes.params: declare-with-range, validate-on-set, live apply (one rclpy node, no traffic)."""

import math

import pytest

rclpy = pytest.importorskip("rclpy")
from rclpy.parameter import Parameter  # noqa: E402

from tnn_ros.nodes.params import LiveParameters, ParamSpec  # noqa: E402

SPECS = (
    ParamSpec("low", 0.2, "lower bound", min_value=0.0, max_value=1.0),
    ParamSpec("high", 0.9, "upper bound", min_value=0.0, max_value=1.0),
    ParamSpec("count", 3, "an integer", min_value=1, max_value=10),
    ParamSpec("mode", "a", "a choice", choices=("a", "b")),
    ParamSpec("fixed", "x", "read only", read_only=True),
)


def _order(values):
    return "low must be <= high" if values["low"] > values["high"] else None


@pytest.fixture
def node():
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node(
        "params_test", context=context, parameter_overrides=[Parameter("low", value=0)]
    )  # int for a double
    yield node
    node.destroy_node()
    rclpy.shutdown(context=context)


def test_declares_ranges_and_coerces_int_override(node):
    params = LiveParameters(node, SPECS, validate=_order)
    assert params["low"] == 0.0 and isinstance(params["low"], float)
    descriptor = node.describe_parameter("high")
    assert descriptor.description == "upper bound"
    assert descriptor.floating_point_range[0].from_value == 0.0
    assert descriptor.floating_point_range[0].to_value == 1.0
    assert node.describe_parameter("count").integer_range[0].to_value == 10
    assert "a, b" in node.describe_parameter("mode").additional_constraints


def test_rejects_with_reason_and_applies_accepted(node):
    changes = []
    params = LiveParameters(node, SPECS, validate=_order, on_change=changes.append)
    bad = node.set_parameters([Parameter("low", value=0.95)])[0]
    assert not bad.successful and "low must be <= high" in bad.reason
    bad = node.set_parameters([Parameter("mode", value="zzz")])[0]
    assert not bad.successful and "expected one of a, b" in bad.reason
    bad = node.set_parameters([Parameter("high", value=math.nan)])[0]
    assert not bad.successful
    bad = node.set_parameters([Parameter("fixed", value="y")])[0]
    assert not bad.successful
    assert params["low"] == 0.0 and params["mode"] == "a" and changes == []
    # both bounds at once are checked together, an int is accepted for a double
    ok = node.set_parameters_atomically([Parameter("low", value=0.95), Parameter("high", value=1)])
    assert ok.successful, ok.reason
    assert params["low"] == 0.95 and params["high"] == 1.0
    assert changes == [{"low": 0.95, "high": 1.0}]


def test_bad_startup_value_raises():
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        overrides = [Parameter("low", value=0.99), Parameter("high", value=0.1)]
        node = rclpy.create_node("params_bad", context=context, parameter_overrides=overrides)
        with pytest.raises(ValueError, match="low must be <= high"):
            LiveParameters(node, SPECS, validate=_order)
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def test_spec_rejects_inconsistent_definition():
    with pytest.raises(ValueError):
        ParamSpec("x", 5.0, "out of its own range", min_value=0.0, max_value=1.0)
    with pytest.raises(ValueError):
        ParamSpec("x", 0.5, "half a range", min_value=0.0)
