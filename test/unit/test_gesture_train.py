"""Gesture training: loss goes down, the CLI trains/resumes/writes a card, and the shipped model works."""

import argparse
import itertools
import json

import pytest
import torch

from tnn_ros.data.gestures import SyntheticGestureDataset
from tnn_ros.eval.accuracy import GESTURE_EVAL_SEED, gesture_top1, gesture_top1_heldout
from tnn_ros.models import load_gesture
from tnn_ros.models.gesture import ThrottleableGestureNet
from tnn_ros.sim.gestures import GESTURE_CLASSES
from tnn_ros.throttle import count_macs
from tnn_ros.train import gesture as gesture_train
from tnn_ros.train.common import TrainConfig, train

TINY = {
    "clip_length": 4,
    "frame_size": [16, 16],
    "num_levels": 3,
    "conv1": 8,
    "stages": [[16], [16]],
    "fc": [32],
    "min_fraction": 0.5,
}


def _batch(num_clips=16, seed=0):
    dataset = SyntheticGestureDataset(num_clips, seed=seed, clip_length=4, frame_size=(16, 16))
    clips, labels = zip(*(dataset[i] for i in range(num_clips)))
    return ThrottleableGestureNet.preprocess(torch.stack(clips)), torch.tensor(labels)


def _loss_at(model, level, clips, labels):
    model.set_level(level)
    with torch.no_grad():
        return gesture_train.classification_loss(model(clips), labels)[0].item()


def test_a_few_sandwich_steps_reduce_the_loss_at_full_and_lowest_level():
    torch.manual_seed(0)
    model = ThrottleableGestureNet(GESTURE_CLASSES, TINY).train()
    clips, labels = _batch()
    before = [_loss_at(model, level, clips, labels) for level in (0, 2)]
    config = TrainConfig(steps=25, lr=3e-3, warmup_steps=1, sandwich=True, num_random_levels=1, log_every=25)
    result = train(
        model,
        itertools.repeat((clips, labels)),
        gesture_train.classification_loss,
        config,
        distill_fn=gesture_train.distillation_loss,
        desc="test",
    )
    model.train()
    after = [_loss_at(model, level, clips, labels) for level in (0, 2)]
    assert result.steps == 25
    assert after[0] < 0.7 * before[0] and after[1] < 0.7 * before[1], (before, after)


def test_distillation_loss_is_zero_for_identical_outputs_and_positive_otherwise():
    logits = torch.randn(4, 8)
    labels = torch.zeros(4, dtype=torch.long)
    assert gesture_train.distillation_loss(logits, logits, labels).item() == pytest.approx(0.0, abs=1e-6)
    assert gesture_train.distillation_loss(logits, -logits, labels).item() > 0.1


def test_evaluate_is_a_deterministic_fraction():
    torch.manual_seed(0)
    model = ThrottleableGestureNet(GESTURE_CLASSES, TINY).eval()
    first = gesture_top1_heldout(model, num_clips=16, seed=5)
    assert 0.0 <= first <= 1.0
    assert gesture_top1_heldout(model, num_clips=16, seed=5) == first


def _tiny_run(output, val_clips: int = 8, latency_repeats: int = 2) -> list[str]:
    """CLI options of a seconds-long training run on 16x16 clips, 2 levels, writing ``output``."""
    return [
        *("--batch-size", "4", "--frame-size", "16", "16", "--levels", "2"),
        *("--val-clips", str(val_clips), "--calibrate-batches", "1", "--workers", "0", "--threads", "1"),
        *("--latency-repeats", str(latency_repeats), "--output", str(output)),
    ]


def test_cli_trains_writes_a_card_and_resumes(tmp_path, capsys):
    output = tmp_path / "gesture.pt"
    common = _tiny_run(output)
    assert gesture_train.main(["--steps", "2", *common]) == 0
    card = json.loads((tmp_path / "gesture.card.json").read_text())
    assert card["name"] == "gesture" and card["num_levels"] == 2 and card["accuracy_metric"] == "top1"
    assert [lv["level"] for lv in card["levels"]] == [0, 1]
    assert card["levels"][0]["macs"] < card["levels"][1]["macs"]
    assert all(0 <= lv["accuracy"] <= 1 and lv["latency_ms"] > 0 for lv in card["levels"])
    assert card["training"]["command"].startswith("tnn-train gesture --steps 2")
    model = load_gesture(str(output))
    assert model.frame_size == (16, 16) and model.num_levels == 2

    assert gesture_train.main(["--steps", "3", "--resume", *common]) == 0
    assert "resumed from" in capsys.readouterr().out
    assert json.loads((tmp_path / "gesture.card.json").read_text())["training"]["steps"] == 3


def test_cli_trains_a_gated_conv1_net_and_card_only_rebuilds_it_from_its_card(tmp_path):
    output = tmp_path / "gesture.pt"
    common = ["--frame-size", "16", "16", "--levels", "3", "--val-clips", "4", "--calibrate-batches", "1"]
    common += ["--workers", "0", "--threads", "1", "--latency-repeats", "1", "--output", str(output)]
    train_args = ["--steps", "1", "--batch-size", "2", "--temporal", "valid", "--lowest-fraction", "0.25"]
    train_args += ["--conv1-min-width", "2", "--conv1-stride-levels", "1"]
    assert gesture_train.main([*train_args, *common]) == 0
    model = load_gesture(str(output))
    assert model.conv1.out_widths == [2, 5, 8] and model.architecture["temporal"] == "valid"
    assert model.conv1.spatial_strides == [2, 1, 1]
    assert model.convs[0].out_widths == [16, 48, 64]  # level 0 at 0.25 of 64 (24 without the flag)
    # --card-only without the architecture flags: the card says which net the weights belong to.
    assert gesture_train.main(["--card-only", *common]) == 0
    card = json.loads((tmp_path / "gesture.card.json").read_text())
    assert card["architecture"]["conv1_min_width"] == 2 and card["architecture"]["temporal"] == "valid"
    assert card["architecture"]["conv1_stride_levels"] == 1
    assert card["architecture"]["lowest_fraction"] == 0.25
    with pytest.raises(SystemExit) as exit_info:  # level 0 wider than min_fraction (0.375)
        gesture_train.main([*train_args, "--lowest-fraction", "0.5", *common])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:  # more levels than the net has
        gesture_train.main([*train_args[:-1], "4", *common])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:  # wider than conv1 (8): refused before any work
        gesture_train.main([*train_args[:-3], "99", "--conv1-stride-levels", "1", *common])
    assert exit_info.value.code == 2


def test_steps_0_recalibrates_only_the_named_levels_of_the_init_weights(tmp_path):
    """--init M --steps 0 --conv1-stride-levels 1 --calibrate-levels 0: the strided level's BN statistics
    are re-estimated, every other tensor is M's exactly; the card keeps how M came about."""
    first = tmp_path / "first.pt"
    assert gesture_train.main(["--steps", "1", "--temporal", "valid", *_tiny_run(first)]) == 0
    second = tmp_path / "second.pt"
    args = ["--steps", "0", "--temporal", "valid", "--init", str(first), "--conv1-stride-levels", "1"]
    assert gesture_train.main([*args, "--calibrate-levels", "0", *_tiny_run(second)]) == 0
    before, after = load_gesture(str(first)).state_dict(), load_gesture(str(second)).state_dict()
    changed = {key for key in before if not torch.equal(before[key], after[key])}
    assert changed and all(".norms.0." in key for key in changed)
    assert load_gesture(str(second)).conv1.spatial_strides == [2, 1]
    card = json.loads((tmp_path / "second.card.json").read_text())
    assert card["training"]["steps"] == 0 and "levels [0] only" in card["training"]["data"]
    assert card["training"]["previous"]["command"].startswith("tnn-train gesture --steps 1")
    for bad in (["--steps", "0"], [*args, "--calibrate-levels", "0-2"], [*args, "--calibrate-levels", "x"]):
        with pytest.raises(SystemExit) as exit_info:  # no --init; level 2 of a 2-level net; not levels
            gesture_train.main([*bad, *_tiny_run(tmp_path / "bad.pt")])
        assert exit_info.value.code == 2


def test_train_norms_of_changes_only_those_levels_norms(tmp_path):
    """--train-norms-of 0: level 0's BatchNorm scales/shifts train (and its statistics are re-estimated);
    the shared weights and the full level stay the init file's exactly."""
    first = tmp_path / "first.pt"
    assert gesture_train.main(["--steps", "1", "--temporal", "valid", *_tiny_run(first)]) == 0
    second = tmp_path / "second.pt"
    args = ["--steps", "3", "--lr", "0.05", "--temporal", "valid", "--init", str(first)]
    assert (
        gesture_train.main([*args, "--conv1-stride-levels", "1", "--train-norms-of", "0", *_tiny_run(second)])
        == 0
    )
    before, after = load_gesture(str(first)).state_dict(), load_gesture(str(second)).state_dict()
    changed = {key for key in before if not torch.equal(before[key], after[key])}
    assert all(".norms.0." in key for key in changed)
    assert any(key.endswith(".norms.0.weight") for key in changed)  # trained, not only re-estimated
    assert (
        "only the BatchNorm scales/shifts of levels [0] trained"
        in json.loads((tmp_path / "second.card.json").read_text())["training"]["data"]
    )
    for bad in (["--train-norms-of", "1"], ["--baseline", "--train-norms-of", "0"]):  # 1 is the full level
        with pytest.raises(SystemExit) as exit_info:
            gesture_train.main([*args, *bad, *_tiny_run(tmp_path / "bad.pt")])
        assert exit_info.value.code == 2


@torch.no_grad()
def test_init_from_an_ungated_file_orders_and_gates_conv1(tmp_path):
    torch.manual_seed(0)
    source = ThrottleableGestureNet(architecture={**TINY, "temporal": "valid"})
    for norm in source.conv1.norms:  # distinct scales, so the importance order is not the identity
        norm.weight.uniform_(0.2, 2.0)
        norm.running_var.uniform_(0.5, 2.0)
    source.eval()
    path = tmp_path / "ungated.pt"
    torch.save(source.state_dict(), path)
    gated = ThrottleableGestureNet(architecture={**TINY, "temporal": "valid", "conv1_min_width": 2})
    gesture_train.init_from(gated, path)
    gated.eval()
    # Importance by hand: |top-level BN scale| x L2 norm of the convs.0 weights reading the channel.
    scale = source.conv1.norms[-1].weight.abs()
    reading = torch.stack([source.convs[0].weight[:, c].norm() for c in range(8)])
    order = torch.argsort(scale * reading, descending=True, stable=True)
    assert order.tolist() != list(range(8))
    torch.testing.assert_close(gated.conv1.weight, source.conv1.weight[order])
    torch.testing.assert_close(gated.convs[0].weight, source.convs[0].weight[:, order])
    width = gated.conv1.out_widths[0]
    assert width == 2 and gated.conv1.norms[0].weight.shape == (2,)
    kept_mean = source.conv1.norms[0].running_mean[order[:2]]
    torch.testing.assert_close(gated.conv1.norms[0].running_mean, kept_mean)
    clips = torch.randn(2, *source.example_input().shape[1:])
    source.set_level(source.num_levels - 1)
    gated.set_level(gated.num_levels - 1)
    torch.testing.assert_close(gated(clips), source(clips), atol=1e-4, rtol=1e-4)  # full level unchanged


def _saved_net_with_distinct_norms(tmp_path, arch: dict, name: str):
    """A net of ``arch`` whose per-level BatchNorms differ from each other (so a test can tell which
    one a tensor came from), saved as ``tmp_path / name``; returns (net, path)."""
    torch.manual_seed(0)
    source = ThrottleableGestureNet(architecture=arch)
    for module in source.modules():
        if isinstance(module, torch.nn.BatchNorm3d):
            module.weight.uniform_(0.5, 2.0)
            module.running_mean.uniform_(-1.0, 1.0)
    path = tmp_path / name
    torch.save(source.state_dict(), path)
    return source, path


@torch.no_grad()
def test_init_from_a_net_of_another_channel_multiple_starts_changed_levels_from_same_width_norms(tmp_path):
    """A multiple-8 file into a multiple-16 net: same weights; a level whose width changed starts from
    the BatchNorm of the nearest level that had its width; unchanged levels are copied exactly."""
    arch = {**TINY, "num_levels": 5, "stages": [[64], [16]], "min_fraction": 0.375, "temporal": "valid"}
    source, path = _saved_net_with_distinct_norms(tmp_path, arch, "eight.pt")
    blocked = ThrottleableGestureNet(architecture={**arch, "channel_multiple": 16})
    gesture_train.init_from(blocked, path)
    old, new = source.convs[0], blocked.convs[0]
    assert old.out_widths == [24, 32, 48, 56, 64] and new.out_widths == [32, 32, 48, 48, 64]
    torch.testing.assert_close(new.weight, old.weight)
    torch.testing.assert_close(new.norms[0].weight, old.norms[1].weight)  # 24 -> 32: level 1's (32)
    torch.testing.assert_close(new.norms[3].running_mean, old.norms[2].running_mean)  # 56 -> 48: level 2's
    for level in (1, 2, 4):  # width kept: its own
        torch.testing.assert_close(new.norms[level].weight, old.norms[level].weight)
    state = source.state_dict()
    norm = gesture_train._LEVEL_NORM.fullmatch("convs.0.norms.0.bias")
    cut = gesture_train._norm_of_width(state, norm, 16, 5)  # no level had 16: level 0's own (24), cut
    torch.testing.assert_close(cut, old.norms[0].bias[:16])
    norm = gesture_train._LEVEL_NORM.fullmatch("convs.0.norms.1.bias")
    cut = gesture_train._norm_of_width(state, norm, 40, 5)  # none had 40, level 1's (32) is narrower
    torch.testing.assert_close(cut, old.norms[4].bias[:40])


@torch.no_grad()
def test_init_from_into_a_narrower_lowest_level_keeps_every_other_level_bit_for_bit(tmp_path):
    """lowest_fraction + a strided conv1 at level 0 only: the file's weights and levels 1.. load as they
    were; level 0's BatchNorm starts from its own, cut to the narrower width."""
    arch = {**TINY, "num_levels": 4, "stages": [[64], [16]], "min_fraction": 0.375, "temporal": "valid"}
    source, path = _saved_net_with_distinct_norms(tmp_path, arch, "source.pt")
    cheap = ThrottleableGestureNet(architecture={**arch, "lowest_fraction": 0.25, "conv1_stride_levels": 1})
    gesture_train.init_from(cheap, path)
    assert source.convs[0].out_widths == [24, 40, 48, 64] and cheap.convs[0].out_widths == [16, 40, 48, 64]
    torch.testing.assert_close(cheap.convs[0].norms[0].weight, source.convs[0].norms[0].weight[:16])
    old, new = source.state_dict(), cheap.state_dict()
    assert all(torch.equal(new[k], old[k]) for k in new if ".norms.0." not in k)
    clips = torch.randn(2, 3, TINY["clip_length"], *TINY["frame_size"][::-1])
    for level in (1, 2, 3):
        for net in (source, cheap):
            net.set_level(level)
        torch.testing.assert_close(cheap(clips), source(clips), atol=0, rtol=0)


CARD_TOLERANCE = 0.03  # 3 points of top-1


def test_shipped_model_meets_its_card_on_the_card_evaluation_set():
    """Re-measure the shipped net on the card's own held-out clips (deterministic: seed + count)."""
    model = load_gesture()
    card = model.card
    assert model.classes == list(GESTURE_CLASSES) and model.num_levels == card["num_levels"] == 8
    assert [lv["macs"] for lv in card["levels"]] == count_macs(model, model.example_input())
    clips = gesture_train.build_parser().get_default("val_clips")  # what `tnn-train gesture` measured on
    dataset = SyntheticGestureDataset(
        clips,
        seed=GESTURE_EVAL_SEED,
        clip_length=model.clip_length,
        frame_size=model.frame_size,
        classes=model.classes,
    )
    levels = [0, model.num_levels - 1]
    for level, value in zip(levels, gesture_top1(model, dataset, levels)):
        stated = card["levels"][level]["accuracy"]
        assert value >= stated - CARD_TOLERANCE, f"level {level}: top-1 {value:.4f}, card says {stated}"
        assert value <= stated + CARD_TOLERANCE, f"level {level}: top-1 {value:.4f}, card says {stated}"


def test_classification_loss_takes_soft_targets_equal_to_index_targets_when_one_hot():
    logits = torch.randn(6, 8)
    labels = torch.tensor([0, 1, 2, 3, 4, 7])
    hard, parts = gesture_train.classification_loss(logits, labels)
    one_hot = torch.nn.functional.one_hot(labels, 8).float()
    soft, soft_parts = gesture_train.classification_loss(logits, one_hot)
    assert soft.item() == pytest.approx(hard.item(), rel=1e-6)
    assert soft_parts["acc"].item() == parts["acc"].item()


def test_class_repeats_option_is_parsed_recorded_and_checked(tmp_path, capsys):
    parse = gesture_train._class_repeats
    assert parse("rotate=2") == {"rotate": 2} and parse("rotate=2, push=3") == {"rotate": 2, "push": 3}
    for bad in ("rotate", "rotate=0", "rotate=x", "wave=2"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse(bad)
    output = tmp_path / "gesture.pt"
    args = ["--steps", "1", "--class-repeats", "rotate=2", *_tiny_run(output, val_clips=4, latency_repeats=1)]
    assert gesture_train.main(args) == 0
    card = json.loads((tmp_path / "gesture.card.json").read_text())
    assert "class repeats per label cycle: rotate x2" in card["training"]["data"]
    with pytest.raises(SystemExit) as exit_info:
        gesture_train.main(["--class-repeats", "wave=2", "--output", str(output)])
    assert exit_info.value.code == 2 and "unknown class 'wave'" in capsys.readouterr().err
