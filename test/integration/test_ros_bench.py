"""`tnn-bench ros` end to end: a perception node in another process, tiny frame counts."""

import json
import math

import pytest

from tnn_ros.bench import ros_bench

pytestmark = pytest.mark.integration


def test_ros_bench_measures_both_levels_and_the_setpoint_reaction(tmp_path, ros_env, monkeypatch, capsys):
    for key in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE"):
        monkeypatch.setenv(key, ros_env[key])
    out = tmp_path / "ros.json"
    assert (
        ros_bench.main(
            [
                "--json",
                str(out),
                "--frames",
                "6",
                "--setpoint-trials",
                "2",
                "--width",
                "160",
                "--height",
                "120",
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    assert set(result["levels"]) == {"full", "lowest"}
    full, lowest = result["levels"]["full"], result["levels"]["lowest"]
    assert full["frames_lost"] == 0 and lowest["frames_lost"] == 0
    assert full["levels_seen"] != lowest["levels_seen"] and len(full["levels_seen"]) == 1
    for level in (full, lowest):
        e2e, model = level["end_to_end_ms"], level["model_in_node_ms"]
        assert e2e["n"] == 6 and model["n"] == 6
        assert not math.isnan(level["ros_overhead_ms"]["median"])
        assert e2e["median"] >= model["median"] > 0  # the network time is part of the round trip
    assert len(result["setpoint_reaction"]["stale_frames"]) == 2
    printed = capsys.readouterr().out
    assert "| full (levels" in printed and "ROS overhead" in printed


def test_markdown_and_summary_helpers():
    stats = ros_bench.summarize([3.0, 1.0, 2.0])
    assert (stats["n"], stats["median"], stats["min"], stats["max"]) == (3, 2.0, 1.0, 3.0)
    assert ros_bench.summarize([])["n"] == 0
    assert ros_bench.main(["--frames", "0"]) == 2
