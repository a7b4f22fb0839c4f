"""The soak verdict numbers from hand-made samples (tnn_ros.bench.soak.summarize)."""

import math

import pytest

from tnn_ros.bench.soak import FALLBACK_TIGHT_DEADLINE_MS, parse_args, summarize, tight_deadline_ms


def sample(t_s, rss_a, rss_b, latencies, published, answered, backlog, utilization=0.5, fds=20.0):
    return {
        "t_s": t_s,
        "latencies_ms": latencies,
        "published": published,
        "answered": answered,
        "backlog_frames": backlog,
        "utilization": utilization,
        "processes": {
            "a": {"rss_mb": rss_a, "fds": fds, "threads": 5.0},
            "b": {"rss_mb": rss_b, "fds": 10.0, "threads": 3.0},
        },
    }


def test_growth_drift_drops_and_backlog_by_hand():
    samples = [
        sample(5, 50, 50, [100.0] * 10, 150, 100, 9.0),  # warm-up: ignored for growth / drift
        sample(15, 100, 100, [10.0] * 99 + [20.0], 300, 250, 1.0, 0.3),
        sample(25, 104, 100, [11.0] * 100, 450, 400, 2.0, 0.3),
        sample(35, 106, 102, [11.0] * 100, 600, 550, 1.5, 0.6),
        sample(45, 108, 102, [12.0] * 100, 750, 690, 0.5, 0.6, fds=21.0),
    ]
    summary = summarize(samples, warmup_s=10.0, fps=30.0)
    assert summary["rss_growth_fraction"] == pytest.approx((210 - 200) / 200)
    p99_first = 10.0 + 0.01 * 10.0  # 99 x 10 ms, 1 x 20 ms: rank 0.99 * 99 = 98.01, linear interpolation
    assert summary["latency_ms_p99_first_quarter"] == pytest.approx(p99_first)
    assert summary["p99_latency_drift_fraction"] == pytest.approx((12.0 - p99_first) / p99_first)
    assert summary["dropped_frames"] == 750 - 690
    assert summary["backlog_max"] == 2.0  # the warm-up's 9 frames do not count
    assert summary["utilization_values_seen"] == [0.3, 0.6]
    assert summary["processes"]["a"]["fds_growth_fraction"] == pytest.approx(0.05)
    assert summary["processes"]["b"]["rss_mb_growth_fraction"] == pytest.approx(0.02)
    assert not summary["meets_targets"]  # RSS grew by 5 %


def test_steady_run_meets_targets():
    samples = [sample(t, 100, 100, [10.0] * 50, 30 * t, 30 * t - 1, 0.5) for t in range(10, 200, 10)]
    summary = summarize(samples, warmup_s=30.0, fps=30.0)
    assert summary["rss_growth_fraction"] == 0.0
    assert summary["p99_latency_drift_fraction"] == 0.0
    assert summary["meets_targets"]
    assert math.isfinite(summary["latency_ms_p50"])


def test_tight_deadline_is_a_fraction_of_the_loose_phase_median_latency():
    """The tight deadline follows the machine: 0.6 x the median of every latency measured so far."""
    samples = [sample(5, 50, 50, [10.0, 20.0, 30.0], 3, 3, 0.5), sample(10, 50, 50, [40.0, 50.0], 5, 5, 0.5)]
    assert tight_deadline_ms(samples, 0.6) == pytest.approx(18.0)  # median 30 ms
    assert tight_deadline_ms([sample(5, 50, 50, [], 0, 0, 0.0)], 0.6) == FALLBACK_TIGHT_DEADLINE_MS
    assert parse_args(["--minutes", "1"]).deadlines_ms is None  # the measured tight deadline by default
    for bad in (["--tight-fraction", "1.5"], ["--deadlines-ms", "200", "0"]):
        with pytest.raises(SystemExit) as exit_info:
            parse_args(["--minutes", "1", *bad])
        assert exit_info.value.code == 2
