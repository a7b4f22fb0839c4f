"""`tnn-bench throttle`: JSON layout and the arithmetic of its derived columns (tiny model)."""

import json
import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from tnn_ros.bench.throttle_bench import main
from tnn_ros.eval.latency import measure_switch_us
from tnn_ros.models import save_model
from tnn_ros.models.detector import ThrottleableDetector
from tnn_ros.sim.scenes import CLASSES

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


class _CountTensorOps(TorchDispatchMode):
    """Records every aten op that runs while active (what would make a level switch expensive)."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


def test_switching_levels_runs_no_tensor_work_and_moves_no_weights():
    """Why a switch costs microseconds (the time itself is `tnn-bench throttle`'s switch_us column)."""
    model = ThrottleableDetector(list(CLASSES), TINY).eval()
    storage = {name: (t.data_ptr(), t.shape) for name, t in model.state_dict().items()}
    with _CountTensorOps() as counter:
        for level in (2, 0, 1, 2, 0):
            model.set_level(level)
    assert counter.ops == []
    with _CountTensorOps() as control:  # the counter does see tensor work when there is some
        torch.ones(2).add_(1)
    assert control.ops
    assert model.level == 0
    assert {name: (t.data_ptr(), t.shape) for name, t in model.state_dict().items()} == storage
    switch_us = measure_switch_us(model, samples=20)
    assert math.isfinite(switch_us) and switch_us > 0.0
    assert model.level == 0  # the measurement restores the level it found
