"""`tnn-bench soak` for 2 minutes: the whole stack at 30 fps with the controller moving levels."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.long]


def test_two_minute_soak_writes_json_and_png(ros_env, tmp_path):
    out = tmp_path / "soak.json"
    bench = Path(sys.executable).with_name("tnn-bench")
    command = [
        str(bench) if bench.exists() else "tnn-bench",
        "soak",
        "--minutes",
        "2",
        "--warmup-s",
        "30",
        "--deadline-period-s",
        "15",
        "--json",
        str(out),
        "--log-dir",
        str(tmp_path / "logs"),
    ]
    result = subprocess.run(command, env=ros_env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads(out.read_text())["summary"]
    for key in ("rss_growth_fraction", "p99_latency_drift_fraction", "dropped_frames", "backlog_max"):
        assert key in summary and math.isfinite(summary[key]), (key, summary.get(key))
    assert summary["frames_answered"] > 0
    assert len(summary["utilization_values_seen"]) >= 2, "the controller never moved the level"
    assert summary["exit_codes"] == {
        name: 0 for name in ("sim_camera", "perception", "resource_monitor", "controller")
    }
    assert out.with_suffix(".png").stat().st_size > 0
    print(
        json.dumps(
            {
                k: summary[k]
                for k in (
                    "rss_growth_fraction",
                    "p99_latency_drift_fraction",
                    "dropped_frames",
                    "backlog_max",
                    "latency_ms_p99",
                    "deadlines_ms",
                    "utilization_values_seen",
                )
            }
        )
    )
