"""`tnn-bench throttle --backend onnxruntime`: backend field, torch comparison, per-layer profile."""

import json

import pytest
import torch

from tnn_ros.bench.layer_profile import _layer_of_node
from tnn_ros.bench.throttle_bench import main
from tnn_ros.models import save_model
from tnn_ros.models.detector import ThrottleableDetector
from tnn_ros.sim.scenes import CLASSES

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

TINY = {
    "input_size": [96, 64],
    "num_levels": 3,
    "stem_channels": 16,
    "stage_channels": [16, 32, 64],
    "channel_multiple": 8,
    "neck_channels": 32,
    "block_min_levels": [[1], [0, 2], [0, 1]],
}


@pytest.mark.slow
def test_bench_onnxruntime_backend_writes_profile_and_comparison(tmp_path, monkeypatch):
    from tnn_ros.bench import throttle_bench

    # Which engines share timing rounds: the spinning variant must never be timed beside torch.
    rounds = []
    real_measure_latency = throttle_bench.measure_latency

    def spy(model, example, others=None, **kwargs):
        rounds.append({"main": model.engine_info().get("spinning"), "others": sorted(others or {})})
        return real_measure_latency(model, example, others=others, **kwargs)

    monkeypatch.setattr(throttle_bench, "measure_latency", spy)
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
        "--backend",
        "onnxruntime",
        "--json",
        str(out),
        "--threads",
        "1",
        "--repeats",
        "3",
        "--eval-images",
        "2",
        "--cpu-frames",
        "2",
    ]
    assert main(argv) == 0
    result = json.loads(out.read_text())
    assert result["backend"] == "onnxruntime"
    assert result["engine"]["provider"] == "CPUExecutionProvider"
    assert set(result["comparison"]) == {"torch", "onnxruntime_spinning"}
    assert all(len(c["latency_ms_median"]) == 3 for c in result["comparison"].values())
    # The exported graphs went to the model's cache folder.
    assert (tmp_path / ".tnn_engines" / "det").is_dir()
    for backend in ("torch", "onnxruntime"):
        for which, level in (("lowest", 0), ("full", 2)):
            entry = result["profile"][backend][which]
            assert entry["level"] == level and entry["forward_ms_median"] > 0
            # Layers carry the torch module names on both backends; the stem runs at every level.
            assert "stem" in entry["layers_ms"] and all(v >= 0 for v in entry["layers_ms"].values())
    # Level 0 skips stages.0.0 (block_min_levels [[1], ...]): no time can be attributed to it.
    ort_profile = result["profile"]["onnxruntime"]
    for entry in ort_profile.values():
        # The same kernel events summed per op type: the same total, and the convs among them.
        assert sum(entry["ops_ms"].values()) == pytest.approx(sum(entry["layers_ms"].values()), abs=2e-3)
        assert entry["ops_ms"]["Conv"] > 0 and "stem" not in entry["ops_ms"]
    assert not any(k.startswith("stages.0.0") for k in ort_profile["lowest"]["layers_ms"])
    assert any(k.startswith("stages.0.0") for k in ort_profile["full"]["layers_ms"])
    assert set(result["profile"]["pre_post_ms"]) == {"96x64", "192x128"}
    summary = result["summary"]
    assert summary["lowest_over_full"] == pytest.approx(
        result["levels"][0]["latency_ms_median"] / result["levels"][-1]["latency_ms_median"], rel=1e-2
    )
    assert summary["targets_met"]["switch<=40us"] == (summary["switch_us_median"] <= 40)
    assert set(result["cpu_ms_per_frame_at_15hz"]) == {"torch", "onnxruntime", "onnxruntime_spinning"}
    # Whole frames (preprocess + network + decode) per level on every backend timed.
    assert set(result["frame"]) == {"torch", "onnxruntime", "onnxruntime_spinning"}
    assert all(len(entry["cpu_ms_median"]) == 3 for entry in result["frame"].values())
    assert summary["frame_cpu_min_efficiency"] == min(result["frame"]["onnxruntime"]["cpu_efficiency"])
    # torch shares its rounds with the non-spinning engine only; the spinning one has its own block
    assert rounds == [
        {"main": False, "others": ["torch"]},
        {"main": True, "others": ["onnxruntime"]},
    ]
    assert result["comparison"]["onnxruntime_spinning"]["timed_with"].startswith("onnxruntime")
    assert len(result["comparison"]["onnxruntime_spinning"]["onnxruntime_cpu_ms_median_same_block"]) == 3
    assert set(result["machine"]) >= {"load_average_1min", "cores", "oversubscribed"}


def test_onnx_node_names_map_to_module_paths():
    assert _layer_of_node("/net/stages.1.0/conv1/Relu_output_0_nchwc") == "stages.1.0.conv1"
    assert _layer_of_node("/net/stem/Conv") == "stem"
    assert _layer_of_node("fused /net/fcs.0/Gemm") == "fcs.0"
    assert _layer_of_node("/net/Resize_output_0_nchwc") == "(other) Resize"
    assert _layer_of_node("ReorderOutput_token_3") == "(layout reorders)"
    names = frozenset({"stem", "stages", "stages.1", "stages.1.0", "stages.1.0.conv1"})
    assert _layer_of_node("/net/stages.1.0/conv1/Conv", names) == "stages.1.0.conv1"
    assert _layer_of_node("/net/Slice_2/GatherSliceToSplitFusion", names) == "(other) Slice"
    # The gesture net's export form calls the modules itself: no "/net" scope.
    assert _layer_of_node("/stages.1.0/conv1/Relu_output_0_nchwc", names) == "stages.1.0.conv1"
    assert _layer_of_node("/MaxPool_1_output_0_nchwc", names) == "(other) MaxPool"
