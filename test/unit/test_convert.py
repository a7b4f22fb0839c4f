"""torchvision -> throttleable conversion: equivalence, real compute savings, model files, CLI errors.

Random-init torchvision networks (no weights can be downloaded here) on small inputs. The
expectations come from the untouched torchvision original (the reference implementation), from
counting by hand, or from the model file's own bytes, never from the converter.
"""

from __future__ import annotations

import copy
import hashlib
import json

import numpy as np
import pytest
import torch
from cli_utils import run_train_cli

from tnn_ros.eval.agreement import detector_raw_outputs, full_level_difference, map50, max_abs_difference
from tnn_ros.models.converted import ConvertedDetector, ConvertedVideoNet, convert
from tnn_ros.models.io import save_model
from tnn_ros.throttle import count_macs, gated_ops
from tnn_ros.throttle.convert import ConvertedBlock, ConvertOptions, depth_min_levels, hidden_widths

DETECTORS = ["ssdlite320_mobilenet_v3_large", "fasterrcnn_mobilenet_v3_large_320_fpn"]
VIDEO = ["r3d_18", "mc3_18", "r2plus1d_18"]
SMALL_VIDEO = {"clip_length": 4, "frame_size": [32, 32]}


def _image_batch(seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 3, 96, 128, generator=torch.Generator().manual_seed(seed))


def _clip_batch(seed: int = 0) -> torch.Tensor:
    return torch.randn(1, 3, 4, 32, 32, generator=torch.Generator().manual_seed(seed))


_CACHE: dict[str, tuple] = {}


def _converted(arch: str):
    """(converted, original) of ``arch``, converted once per test session (conversion takes seconds)."""
    if arch not in _CACHE:
        if arch in VIDEO:
            model, original, _ = convert(
                arch, seed=0, architecture=SMALL_VIDEO, example=torch.zeros(2, 3, 4, 32, 32)
            )
        else:
            model, original, _ = convert(arch, seed=0, example=torch.zeros(2, 3, 96, 128))
        _CACHE[arch] = (model, original)
    return _CACHE[arch]


def _batch(arch: str, seed: int = 0) -> torch.Tensor:
    return _clip_batch(seed) if arch in VIDEO else _image_batch(seed)


@pytest.mark.parametrize("arch", DETECTORS + VIDEO)
def test_full_level_equals_the_original_on_every_output(arch):
    """float64 removes float32 rounding, so what is left is the conversion's own error."""
    model, original = _converted(arch)
    model64, original64 = copy.deepcopy(model).double(), copy.deepcopy(original).double()
    x = _batch(arch, seed=1).double()
    if arch in DETECTORS:
        ref = detector_raw_outputs(lambda: original64(list(x)), original64)
        got = detector_raw_outputs(lambda: model64(x), model64.net)
        assert ref.keys() == got.keys() and len(ref) >= 5  # features, heads, boxes/scores/labels
        assert max_abs_difference(ref, got) <= 1e-4
        # not vacuous: the compared features are O(1) after the random BN calibration
        assert max(float(t.abs().max()) for t in ref["backbone"]) > 0.5
    else:
        with torch.no_grad():
            reference = original64(x)
            assert float(reference.abs().max()) > 0.1
            assert float((model64(x) - reference).abs().max()) <= 1e-4
    # float32: as close to the original as the original's own float32 rounding allows (SSDlite's deepest
    # features, magnitude ~7 after 60 layers, are ~1.5e-4 from their float64 values in the original too)
    x32 = _batch(arch, seed=2)
    if arch in DETECTORS:
        exact = detector_raw_outputs(lambda: original64(list(x32.double())), original64, False)
        floor = max_abs_difference(exact, detector_raw_outputs(lambda: original(list(x32)), original, False))
    else:
        with torch.no_grad():
            floor = float((original64(x32.double()) - original(x32).double()).abs().max())
    assert full_level_difference(model, original, [x32], include_detections=False) <= max(1e-4, 2 * floor)


@pytest.mark.parametrize("arch", DETECTORS + VIDEO)
def test_lower_levels_differ_and_macs_fall_strictly(arch):
    model, original = _converted(arch)
    x = _batch(arch)
    macs = count_macs(model, x)
    assert all(a < b for a, b in zip(macs, macs[1:])), macs
    reference_macs = _torchvision_macs(original, x)
    assert macs[-1] == reference_macs  # the full level executes exactly the original's work
    assert macs[0] < 0.8 * macs[-1]
    if arch == "fasterrcnn_mobilenet_v3_large_320_fpn":
        # the card counts the box head at each level's proposal cap: 38, 75, ... 150 proposals of
        # 256*7*7*1024 + 1024*1024 + 1024*91*5 MACs each on top of the backbone
        with model.proposals_at_cap():
            capped = count_macs(model, model.example_input())
        assert all(a < b for a, b in zip(capped, capped[1:])), capped
        per_proposal = 256 * 7 * 7 * 1024 + 1024 * 1024 + 1024 * 91 * 5
        assert capped[-1] - capped[0] >= (150 - model.proposals[0]) * per_proposal
    if arch in VIDEO:
        model.set_level(0)
        with torch.no_grad():
            assert float((model(x) - original(x)).abs().max()) > 1e-3
        model.set_level(model.num_levels - 1)


def _torchvision_macs(original, x) -> int:
    """MACs of the untouched original from its own conv/linear shapes (independent of the converter)."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, torch.nn.Linear):
            total += output.numel() // output.shape[-1] * module.in_features * module.out_features
        else:
            kernel = int(np.prod(module.kernel_size))
            total += output[0].numel() * (module.in_channels // module.groups) * kernel

    handles = [
        m.register_forward_hook(hook)
        for m in original.modules()
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.Linear))
    ]
    try:
        with torch.no_grad():
            original(list(x) if x.dim() == 4 else x)
    finally:
        for h in handles:
            h.remove()
    return total


def test_switching_levels_rebuilds_nothing():
    model, _ = _converted("mc3_18")
    x = _clip_batch()
    ops = gated_ops(model)
    assert ops
    with torch.no_grad():
        model(x)
        builds = [op.cache_builds for op in ops]
        for level in [0, 5, 2, 7, 1, 0, 7]:
            model.set_level(level)
            model(x)
    assert [op.cache_builds for op in ops] == builds


def test_only_hidden_channels_are_gated_and_blocks_are_skipped_at_low_levels():
    model, original = _converted("r3d_18")
    blocks = [m for m in model.modules() if isinstance(m, ConvertedBlock)]
    assert len(blocks) == 8  # 4 stages x 2 BasicBlocks
    for block in blocks:
        first, last = block.convs[0], block.convs[-1]
        assert first.in_widths[0] == first.in_channels  # block input stays full width
        assert last.out_widths[0] == last.out_channels  # block output stays full width
        assert first.out_widths[0] < first.out_channels  # the hidden channels are sliced
    skippable = [b for b in blocks if b.skippable]
    assert len(skippable) == 5  # layer1's two blocks + the 2nd block of layers 2-4
    assert any(b.min_level > 0 for b in skippable)
    assert all(b.min_level == 0 for b in blocks if not b.skippable)


def test_depth_and_width_schedules():
    options = ConvertOptions(num_levels=8, min_width_fraction=0.25, depth_fraction=0.5)
    # 64 * (0.25 + 0.75 k / 7) rounded to multiples of 8: 16, 22.9, 29.7, 36.6, 43.4, 50.3, 57.1, 64
    assert hidden_widths(64, options) == [16, 24, 32, 40, 40, 48, 56, 64]
    assert hidden_widths(230, options)[-1] == 230  # R(2+1)D midplanes need not be multiples of 8
    # 4 skippable blocks: 2 skipped at level 0, falling to none at level 4; least important first
    levels = depth_min_levels([0.9, 0.1, 0.5, 0.3], options)
    assert levels == [0, 3, 0, 2]


def test_map50_ranks_detections_from_the_score_floor_up():
    """One box to find: a detection on it counts from a score of 0.01 up; below that it is not
    ranked, so a wrong box scoring higher costs precision only while the right one is ranked."""
    truth = [{"boxes": torch.tensor([[10.0, 10.0, 50.0, 50.0]]), "labels": torch.tensor([1])}]

    def detections(right_score: float) -> list[dict]:
        return [
            {
                "boxes": torch.tensor([[10.0, 10.0, 50.0, 50.0], [60.0, 60.0, 90.0, 90.0]]),
                "scores": torch.tensor([right_score, 0.5]),
                "labels": torch.tensor([1, 1]),
            }
        ]

    assert map50(detections(0.02), truth) == pytest.approx(0.5, abs=0.01)  # found, ranked second
    assert map50(detections(0.005), truth) == 0.0  # below the floor: never found
    assert map50(detections(0.9), truth) == pytest.approx(1.0)


def test_importance_order_puts_the_strongest_channels_first():
    torch.manual_seed(0)
    model, original = _converted("mc3_18")
    block = next(m for m in model.modules() if isinstance(m, ConvertedBlock))
    source = original.layer1[0]
    # the first hidden channel after conversion is the one with the largest |gamma| x consumer-weight norm
    score = source.conv1[1].weight.abs() * source.conv2[0].weight.transpose(0, 1).flatten(1).norm(dim=1)
    best = int(score.argmax())
    assert torch.equal(block.convs[0].weight[0], source.conv1[0].weight[best])


@pytest.mark.parametrize("arch", ["ssdlite320_mobilenet_v3_large", "r2plus1d_18"])
def test_save_load_round_trip(arch, tmp_path):
    from tnn_ros.models import load_detector, load_gesture

    model, _ = _converted(arch)
    path = tmp_path / "converted.pt"
    card = {
        "name": "converted",
        "architecture": model.architecture,
        "classes": model.classes,
        "levels": [
            {"level": k, "utilization": model.utilization_of(k), "latency_ms": 1.0 + k}
            for k in range(model.num_levels)
        ],
    }
    save_model(model, path, card)
    loaded = load_detector(str(path), warmup=False) if arch in DETECTORS else load_gesture(str(path))
    assert type(loaded) is type(model)
    x = _batch(arch, seed=3)
    with torch.no_grad():
        for level in range(model.num_levels):
            model.set_level(level)
            loaded.set_level(level)
            a, b = model(x), loaded(x)
            if arch in DETECTORS:
                for key in ("boxes", "scores", "labels"):
                    assert torch.equal(a[0][key], b[0][key])
            else:
                assert torch.equal(a, b)
    model.set_level(model.num_levels - 1)


def test_perception_pipeline_runs_converted_models(tmp_path):
    """The node's own loader builds the pipeline from converted files; labels are COCO names."""
    from tnn_ros.perception.loading import load_models

    detector, _ = _converted("ssdlite320_mobilenet_v3_large")
    video, _ = _converted("r3d_18")
    paths = {}
    for name, model in (("det", detector), ("vid", video)):
        paths[name] = tmp_path / f"{name}.pt"
        save_model(
            model, paths[name], {"name": name, "architecture": model.architecture, "classes": model.classes}
        )
    pipeline = load_models(str(paths["det"]), str(paths["vid"]), stride=1, smoothing=1)
    assert isinstance(pipeline.detector.model, ConvertedDetector)  # behind the torch engine
    assert isinstance(pipeline.gesture_recognizer.net.model, ConvertedVideoNet)
    rng = np.random.default_rng(0)
    results = [
        pipeline.process(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8), 0.3, 0.0) for _ in range(4)
    ]
    assert results[0].level == 1
    labels = {d.label for r in results for d in r.detections}
    coco = set(detector.classes)
    assert labels and labels <= coco and "person" in coco
    gestures = [r.gesture for r in results if r.gesture is not None]
    assert gestures and all(g.label in video.classes for g in gestures)


def test_wrong_kind_of_converted_file_is_rejected(tmp_path):
    from tnn_ros.models import ModelFileError, load_gesture

    model, _ = _converted("ssdlite320_mobilenet_v3_large")
    path = tmp_path / "det.pt"
    save_model(model, path, {"name": "det", "architecture": model.architecture, "classes": model.classes})
    with pytest.raises(ModelFileError, match="detection model, but a video model"):
        load_gesture(str(path))


# --- CLI --------------------------------------------------------------------------------------------


def test_cli_converts_with_a_local_weights_file(tmp_path, capsys):
    torch.manual_seed(0)
    original = __import__("torchvision").models.video.mc3_18(num_classes=400)
    weights = tmp_path / "mc3_18-a90a0ba3.pth"
    torch.save(original.state_dict(), weights)
    out = tmp_path / "mc3.pt"
    code, stdout, err = run_train_cli(
        [
            "convert",
            "--arch",
            "mc3_18",
            "--weights",
            str(weights),
            "-o",
            str(out),
            "--clip-length",
            "4",
            "--frame-size",
            "32",
            "32",
            "--eval-count",
            "4",
            "--latency-repeats",
            "1",
            "--num-levels",
            "4",
        ],
        capsys,
    )
    assert code == 0, err
    card = json.loads((tmp_path / "mc3.card.json").read_text())
    assert card["source"]["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert card["full_level_max_abs_diff"] <= 1e-4
    assert card["full_level_max_abs_diff_fp64"] <= 1e-4
    assert [row["level"] for row in card["levels"]] == [0, 1, 2, 3]
    assert "knobs" not in card and "knob_levels" not in card["architecture"]  # knobs only when asked for
    assert card["levels"][-1]["agreement"] == 1.0
    macs = [row["macs"] for row in card["levels"]]
    assert macs == sorted(set(macs))
    assert "abseiling" in card["classes"] and card["classes"][-1] == "no_gesture"
    assert "--weights" in card["conversion"]["command"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--arch", "resnet50", "--random-init"], "unknown architecture 'resnet50'"),
        (
            ["--arch", "r3d_18", "--weights", "MISSING.pth"],
            "MISSING.pth: weights file not found; fetch https://",
        ),
    ],
)
def test_cli_bad_input_exits_2_without_output(argv, message, tmp_path, capsys):
    out = tmp_path / "out.pt"
    code, _, err = run_train_cli(["convert", *argv, "-o", str(out)], capsys)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_cli_missing_default_weights_names_the_file_to_fetch(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    code, _, err = run_train_cli(
        ["convert", "--arch", "ssdlite320_mobilenet_v3_large", "-o", str(tmp_path / "o.pt")], capsys
    )
    assert code == 2
    assert "ssdlite320_mobilenet_v3_large_coco-a79551df.pth" in err and "--random-init" in err
    assert not (tmp_path / "o.pt").exists()


def test_cli_mismatched_weights_exit_2(tmp_path, capsys):
    weights = tmp_path / "r3d.pth"
    torch.save(__import__("torchvision").models.video.r3d_18(num_classes=400).state_dict(), weights)
    out = tmp_path / "o.pt"
    code, _, err = run_train_cli(
        ["convert", "--arch", "r2plus1d_18", "--weights", str(weights), "-o", str(out)], capsys
    )
    assert code == 2 and "do not match" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r3d.pth"]
