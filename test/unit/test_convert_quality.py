"""The video quality experiment of issue 8 (tnn_ros.bench.convert_quality, video mode) on tiny sizes.

Expectations come from outside the code under test: the untouched torchvision original run directly
on hand-picked frames, PyTorch's own FLOP counter (``torch.utils.flop_counter``) for the naive
knob's MACs, the clips' real labels, and hand-written rows for the dominance checks.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from tnn_ros.bench import convert_quality as cq
from tnn_ros.data.gestures import SyntheticGestureDataset
from tnn_ros.eval.accuracy import GESTURE_EVAL_SEED
from tnn_ros.models.converted import build_original, load_original_weights
from tnn_ros.sim.gestures import GESTURE_CLASSES

CLIP, SIZE = 4, (16, 16)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[str, dict]:
    """Weights of the stand-in after 2 training steps on tiny clips, and the training record."""
    torch.set_num_threads(1)
    path = str(tmp_path_factory.mktemp("vq") / "r3d.pth")
    record = cq.train_video(
        path,
        minutes=5.0,
        clip_length=CLIP,
        frame_size=SIZE,
        batch_size=2,
        max_steps=2,
        val_clips=2,
        monitor_every=1,
        monitor_clips=2,
    )
    return path, record


@pytest.fixture(scope="module")
def converted(trained, tmp_path_factory) -> str:
    from tnn_ros.train.convert import main as convert_main

    weights, _ = trained
    output = str(tmp_path_factory.mktemp("vqc") / "r3d_conv.pt")
    code = convert_main(
        [
            "--arch", "r3d_18", "--weights", weights, "--classes", ",".join(GESTURE_CLASSES),
            "--clip-length", str(CLIP), "--frame-size", str(SIZE[0]), str(SIZE[1]), "--num-levels", "2",
            "--eval-count", "2", "--latency-repeats", "1", "-o", output,
        ]
    )  # fmt: skip
    assert code == 0
    return output


def test_training_writes_a_loadable_state_dict_that_moved(trained):
    path, record = trained
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    fresh = build_original("r3d_18", len(GESTURE_CLASSES))
    load_original_weights(fresh, path)  # raises on any shape mismatch
    assert state["fc.weight"].shape == (len(GESTURE_CLASSES), 512)
    torch.manual_seed(0)  # train_video's seed: the same initial weights
    initial = build_original("r3d_18", len(GESTURE_CLASSES)).state_dict()
    assert not torch.equal(initial["fc.weight"], state["fc.weight"])  # two optimizer steps happened
    assert record["steps"] == 2 and record["clips_seen"] == 4
    assert 0.0 <= record["heldout_top1"] <= 1.0
    # The recipe is recorded, and the validation clips were scored after each step (monitor_every=1).
    assert record["label_smoothing"] == 0.1 and record["zero_init_residual"] is True
    assert [step for step, _ in record["validation_curve"]] == [1, 2]
    assert all(top1 in (0.0, 0.5, 1.0) for _, top1 in record["validation_curve"])  # 2 clips


@pytest.mark.parametrize("arch", ["r3d_18", "mc3_18", "r2plus1d_18"])
def test_zero_init_residual_makes_every_block_start_as_the_identity(arch):
    """A BasicBlock computes relu(branch(x) + shortcut(x)); with the branch's last BN scale at zero
    (and torchvision's zero BN shift) the branch adds 0, so a block without downsampling is relu(x)."""
    torch.manual_seed(2)
    model = build_original(arch, len(GESTURE_CLASSES))
    assert cq.zero_init_residual_branches(model) == 8  # 4 stages x 2 BasicBlocks in an 18-layer net
    with torch.no_grad():
        for block in (model.layer1[0], model.layer1[1], model.layer2[1], model.layer4[1]):
            assert block.downsample is None
            width = next(m for m in block.modules() if isinstance(m, torch.nn.Conv3d)).in_channels
            x = torch.randn(2, width, 2, 4, 4)
            torch.testing.assert_close(block.eval()(x), torch.relu(x), rtol=0, atol=0)


def test_original_on_short_clips_reads_the_newest_frames():
    torch.manual_seed(1)
    original = build_original("r3d_18", 3)
    naive = cq.OriginalOnShortClips(original, 8, [(4, 2), (2, 1), (8, 1)])
    clip = torch.randn(1, 3, 8, 16, 16)
    with torch.no_grad():
        for level, frames in enumerate([[1, 3, 5, 7], [6, 7], list(range(8))]):  # by hand
            naive.set_level(level)
            torch.testing.assert_close(naive(clip), original(clip[:, :, frames]), rtol=0, atol=0)


def test_dominance_on_hand_written_rows():
    naive = [
        {"setting": "4x1", "cpu_ms": 10.0, "accuracy": 0.5},
        {"setting": "8x1", "cpu_ms": 20.0, "accuracy": 0.9},
    ]
    row = {"cpu_ms": 15.0, "accuracy": 0.6}
    assert cq._dominating(row, naive, "cpu_ms") == []
    assert cq._naive_at_cost(row, naive, "cpu_ms") == 0.5
    worse = {"cpu_ms": 25.0, "accuracy": 0.8}
    assert cq._dominating(worse, naive, "cpu_ms") == ["8x1"]
    assert cq._naive_at_cost({"cpu_ms": 5.0, "accuracy": 0.1}, naive, "cpu_ms") is None


def test_evaluate_video_end_to_end(trained, converted):
    weights, _ = trained
    clips = 6
    result = cq.evaluate_video(
        [converted],
        weights,
        native="models/gesture.pt",
        num_clips=clips,
        repeats=1,
        knobs=[(2, 1), (2, 2), (9, 1)],
    )
    naive = [r for r in result["rows"] if r["model"].startswith("original")]
    conv = [r for r in result["rows"] if r["model"].startswith("converted")]
    native = [r for r in result["rows"] if r["model"].startswith("native")]
    # (9, 1) does not fit a 4-frame clip and is dropped; the full clip is always there, last.
    assert [r["setting"] for r in naive] == ["2x2", "2x1", "4x1"]
    assert len(conv) == 2 and len(native) == 8
    for row in result["rows"]:
        assert 0.0 <= row["accuracy"] <= 1.0 and row["cpu_ms"] > 0 and row["latency_ms"] > 0
    assert all(r["agreement"] is None for r in native)

    # Reference: the torchvision original run directly on the clips, against their real labels.
    original = build_original("r3d_18", len(GESTURE_CLASSES))
    load_original_weights(original, weights)
    dataset = SyntheticGestureDataset(clips, GESTURE_EVAL_SEED, CLIP, SIZE)
    batch = torch.stack([dataset[i][0] for i in range(clips)])
    labels = torch.tensor([dataset[i][1] for i in range(clips)])
    x = cq.video_preprocess(batch)
    with torch.no_grad():
        full = original(x).argmax(1)
        stride2 = original(x[:, :, 1::2]).argmax(1)
    assert naive[-1]["accuracy"] == pytest.approx(float((full == labels).float().mean()))
    assert naive[0]["accuracy"] == pytest.approx(float((stride2 == labels).float().mean()))
    assert naive[0]["agreement"] == pytest.approx(float((stride2 == full).float().mean()))
    # The converted full level is the original: same predictions, same MACs.
    assert conv[-1]["agreement"] == 1.0 and conv[-1]["accuracy"] == naive[-1]["accuracy"]
    assert conv[-1]["macs"] == naive[-1]["macs"] and conv[0]["macs"] < conv[-1]["macs"]

    # Naive MACs vs PyTorch's FLOP counter (2 FLOPs per multiply-accumulate) on the frames it reads.
    for row, frames in zip(naive, ([1, 3], [2, 3], [0, 1, 2, 3])):
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            original(x[:1, :, frames])
        assert row["macs"] == counter.get_total_flops() // 2

    (summary,) = result["summary"]
    assert summary["half_mac_level"] in (0, 1)
    expected_drop = 100 * (conv[-1]["accuracy"] - conv[summary["half_mac_level"]]["accuracy"])
    assert summary["half_mac_accuracy_drop_points"] == pytest.approx(expected_drop, abs=0.01)


def test_converted_file_with_no_gesture_among_its_classes_keeps_their_order(trained, converted):
    """The stand-in predicts no_gesture itself (class 0): loading must not move it to the end."""
    import numpy as np

    from tnn_ros.models import load_gesture

    weights, _ = trained
    model = load_gesture(converted)
    assert list(model.classes) == list(GESTURE_CLASSES)
    clip, _ = SyntheticGestureDataset(1, 5, CLIP, SIZE)[0]
    probabilities = model.predict_clip(list(clip.numpy()))
    original = build_original("r3d_18", len(GESTURE_CLASSES))
    load_original_weights(original, weights)
    with torch.no_grad():
        expected = torch.softmax(original(cq.video_preprocess(clip[None]))[0], 0).numpy()
    assert probabilities.shape == (len(GESTURE_CLASSES),)
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
