"""The detection quality experiment of issue 8 (tnn_ros.bench.convert_quality: train / scene-frames /
evaluate) on tiny sizes.

Expectations come from outside the code under test: the untouched torchvision original run directly
on the same scenes, PyTorch's FLOP counter for the naive knob's MACs, the scenes' ground truth, and
hand-computed learning-rate values.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from tnn_ros.bench import convert_quality as cq
from tnn_ros.data.scenes import SyntheticDetectionDataset
from tnn_ros.models.converted import build_original, load_original_weights


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[str, dict]:
    """Weights of the SSDlite stand-in after 2 training steps, and the training record."""
    torch.set_num_threads(1)
    path = str(tmp_path_factory.mktemp("dq") / "ssd.pth")
    record = cq.train(
        minutes=5.0, output=path, batch_size=2, max_steps=2, monitor_every=1, monitor_images=1, val_images=1
    )
    return path, record


@pytest.fixture(scope="module")
def converted(trained, tmp_path_factory) -> str:
    from tnn_ros.train.convert import main as convert_main

    weights, _ = trained
    output = str(tmp_path_factory.mktemp("dqc") / "ssd_conv.pt")
    code = convert_main(
        [
            "--arch", cq.ARCH, "--weights", weights, "--classes", ",".join(cq.CATEGORIES),
            "--num-levels", "2", "--eval-count", "1", "--latency-repeats", "1", "-o", output,
        ]
    )  # fmt: skip
    assert code == 0
    return output


def test_cosine_schedule_by_hand():
    # warm-up: (step + 1) / warmup at progress 0
    assert cq.cosine_lr_scale(0, 0.0, 4) == pytest.approx(0.25)
    assert cq.cosine_lr_scale(3, 0.0, 4) == pytest.approx(1.0)
    # cosine: 0.5 * (1 + cos(pi * p)) after the warm-up, floored at 2 %
    assert cq.cosine_lr_scale(10, 0.5, 4) == pytest.approx(0.5)
    assert cq.cosine_lr_scale(10, 0.25, 4) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert cq.cosine_lr_scale(10, 1.0, 4) == pytest.approx(0.02)
    assert cq.cosine_lr_scale(10, 3.0, 4) == pytest.approx(0.02)  # past the budget: the floor


def test_zero_init_makes_every_skip_block_of_the_backbone_the_identity():
    """MobileNetV3's InvertedResidual with a skip returns x + block(x); with the projection's BN
    scale at zero (and torchvision's zero BN shift) the block adds 0."""
    from torchvision.models.mobilenetv3 import InvertedResidual

    torch.manual_seed(3)
    model = build_original(cq.ARCH, len(cq.CATEGORIES))
    blocks = [m for m in model.modules() if isinstance(m, InvertedResidual) and m.use_res_connect]
    assert cq.zero_init_inverted_residuals(model) == len(blocks) > 0
    with torch.no_grad():
        for block in blocks:
            x = torch.randn(1, block.block[0][0].in_channels, 6, 6)
            torch.testing.assert_close(block.eval()(x), x, rtol=0, atol=0)
    others = [m for m in model.modules() if isinstance(m, InvertedResidual) and not m.use_res_connect]
    assert all(float(m.block[-1][1].weight.detach().abs().sum()) > 0 for m in others)  # no skip: untouched


def test_training_writes_a_loadable_state_dict_that_moved(trained):
    path, record = trained
    fresh = build_original(cq.ARCH, len(cq.CATEGORIES))
    load_original_weights(fresh, path)  # raises on any shape mismatch
    state = torch.load(path, map_location="cpu", weights_only=True)
    torch.manual_seed(0)  # train's seed: the same initial weights
    initial = build_original(cq.ARCH, len(cq.CATEGORIES)).state_dict()
    key = "head.classification_head.module_list.0.1.weight"
    assert not torch.equal(initial[key], state[key])  # two optimizer steps happened
    assert record["steps"] == 2 and record["images_seen"] == 4 and record["zero_init_residual"] is True
    assert [step for step, _ in record["validation_curve"]] == [1, 2]
    assert 0.0 <= record["heldout_map50"] <= 1.0 or record["heldout_map50"] == -1.0


def test_scene_frames_are_the_seeded_scenes_and_refuse_a_full_folder(tmp_path):
    folder = tmp_path / "frames"
    assert cq.write_scene_frames(str(folder), 3) == 3
    files = sorted(folder.iterdir())
    assert [f.name for f in files] == ["000000.png", "000001.png", "000002.png"]
    expected, _, _ = SyntheticDetectionDataset(3, 320, 240, seed=cq.SCENE_FRAMES_SEED).scene(2)
    written = cv2.cvtColor(cv2.imread(str(files[2])), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(written, expected)  # PNG is lossless
    with pytest.raises(ValueError, match="not empty"):
        cq.write_scene_frames(str(folder), 1)


def test_original_at_resolutions_is_the_original_at_that_input_side():
    torch.manual_seed(4)
    original = build_original(cq.ARCH, len(cq.CATEGORIES)).eval()
    naive = cq.OriginalAtResolutions(original, [160, 320])
    image = SyntheticDetectionDataset(1, 320, 240, seed=1)[0][0]
    reference = build_original(cq.ARCH, len(cq.CATEGORIES)).eval()
    reference.load_state_dict(original.state_dict())
    with torch.no_grad():
        for level, side in enumerate([160, 320]):
            naive.set_level(level)
            got = naive(image[None])[0]
            t = reference.transform
            t.fixed_size, t.min_size, t.max_size = (side, side), (side,), side
            want = reference([image])[0]
            keep = want["labels"] > 0
            torch.testing.assert_close(got["boxes"], want["boxes"][keep])
            torch.testing.assert_close(got["labels"], want["labels"][keep] - 1)  # ground-truth ids
            # MACs: PyTorch's FLOP counter on the original at that side (2 FLOPs per MAC)
            counter = FlopCounterMode(display=False)
            with counter:
                reference([image])
            assert cq._macs(naive, image[None])[level] == counter.get_total_flops() // 2


def test_evaluate_detection_end_to_end(trained, converted, monkeypatch):
    from tnn_ros.eval.agreement import SCORE_FLOOR

    # Every detection of the original that mAP ranks is pseudo ground truth, so a 2-step stand-in
    # has boxes to agree on.
    monkeypatch.setattr(cq, "PSEUDO_THRESHOLD", SCORE_FLOOR)
    weights, _ = trained
    result = cq.evaluate([converted], weights, num_images=2, repeats=1, resolutions=[160])
    naive = [r for r in result["rows"] if r["model"].startswith("original")]
    conv = [r for r in result["rows"] if r["model"].startswith("converted")]
    native = [r for r in result["rows"] if r["model"].startswith("native")]
    assert [r["setting"] for r in naive] == ["160x160", "320x320"]
    assert len(conv) == 2 and len(native) == 8
    assert all(r["agreement"] is None for r in native)
    for row in result["rows"]:
        assert row["cpu_ms"] > 0 and row["latency_ms"] > 0 and row["macs"] > 0
    # The converted full level is the original: same detections, same MACs.
    assert conv[-1]["agreement"] == pytest.approx(1.0) and naive[-1]["agreement"] == pytest.approx(1.0)
    assert conv[-1]["accuracy"] == pytest.approx(naive[-1]["accuracy"])
    assert conv[-1]["macs"] == naive[-1]["macs"] and conv[0]["macs"] < conv[-1]["macs"]

    # Accuracy against the scenes' ground truth, recomputed with torchmetrics on the original itself
    # (ranking what scores at least the agreement module's floor, as every mAP figure does).
    from torchmetrics.detection import MeanAveragePrecision

    original = build_original(cq.ARCH, len(cq.CATEGORIES)).eval()
    load_original_weights(original, weights)
    metric = MeanAveragePrecision(
        iou_thresholds=[0.5], box_format="xyxy", max_detection_thresholds=[1, 10, 300]
    )
    dataset = SyntheticDetectionDataset(2, 320, 240, seed=cq.VAL_SEED)
    with torch.no_grad():
        for i in range(2):
            image, target = dataset[i]
            det = original([image])[0]
            keep = (det["labels"] > 0) & (det["scores"] >= SCORE_FLOOR)
            pred = {
                "boxes": det["boxes"][keep],
                "scores": det["scores"][keep],
                "labels": det["labels"][keep] - 1,
            }
            metric.update([pred], [{"boxes": target["boxes"], "labels": target["labels"].long()}])
    assert naive[-1]["accuracy"] == pytest.approx(float(metric.compute()["map_50"]))

    (summary,) = result["summary"]
    assert summary["half_mac_level"] in (0, 1)
    half = conv[summary["half_mac_level"]]
    assert summary["half_mac_agreement_drop_points"] == pytest.approx(
        100 * (1.0 - half["agreement"]), abs=0.01
    )
    within = [r["level"] for r in conv if r["agreement"] >= conv[-1]["agreement"] - 0.03]
    assert summary["cheapest_level_within_3_points_agreement"] == within[0]  # the full level at worst


def test_evaluate_refuses_a_file_that_is_not_the_converted_stand_in(trained, tmp_path, capsys):
    """One line on stderr and exit 2, before any scene is scored: a missing file, or a detector that
    is not the SSDlite stand-in (the native one)."""
    from tnn_ros.models.io import shipped_model_path

    weights, _ = trained
    out = tmp_path / "q.json"
    for converted, says in (
        (str(tmp_path / "missing.pt"), "missing"),
        (str(shipped_model_path("detector")), "not an"),
    ):
        args = [
            "evaluate",
            "--original",
            weights,
            "--converted",
            converted,
            "--images",
            "1",
            "--json",
            str(out),
        ]
        assert cq.main(args) == 2
        err = capsys.readouterr().err.strip()
        assert (
            len(err.splitlines()) == 1 and says in err and err.startswith("convert_quality evaluate: error:")
        )
        assert not out.exists()
