"""Controller policies on synthetic input sequences (no ROS)."""

import math

import numpy as np
import pytest

from tnn_ros.control import (
    Controller,
    ControllerConfig,
    LatencyProfile,
    LatencyProfileError,
    RateLimiter,
    ThresholdLadder,
    make_policy,
)

LEVELS = [0.25, 0.5, 0.75, 1.0]
# A profile "measured on another machine": 10, 20, 35, 50 ms.
PROFILE_POINTS = list(zip(LEVELS, [10.0, 20.0, 35.0, 50.0]))


def feed(controller, now, **values):
    for name, value in values.items():
        controller.update(name, value, now)


def rule_controller(**overrides):
    return Controller(ControllerConfig(strategy="rule", **overrides))


def test_manual_policy_clamps_to_min_max():
    controller = Controller(ControllerConfig(strategy="manual", manual_utilization=0.05, min_utilization=0.2))
    decision = controller.step(0.0)
    assert decision.setpoint == pytest.approx(0.2) and decision.binding == "manual"
    # manual needs no inputs: never stale
    assert controller.step(100.0).binding == "manual"


def test_rule_thermal_cap_reason_and_hysteresis():
    controller = rule_controller(
        thermal_warn_c=75.0,
        thermal_warn_cap=0.4,
        thermal_critical_c=90.0,
        thermal_critical_cap=0.2,
        thermal_hysteresis_c=3.0,
    )
    feed(controller, 0.0, battery=0.9, thermal=60.0)
    assert controller.step(0.0).setpoint == 1.0
    feed(controller, 1.0, battery=0.9, thermal=78.0)
    decision = controller.step(1.0)
    assert decision.setpoint == pytest.approx(0.4)
    assert decision.binding == "thermal"
    assert decision.reason == "thermal 78.0C > 75.0C cap 0.40"
    # inside the hysteresis band the cap stays
    feed(controller, 2.0, battery=0.9, thermal=73.0)
    assert controller.step(2.0).setpoint == pytest.approx(0.4)
    # critical step, then back down through both bands
    feed(controller, 3.0, battery=0.9, thermal=95.0)
    assert controller.step(3.0).setpoint == pytest.approx(0.2)
    feed(controller, 4.0, battery=0.9, thermal=88.0)
    assert controller.step(4.0).setpoint == pytest.approx(0.2)
    feed(controller, 5.0, battery=0.9, thermal=86.0)
    assert controller.step(5.0).setpoint == pytest.approx(0.4)
    feed(controller, 6.0, battery=0.9, thermal=71.0)
    decision = controller.step(6.0)
    assert decision.setpoint == 1.0 and decision.binding == "none"


def test_rule_battery_caps_take_the_minimum():
    controller = rule_controller()
    feed(controller, 0.0, battery=0.25, thermal=50.0)
    decision = controller.step(0.0)
    assert decision.binding == "battery" and decision.setpoint == pytest.approx(0.6)
    assert decision.reason.startswith("battery 25% < 30%")
    feed(controller, 1.0, battery=0.10, thermal=75.0)  # battery critical 0.3 < thermal warn 0.6
    decision = controller.step(1.0)
    assert decision.binding == "battery" and decision.setpoint == pytest.approx(0.3)
    # battery recovers only above 15% + 3%
    feed(controller, 2.0, battery=0.17, thermal=75.0)
    assert controller.step(2.0).setpoint == pytest.approx(0.3)
    feed(controller, 3.0, battery=0.19, thermal=75.0)
    decision = controller.step(3.0)
    assert decision.setpoint == pytest.approx(0.6)


def test_threshold_ladder_does_not_chatter_around_threshold():
    ladder = ThresholdLadder([(70.0, 0.5)], hysteresis=2.0, above=True)
    stages = [ladder.update(t) for t in (69.0, 70.5, 69.5, 70.5, 69.0, 68.5, 67.9, 69.9)]
    assert stages == [0, 1, 1, 1, 1, 1, 0, 0]


def test_stale_inputs_give_safe_mode_and_recover():
    controller = rule_controller(stale_timeout_s=2.0, safe_utilization=0.3)
    feed(controller, 0.0, battery=0.9, thermal=50.0)
    assert controller.step(0.5).binding == "none"
    feed(controller, 1.5, battery=0.9)  # thermal silent since t=0
    decision = controller.step(2.5)
    assert decision.binding == "stale" and decision.setpoint == pytest.approx(0.3)
    assert "thermal silent 2.5 s" in decision.reason
    assert controller.diagnostics()["stale_inputs"] == "thermal"
    assert controller.diagnostics(2.5)["age_s.thermal"] == "2.50"
    feed(controller, 3.0, battery=0.9, thermal=50.0)
    assert controller.step(3.0).binding == "none"


def test_never_received_inputs_go_stale_after_timeout():
    controller = Controller(ControllerConfig(strategy="auto", stale_timeout_s=3.0))
    assert controller.step(10.0).binding != "stale"  # grace period starts at the first tick
    decision = controller.step(13.5)
    assert decision.binding == "stale"
    for name in ("battery", "thermal", "deadline"):
        assert name in decision.reason


def test_nan_battery_counted_and_value_kept_but_sender_alive():
    controller = rule_controller(stale_timeout_s=2.0)
    feed(controller, 0.0, battery=0.25, thermal=40.0)
    assert controller.update("battery", math.nan, 1.0) is not None
    assert controller.update("thermal", math.inf, 1.0) is not None
    assert controller.update("battery", 55.0, 1.0) is not None  # percent instead of fraction
    assert controller.tracker.inputs.battery_fraction == 0.25
    diagnostics = controller.diagnostics()
    assert diagnostics["dropped.battery"] == 2 and diagnostics["dropped.thermal"] == 1
    assert diagnostics["dropped.total"] == 3
    # NaN still proves the sender is alive: no stale mode at t=2.5 (heard at 1.0)
    assert controller.step(2.5).binding == "battery"


def test_latency_profile_scale_correction_transfers_across_devices():
    profile = LatencyProfile(PROFILE_POINTS, ema_alpha=0.5)
    assert profile.predict_ms(0.5) == pytest.approx(20.0)
    assert profile.predict_ms(0.625) == pytest.approx(27.5)  # interpolated between levels
    profile.observe(0.5, 40.0)  # this device is 2x slower: the first observation sets the scale
    assert profile.scale == pytest.approx(2.0)
    assert profile.predict_ms(1.0) == pytest.approx(100.0)
    profile.observe(0.75, 35.0 * 3.0)  # EMA towards 3x
    assert profile.scale == pytest.approx(2.5)
    with pytest.raises(ValueError):
        profile.observe(0.5, math.nan)


def test_latency_profile_rejects_bad_cards():
    with pytest.raises(LatencyProfileError):
        LatencyProfile.from_card({"levels": []})
    with pytest.raises(LatencyProfileError):
        LatencyProfile.from_card({"levels": [{"utilization": 0.5}]})
    with pytest.raises(LatencyProfileError):
        LatencyProfile([(0.5, 30.0), (0.5, 20.0)])  # duplicate level
    with pytest.raises(LatencyProfileError):
        LatencyProfile([(0.5, -1.0)])
    noisy = LatencyProfile([(0.25, 12.0), (0.5, 11.0), (1.0, 30.0)])  # timing noise on a real card
    assert noisy.latencies_ms == [12.0, 12.0, 30.0] and noisy.smoothed_levels == 1
    assert "smoothed" in noisy.description
    card = {
        "levels": [
            {"level": i, "utilization": u, "latency_ms": ms} for i, (u, ms) in enumerate(PROFILE_POINTS)
        ]
    }
    assert LatencyProfile.from_card(card).utilizations == LEVELS


def test_deadline_policy_picks_highest_fitting_level_and_corrects_scale():
    profile = LatencyProfile(PROFILE_POINTS, ema_alpha=1.0)
    controller = Controller(ControllerConfig(strategy="deadline", deadline_margin=0.1), profile)
    feed(controller, 0.0, deadline=80.0)
    decision = controller.step(0.0)
    assert decision.setpoint == 1.0 and decision.binding == "none"
    feed(controller, 1.0, deadline=30.0)  # budget 27 ms -> 0.5 (20 ms), 0.75 (35 ms) too slow
    decision = controller.step(1.0)
    assert decision.setpoint == pytest.approx(0.5) and decision.binding == "deadline"
    # measured on this device: 2x slower than the card -> 0.5 measures 40 ms; only 0.25 (20 ms) fits
    for i in range(30):
        feed(controller, 2.0 + 0.05 * i, applied=0.5, latency=40.0)
    decision = controller.step(3.5)
    assert decision.setpoint == pytest.approx(0.25)
    assert "card x2.00" in decision.reason  # 0.25 never observed: the card times the slowdown
    # unreachable deadline: the lowest level, says so
    feed(controller, 3.6, deadline=5.0)
    decision = controller.step(3.6)
    assert decision.setpoint == pytest.approx(0.25) and "unreachable" in decision.reason


def test_auto_takes_minimum_of_caps_and_rate_limits():
    profile = LatencyProfile(PROFILE_POINTS)
    config = ControllerConfig(strategy="auto", max_step_per_s=0.2, max_step_down_per_s=0.5)
    controller = Controller(config, profile)
    feed(controller, 0.0, battery=0.9, thermal=40.0, deadline=100.0)
    assert controller.step(0.0).setpoint == 1.0
    feed(controller, 0.1, battery=0.9, thermal=85.0, deadline=100.0)  # thermal critical cap 0.3
    setpoints = []
    for i in range(1, 21):
        now = 0.1 * i
        feed(controller, now, battery=0.9, thermal=85.0, deadline=100.0)
        setpoints.append(controller.step(now).setpoint)
    steps = [a - b for a, b in zip([1.0] + setpoints, setpoints)]
    assert max(steps) <= 0.05 + 1e-9  # 0.5/s at 10 Hz
    assert setpoints[-1] == pytest.approx(0.3)
    decision = controller.step(2.0)
    assert decision.binding == "thermal"
    # the deadline binds once it is tighter than the thermal cap
    feed(controller, 2.1, battery=0.9, thermal=40.0, deadline=12.0)  # budget 10.8 ms -> 0.25
    decision = controller.step(2.1)
    assert decision.binding == "deadline" and decision.setpoint == pytest.approx(0.25)
    # recovery rises at most 0.2/s
    feed(controller, 3.1, battery=0.9, thermal=40.0, deadline=100.0)
    decision = controller.step(3.1)
    assert decision.setpoint == pytest.approx(0.45)
    assert "rate limited" in decision.reason


# Card accuracies (mAP) of the four levels: 0.80, 0.86, 0.89, 0.90 (hand-made, not monotone gaps).
ACCURACIES = [0.80, 0.86, 0.89, 0.90]


def test_auto_runs_the_cheapest_level_within_the_accuracy_tolerance():
    profile = LatencyProfile(PROFILE_POINTS, accuracies=ACCURACIES)
    controller = Controller(ControllerConfig(strategy="auto", accuracy_tolerance=0.025), profile)
    feed(controller, 0.0, battery=0.9, thermal=40.0, deadline=100.0)
    decision = controller.step(0.0)
    # 0.90 - 0.025 = 0.875: 0.89 (u 0.75) qualifies, 0.86 (u 0.5) does not
    assert decision.setpoint == pytest.approx(0.75) and decision.binding == "efficiency"
    assert "efficiency: u 0.75 (card accuracy 0.890) within 2.5 pts of u 1.00 (0.900)" in decision.reason
    # a gap equal to the tolerance counts as within it (cards round to 4 digits)
    exact = Controller(ControllerConfig(strategy="auto", accuracy_tolerance=0.04), profile)
    feed(exact, 0.0, battery=0.9, thermal=40.0, deadline=100.0)
    assert exact.step(0.0).setpoint == pytest.approx(0.5)
    # a constraint below the efficiency level still binds
    feed(controller, 0.1, battery=0.9, thermal=85.0, deadline=100.0)
    for i in range(2, 20):
        feed(controller, 0.1 * i, battery=0.9, thermal=85.0, deadline=100.0)
        decision = controller.step(0.1 * i)
    assert decision.setpoint == pytest.approx(0.3) and decision.binding == "thermal"


def test_accuracy_tolerance_is_relative_to_the_best_allowed_level_and_zero_turns_it_off():
    profile = LatencyProfile(PROFILE_POINTS, accuracies=ACCURACIES)
    capped = Controller(
        ControllerConfig(strategy="auto", max_utilization=0.75, accuracy_tolerance=0.03), profile
    )
    feed(capped, 0.0, battery=0.9, thermal=40.0, deadline=100.0)
    assert capped.step(0.0).setpoint == pytest.approx(0.5)  # 0.89 - 0.03 = 0.86: u 0.5 qualifies
    off = Controller(ControllerConfig(strategy="auto", accuracy_tolerance=0.0), profile)
    feed(off, 0.0, battery=0.9, thermal=40.0, deadline=100.0)
    decision = off.step(0.0)
    assert decision.setpoint == 1.0 and decision.binding == "none"
    # a card without accuracies: no efficiency level whatever the tolerance
    plain = Controller(
        ControllerConfig(strategy="auto", accuracy_tolerance=0.5), LatencyProfile(PROFILE_POINTS)
    )
    feed(plain, 0.0, battery=0.9, thermal=40.0, deadline=100.0)
    assert plain.step(0.0).setpoint == 1.0


def test_card_accuracies_are_read_only_when_every_level_has_a_valid_one():
    levels = [
        {"utilization": u, "latency_ms": ms, "accuracy": a} for (u, ms), a in zip(PROFILE_POINTS, ACCURACIES)
    ]
    assert LatencyProfile.from_card({"levels": levels[::-1]}).accuracies == ACCURACIES  # sorted by u
    partial = [dict(level) for level in levels]
    del partial[2]["accuracy"]
    assert LatencyProfile.from_card({"levels": partial}).accuracies is None
    out_of_range = [dict(level, accuracy=a * 100) for level, a in zip(levels, ACCURACIES)]  # percent
    assert LatencyProfile.from_card({"levels": out_of_range}).accuracies is None
    with pytest.raises(LatencyProfileError, match="one accuracy in"):
        LatencyProfile(PROFILE_POINTS, accuracies=ACCURACIES[:3])
    with pytest.raises(ValueError, match="accuracy_tolerance"):
        ControllerConfig(accuracy_tolerance=1.5).validate()


def test_rate_limiter_first_value_passes():
    limiter = RateLimiter(1.0, 2.0)
    assert limiter.step(0.7, 0.0) == 0.7
    assert limiter.step(0.0, 0.1) == pytest.approx(0.5)
    assert limiter.step(1.0, 0.2) == pytest.approx(0.6)


def test_manual_override_and_reconfigure_keep_continuity():
    config = ControllerConfig(strategy="auto", max_step_per_s=0.1)
    controller = Controller(config, LatencyProfile(PROFILE_POINTS))
    feed(controller, 0.0, battery=0.9, thermal=40.0, deadline=100.0)
    assert controller.step(0.0).setpoint == 1.0
    controller.reconfigure(controller.config.replace(manual_override=True, manual_utilization=0.3), 1.0)
    decision = controller.step(1.0)
    assert decision.binding == "manual" and decision.setpoint == pytest.approx(0.3)
    controller.reconfigure(controller.config.replace(manual_override=False), 2.0)
    feed(controller, 3.0, battery=0.9, thermal=40.0, deadline=100.0)
    assert controller.step(3.0).setpoint == pytest.approx(0.4)  # rises from 0.3 at 0.1/s


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"min_utilization": 0.8, "max_utilization": 0.5}, "min_utilization"),
        ({"strategy": "bogus"}, "unknown strategy"),
        ({"thermal_warn_c": 90.0}, "thermal_warn_c"),
        ({"battery_critical": 0.5}, "battery_critical"),
        ({"stale_timeout_s": 0.0}, "stale_timeout_s"),
    ],
)
def test_config_rejects_inconsistent_values(changes, message):
    config = ControllerConfig().replace(**changes)
    assert message in config.problem()
    with pytest.raises(ValueError):
        make_policy(config.strategy, config, None)


def test_deadline_without_profile_is_an_error():
    with pytest.raises(ValueError, match="latency profile"):
        make_policy("deadline", ControllerConfig(strategy="deadline"), None)


def test_hysteresis_state_survives_reconfiguration_and_manual_window():
    controller = Controller(ControllerConfig(strategy="rule", thermal_warn_c=75.0, thermal_hysteresis_c=3.0))
    feed(controller, 0.0, battery=0.9, thermal=78.0)
    assert controller.step(0.0).binding == "thermal"
    controller.reconfigure(controller.config.replace(manual_override=True, manual_utilization=0.5), 1.0)
    assert controller.step(1.0).binding == "manual"
    controller.reconfigure(controller.config.replace(manual_override=False), 2.0)
    feed(controller, 2.0, battery=0.9, thermal=73.0)  # inside the band: the cap must stay
    assert controller.step(2.0).binding == "thermal"


def test_node_loads_a_training_card_or_falls_back_to_synthetic(tmp_path, monkeypatch):
    import json

    from tnn_ros.nodes import controller as controller_node

    card = {
        "name": "detector",
        "num_levels": 4,
        "levels": [
            {"level": k, "utilization": u, "macs": 1000 * (k + 1), "accuracy": 0.5, "latency_ms": ms}
            for k, (u, ms) in enumerate([(0.25, 9.0), (0.5, 8.5), (0.75, 21.0), (1.0, 30.0)])
        ],
    }
    path = tmp_path / "detector.card.json"
    path.write_text(json.dumps(card))
    profile, why = controller_node.load_latency_profile(str(path), 0.2)
    assert profile.utilizations == LEVELS and profile.smoothed_levels == 1 and "4 levels" in why

    def not_shipped(folder, name):
        raise FileNotFoundError(f"{folder}/{name} not found")

    monkeypatch.setattr("tnn_ros.paths.find_package_file", not_shipped)
    profile, why = controller_node.load_latency_profile("", 0.2)
    assert profile.source == "synthetic" and "synthetic" in why and len(profile.utilizations) == 8


def test_cpu_load_cap_binds_with_hysteresis_and_is_off_by_default():
    default = rule_controller()  # cpu_load_high = 1.0: our own inference loads the CPU, no cap
    feed(default, 0.0, battery=0.9, thermal=40.0, cpu_load=0.99)
    assert default.step(0.0).binding == "none"

    controller = rule_controller(cpu_load_high=0.8, cpu_load_cap=0.5, cpu_load_hysteresis=0.1)
    feed(controller, 0.0, battery=0.9, thermal=40.0, cpu_load=0.5)
    assert controller.step(0.0).setpoint == 1.0
    feed(controller, 10.0, battery=0.9, thermal=40.0, cpu_load=0.9)
    decision = controller.step(10.0)
    assert (decision.binding, decision.setpoint) == ("cpu", pytest.approx(0.5))
    assert decision.reason == "cpu load 90% > 80% cap 0.50"
    feed(controller, 20.0, battery=0.9, thermal=40.0, cpu_load=0.75)  # inside the 0.7..0.8 band: stays
    assert controller.step(20.0).binding == "cpu"
    feed(controller, 30.0, battery=0.9, thermal=40.0, cpu_load=0.65)  # below 0.8 - 0.1: lifted
    decision = controller.step(30.0)
    assert (decision.binding, decision.setpoint) == ("none", 1.0)
    # a tighter cap wins over the CPU cap
    feed(controller, 40.0, battery=0.10, thermal=40.0, cpu_load=0.95)
    decision = controller.step(40.0)
    assert (decision.binding, decision.setpoint) == ("battery", pytest.approx(0.3))
    # NaN / out-of-range loads are dropped and counted, the last good value is kept
    assert controller.update("cpu_load", math.nan, 41.0) is not None
    assert controller.update("cpu_load", 1.7, 41.0) is not None
    assert controller.tracker.inputs.cpu_load == pytest.approx(0.95)


def _true_latency_ms(u):
    """This device runs exactly as the card says (PROFILE_POINTS), between levels linearly."""
    levels, latencies = zip(*PROFILE_POINTS)
    return float(np.interp(u, levels, latencies))


@pytest.mark.parametrize("strategy", ["deadline", "auto"])
@pytest.mark.parametrize("spike_tick", [0, 30])
def test_a_single_latency_spike_does_not_pin_the_deadline_policy_low(strategy, spike_tick):
    """Closed loop at 10 Hz: the applied level's true latency comes back, once 10x too slow.

    Full utilization (50 ms) fits the 80 ms deadline (72 ms budget). One spike -- also as the very
    first observation -- may lower the setpoint for a while, but the policy must come back to full
    once ordinary measurements follow, whatever estimator (EMA scale, latency quantiles) it uses.
    """
    controller = Controller(
        ControllerConfig(strategy=strategy, deadline_margin=0.1), LatencyProfile(PROFILE_POINTS)
    )
    setpoint, setpoints = 1.0, []
    for tick in range(600):  # one minute
        now = tick * 0.1
        latency = _true_latency_ms(setpoint) * (10.0 if tick == spike_tick else 1.0)
        feed(controller, now, battery=0.9, thermal=40.0, deadline=80.0, applied=setpoint, latency=latency)
        setpoint = controller.step(now).setpoint
        setpoints.append(setpoint)
    assert all(u == pytest.approx(1.0) for u in setpoints[:spike_tick]), "full did not fit before the spike"
    assert all(0.0 < u <= 1.0 for u in setpoints)
    assert all(u == pytest.approx(1.0) for u in setpoints[-100:]), (
        f"still at {setpoints[-1]:.2f} 60 s after one spike; first 1.0 again at tick "
        f"{next((i for i, u in enumerate(setpoints) if i > spike_tick and u == 1.0), None)}"
    )
