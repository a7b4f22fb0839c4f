"""`tnn-bench throttle`: JSON layout and the arithmetic of its derived columns (tiny model)."""

import json

import pytest
import torch

from tnn_ros.bench.throttle_bench import main, measure_switch_us
from tnn_ros.data.scenes import CLASSES
from tnn_ros.models import save_model
from tnn_ros.models.detector import ThrottleableDetector

TINY = {
    "input_size": [96, 64],
    "num_levels": 3,
    "stem_channels": 16,
    "stage_channels": [16, 32, 64],
    "channel_multiple": 8,
    "neck_channels": 32,
    "block_min_levels": [[1], [0, 2], [0, 1]],
}


def test_bench_writes_every_level(tmp_path, capsys):
    torch.manual_seed(0)
    model = ThrottleableDetector(list(CLASSES), TINY).eval()
    path = tmp_path / "det.pt"
    save_model(
        model,
        path,
        {"name": "detector", "architecture": TINY, "classes": list(CLASSES), "baseline_accuracy": 0.5},
    )
    out = tmp_path / "bench.json"
    argv = [
        "--model",
        "detector",
        "--path",
        str(path),
        "--json",
        str(out),
        "--threads",
        "1",
        "--repeats",
        "3",
        "--eval-images",
        "4",
    ]
    assert main(argv) == 0
    result = json.loads(out.read_text())
    assert result["model"] == "detector" and result["threads"] == 1 and result["baseline_accuracy"] == 0.5
    assert [row["level"] for row in result["levels"]] == [0, 1, 2]
    full = result["levels"][-1]
    assert full["mac_ratio"] == 1.0 and full["speedup"] == 1.0
    for row in result["levels"]:
        assert row["macs"] > 0 and row["latency_ms_p90"] >= row["latency_ms_median"] > 0
        assert row["speedup"] == pytest.approx(full["latency_ms_median"] / row["latency_ms_median"], rel=1e-2)
        assert row["efficiency"] == pytest.approx(row["speedup"] * row["mac_ratio"], rel=1e-2)
        assert 0.0 <= row["accuracy"] <= 1.0
    assert result["switch_us_median"] > 0 and result["reference"]["latency_ms_median"] > 0
    assert "ssdlite" in result["reference"]["name"]
    assert "| level |" in capsys.readouterr().out


def test_switching_levels_is_microseconds():
    model = ThrottleableDetector(list(CLASSES), TINY).eval()
    assert measure_switch_us(model, samples=500) < 40.0
