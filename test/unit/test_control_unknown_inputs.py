"""NaN is "unknown": the sender is alive, no cap from an old value, counted apart from bad inputs."""

from tnn_ros.control import Controller, ControllerConfig
from tnn_ros.control.state import THERMAL


def test_unknown_thermal_is_alive_uncapped_and_not_a_drop():
    controller = Controller(
        ControllerConfig(
            strategy="rule",
            thermal_warn_c=70.0,
            thermal_warn_cap=0.6,
            thermal_critical_c=80.0,
            thermal_critical_cap=0.3,
        )
    )
    assert controller.update(THERMAL, 90.0, 0.0) is None
    assert controller.tracker.inputs.temperature_c == 90.0
    for k in range(100):  # a machine without a temperature sensor publishes NaN forever
        controller.mark_unknown(THERMAL, 1.0 + k)
    inputs = controller.tracker.inputs
    assert inputs.temperature_c is None and inputs.heard[THERMAL] == 100.0
    values = controller.diagnostics(100.0)
    assert values["unknown.thermal"] == 100
    assert values["dropped.total"] == 0
    # an impossible reading is still a dropped input
    assert controller.update(THERMAL, float("inf"), 101.0) is not None
    assert controller.diagnostics(101.0)["dropped.total"] == 1
