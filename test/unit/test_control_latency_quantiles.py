"""Deadline control on the latency distribution: synthetic latency streams (no ROS, no wall clock)."""

import math

import numpy as np
import pytest

from tnn_ros.control import Controller, ControllerConfig, LatencyProfile, LatencyQuantiles

LEVELS = [(k + 1) / 8 for k in range(8)]
CARD_MS = [5.0, 8.0, 12.0, 17.0, 23.0, 30.0, 38.0, 47.0]  # "measured where the model was trained"
FPS = 20.0


def profile():
    return LatencyProfile(list(zip(LEVELS, CARD_MS)))


def stream(rng, median_ms, n, spread=0.25):
    """Lognormal frame latencies: the long right tail real frame times have."""
    return median_ms * np.exp(rng.normal(0.0, spread, n))


def test_level_quantile_matches_numpy_on_the_window():
    model = LatencyQuantiles(profile(), quantile=0.95, window=64, min_samples=20)
    values = stream(np.random.default_rng(0), 40.0, 100)
    for i, value in enumerate(values):
        assert model.observe(1.0, value, i / FPS) is None
    now = 99 / FPS
    # the newest 64 samples (all within the 10 s horizon), p95 by numpy's default (linear) rule
    assert model.predict_ms(1.0, now) == pytest.approx(np.quantile(values[-64:], 0.95))


def test_first_observation_and_single_spike_do_not_set_the_scale():
    model = LatencyQuantiles(profile(), min_samples=20, prior_samples=20)
    model.observe(1.0, 10 * CARD_MS[-1], 0.0)  # the very first frame: a 10x spike
    # one sample among 20 pseudo-samples at the card: (10 + 20 x 1) / 21
    assert model.slowdown(0.0) == pytest.approx(30.0 / 21.0)
    assert model.predict_ms(0.5, 0.0) < 2.0 * CARD_MS[3]
    for i in range(1, 40):  # then normal frames at the card's latency
        model.observe(1.0, CARD_MS[-1], i / FPS)
    now = 39 / FPS
    assert model.predict_ms(1.0, now) == pytest.approx(CARD_MS[-1])  # 1 spike in 40 is above p95
    assert model.slowdown(now) == pytest.approx(1.0)


def test_unobserved_levels_get_the_card_times_the_observed_slowdown():
    model = LatencyQuantiles(profile(), min_samples=20)
    for i in range(60):
        model.observe(1.0, 2.0 * CARD_MS[-1], i / FPS)  # this device is 2x slower than the card
    now = 59 / FPS
    assert model.slowdown(now) == pytest.approx(2.0)
    for u, card in zip(LEVELS[:-1], CARD_MS[:-1]):
        value, source = model.predict(u, now)
        assert value == pytest.approx(2.0 * card) and source.startswith("card x2.00")


def test_bad_samples_are_counted_and_ignored():
    model = LatencyQuantiles(profile())
    for u, ms in (
        (1.0, math.nan),
        (1.0, math.inf),
        (1.0, -3.0),
        (1.0, 0.0),
        (math.nan, 10.0),
        (0.0, 10.0),
        (1.5, 10.0),
        ("x", 10.0),
    ):
        assert model.observe(u, ms, 0.0) is not None
    assert sum(model.rejected.values()) == 8 and model.observations == 0
    assert model.predict_ms(1.0, 0.0) == pytest.approx(CARD_MS[-1])  # still the card


def run_deadline(latency_of, seconds, deadline_ms=40.0, seed=1, config=None):
    """Closed loop: controller at 10 Hz, frames at FPS with latency_of(t, u) ms; returns per-frame rows."""
    rng = np.random.default_rng(seed)
    # p95: the expectations below are computed by hand for the 95th percentile
    config = config or ControllerConfig(strategy="deadline", deadline_margin=0.1, latency_quantile=0.95)
    controller = Controller(config, profile())
    u, rows, t = 1.0, [], 0.0
    for frame in range(int(seconds * FPS)):
        t = frame / FPS
        if frame % 2 == 0:
            controller.update("deadline", deadline_ms, t)
            u = controller.step(t).setpoint
        latency = latency_of(t, u) * float(np.exp(rng.normal(0.0, 0.15)))
        controller.update("applied", u, t)
        controller.update("queue", 1.0, t)
        controller.update("latency", latency, t)
        rows.append((t, u, latency + 1.0))
    return controller, rows


def card_at(u):
    return float(np.interp(u, LEVELS, CARD_MS))


def test_uses_intermediate_levels_not_just_two():
    # 1.3x the card with a lognormal tail: p95 = 1.3 x card x exp(1.645 x 0.15) (+ 1 ms queue), so a
    # 48 ms deadline (43.2 ms budget) fits level 0.625 (39.2 ms) but not 0.75 (50.9 ms)
    p95 = {u: 1.3 * card_at(u) * math.exp(1.645 * 0.15) + 1.0 for u in LEVELS}
    expected = max(u for u in LEVELS if p95[u] <= 48.0 * 0.9)
    assert expected == 0.625
    _, rows = run_deadline(lambda t, u: 1.3 * card_at(u), seconds=20.0, deadline_ms=48.0)
    settled = [u for t, u, _ in rows if t > 10.0]
    assert np.mean([u == expected for u in settled]) >= 0.9, sorted(set(settled))
    hits = np.mean([latency <= 48.0 for t, _, latency in rows if t > 10.0])
    assert hits >= 0.95


def test_contention_onset_is_noticed_within_a_second_and_offset_recovers():
    onset, offset = 15.0, 30.0

    def latency_of(t, u):  # another process takes a core: everything 2.5x slower in [onset, offset)
        return card_at(u) * (2.5 if onset <= t < offset else 1.0)

    # 75 ms deadline (67.5 budget): p95 at full 47 x 1.28 + 1 = 61 ms fits; under contention 0.5 does
    controller, rows = run_deadline(latency_of, seconds=45.0, deadline_ms=75.0)
    before = [u for t, u, _ in rows if onset - 5.0 <= t < onset]
    assert min(before) == 1.0
    # within one second of the onset the setpoint has dropped below full ...
    reacted = [t for t, u, _ in rows if onset <= t and u < 1.0]
    assert reacted and reacted[0] - onset <= 1.0
    # ... and during contention the deadline holds again after the reaction
    during = [latency <= 75.0 for t, _, latency in rows if onset + 2.0 <= t < offset]
    assert np.mean(during) >= 0.95
    # after the load goes away it comes back up within two seconds and stays within the deadline
    up = [t for t, u, _ in rows if t >= offset and u >= 0.875]
    assert up and up[0] - offset <= 2.0
    assert any(u == 1.0 for t, u, _ in rows if t >= offset)
    assert np.mean([latency <= 75.0 for t, _, latency in rows if t >= offset]) >= 0.95
    # the recovery was a detected load change (every level rescaled down), not the windows ageing out
    assert any(offset <= t <= offset + 1.5 and factor < 1.0 for t, factor in controller.latency.shifts)
    assert controller.latency.observations == len(rows)


def test_nan_latency_stream_keeps_a_safe_output():
    config = ControllerConfig(strategy="deadline")
    controller = Controller(config, profile())
    for i in range(100):
        t = i / FPS
        controller.update("deadline", 30.0, t)
        controller.update("applied", 1.0, t)
        controller.update("queue", math.nan, t)
        assert controller.update("latency", math.nan, t) is not None
    decision = controller.step(100 / FPS)
    # nothing measured: the card says 0.5 (17 ms) is the highest level within 27 ms... as 0.625 is 23
    assert decision.setpoint == pytest.approx(0.625)
    assert controller.tracker.dropped["latency"] == 100 and controller.latency.observations == 0


def test_queueing_delay_counts_into_the_frame_latency():
    controller = Controller(ControllerConfig(strategy="deadline"), profile())
    for i in range(40):
        t = i / FPS
        controller.update("applied", 1.0, t)
        controller.update("queue", 20.0, t)
        controller.update("latency", 40.0, t)
    controller.update("applied", 1.0, 2.0)
    controller.update("latency", 40.0, 2.0)  # no queue sample for this frame: latency alone
    samples = [v for _, v, *_ in controller.latency._samples[7]]
    assert samples[:40] == [60.0] * 40 and samples[-1] == 40.0


def test_latency_history_survives_strategy_switches_but_not_a_new_tuning():
    controller = Controller(ControllerConfig(strategy="auto"), profile())
    for i in range(30):
        controller.update("applied", 1.0, i / FPS)
        controller.update("latency", 60.0, i / FPS)
    model = controller.latency
    controller.reconfigure(controller.config.replace(manual_override=True, manual_utilization=0.5), 2.0)
    controller.reconfigure(controller.config.replace(manual_override=False), 3.0)
    assert controller.latency is model and model.observations == 30
    assert controller.policy.inner.deadline.latency is model  # the auto policy predicts from it
    controller.reconfigure(controller.config.replace(latency_quantile=0.9), 4.0)
    assert controller.latency is not model and controller.latency.quantile == 0.9
    controller.profile = LatencyProfile([(0.5, 10.0), (1.0, 20.0)])  # a new card: new levels
    assert controller.latency.utilizations == [0.5, 1.0]


def test_frame_period_is_estimated_from_arrivals_and_mean_service_from_latency_without_queue():
    # 15 fps camera; results arrive 30 ms (10 ms queued + 20 ms service) after each frame; frames
    # 3 and 7 were dropped (gaps of 133 ms): the median gap is still one frame period.
    model = LatencyQuantiles(profile(), min_samples=4)
    kept = [i for i in range(12) if i not in (3, 7)]
    for i in kept:
        assert model.observe(0.5, 30.0, i / 15.0 + 0.030, queue_ms=10.0) is None
    now = kept[-1] / 15.0 + 0.030
    assert model.frame_period(now) == pytest.approx(1000.0 / 15.0)
    assert model.diagnostics(now)["frame_period_ms"] == "66.7"
    assert model.mean_service(0.5, now) == pytest.approx(20.0)
    # a level never run: the card scaled like the measured level (card 17 ms -> measured 20 ms)
    assert model.mean_service(1.0, now) == pytest.approx(20.0 * CARD_MS[-1] / CARD_MS[3])
    # a configured period wins over the estimate
    fixed = LatencyQuantiles(profile(), frame_period_ms=50.0)
    assert fixed.frame_period(0.0) == 50.0
    assert LatencyQuantiles(profile()).frame_period(0.0) is None  # nothing heard yet: unknown
    assert LatencyQuantiles(profile()).diagnostics(0.0)["frame_period_ms"] == "unknown"
