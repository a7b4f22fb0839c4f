"""`tnn-train detector --init`: fine-tuning starts from a model file's weights and keeps its history."""

import json

import pytest
import torch
from cli_utils import run_train_cli

from tnn_ros.models import save_model
from tnn_ros.models.detector import DEFAULT_ARCHITECTURE, ThrottleableDetector
from tnn_ros.sim.scenes import CLASSES
from tnn_ros.train.detector import init_from

# The CLI builds DEFAULT_ARCHITECTURE with --input-size/--levels; tiny sizes keep a run to seconds.
SMALL = ["--input-size", "64", "48", "--levels", "3"]
QUICK = [
    "--num-images",
    "4",
    "--epochs",
    "1",
    "--batch-size",
    "2",
    "--val-images",
    "3",
    "--threads",
    "1",
    "--calibrate-batches",
    "1",
    "--latency-threads",
    "1",
    "--latency-repeats",
    "1",
]


def small_detector(seed: int, **overrides) -> ThrottleableDetector:
    torch.manual_seed(seed)
    architecture = {**DEFAULT_ARCHITECTURE, "input_size": [64, 48], "num_levels": 3, **overrides}
    return ThrottleableDetector(list(CLASSES), architecture)


def save(model: ThrottleableDetector, path, training=None) -> None:
    card = {"name": "detector", "architecture": model.architecture, "classes": model.classes}
    save_model(model, path, {**card, "training": training or {"command": "made by the test"}})


def test_init_from_copies_every_tensor_of_the_file(tmp_path):
    source = small_detector(seed=1)
    save(source, tmp_path / "source.pt")
    target = small_detector(seed=2)
    assert not torch.equal(target.stem.weight, source.stem.weight)  # really different starts
    card = init_from(target, tmp_path / "source.pt")
    assert card["training"]["command"] == "made by the test"
    saved = torch.load(tmp_path / "source.pt", weights_only=True)
    own = target.state_dict()
    assert set(own) == set(saved)
    for key, value in saved.items():
        assert torch.equal(own[key], value), key


@pytest.mark.parametrize(
    "overrides, names",
    [({"num_levels": 4}, "num_levels"), ({"neck_channels": 32}, "neck_channels")],
)
def test_init_from_refuses_another_architecture_before_touching_weights(tmp_path, overrides, names):
    save(small_detector(seed=1, **overrides), tmp_path / "other.pt")
    target = small_detector(seed=2)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(ValueError, match=names):
        init_from(target, tmp_path / "other.pt")
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())


def test_cli_fine_tune_records_its_origin_and_keeps_the_previous_record(tmp_path, capsys):
    first = tmp_path / "first" / "det.pt"
    code, out, err = run_train_cli(["detector", *SMALL, *QUICK, "--output", str(first)], capsys)
    assert code == 0, err
    first_card = json.loads((tmp_path / "first" / "det.card.json").read_text())

    second = tmp_path / "second" / "det.pt"
    argv = ["detector", *SMALL, *QUICK, "--init", str(first), "--seed", "3", "--val-seed", "0"]
    code, out, err = run_train_cli(argv + ["--lr", "5e-4", "--output", str(second)], capsys)
    assert code == 0, err
    assert f"starting from the weights of {first}" in out
    training = json.loads((tmp_path / "second" / "det.card.json").read_text())["training"]
    assert training["command"].startswith("tnn-train detector") and "--init" in training["command"]
    assert training["fine_tuned_from"] == str(first)
    assert training["data"].endswith(f"fine-tuned from {first}")
    assert training["previous"] == first_card["training"]
    assert (training["seed"], training["val_seed"], training["lr"]) == (3, 0, 5e-4)


def test_cli_refuses_a_mismatching_init_with_one_line_and_exit_2(tmp_path, capsys):
    other = tmp_path / "other.pt"
    save(small_detector(seed=1, num_levels=4), other)
    output = tmp_path / "out" / "det.pt"
    code, out, err = run_train_cli(
        ["detector", *SMALL, *QUICK, "--init", str(other), "--output", str(output)], capsys
    )
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "--init" in lines[0] and "num_levels" in lines[0]
    assert not output.exists()  # nothing was trained or written


def test_cli_refuses_a_missing_init_file(tmp_path, capsys):
    code, _, err = run_train_cli(
        ["detector", *SMALL, *QUICK, "--init", str(tmp_path / "none.pt"), "--output", str(tmp_path / "o.pt")],
        capsys,
    )
    assert code == 2 and "none" in err and len(err.strip().splitlines()) == 1


def test_val_seed_defaults_to_the_seed_and_card_only_measures_on_the_cards(tmp_path, capsys, monkeypatch):
    import tnn_ros.train.detector as detector_cli
    from tnn_ros.eval.accuracy import VAL_SEED_OFFSET

    seeds = []
    measure = detector_cli.detector_map50

    def recording_map50(model, dataset, levels):
        seeds.append(dataset.seed)
        return measure(model, dataset, levels)

    monkeypatch.setattr(detector_cli, "detector_map50", recording_map50)
    output = tmp_path / "det.pt"
    code, _, err = run_train_cli(["detector", *SMALL, *QUICK, "--seed", "2", "--output", str(output)], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "det.card.json").read_text())["training"]["val_seed"] == 2
    # --card-only re-measures on the card's held-out scenes (seed 2), not those of the default --seed 0
    code, _, err = run_train_cli(
        ["detector", "--card-only", "--output", str(output), *QUICK[4:6], *QUICK[-4:]], capsys
    )
    assert code == 0, err
    assert seeds == [2 + VAL_SEED_OFFSET, 2 + VAL_SEED_OFFSET]
