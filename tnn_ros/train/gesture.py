"""`tnn-train gesture`: train the throttleable gated C3D (or its non-throttleable baseline).

The loop is :func:`tnn_ros.train.common.train`: every step follows the sandwich rule (the full level
learns from the labels; the lowest level and ``--random-levels`` random levels learn from the labels
and, by in-place distillation, from the full level's soft predictions). Each level keeps its own
BatchNorm (switchable BN), recalibrated per level at the end (``--calibrate-levels``: only those).
``--baseline`` trains the same network with a single level (no throttling) for the same number of
steps: the reference accuracy. ``--init M --steps 0`` trains nothing: M's weights with the BatchNorm
statistics re-estimated, e.g. of the levels an architecture change touched (``--conv1-stride-levels
4 --calibrate-levels 0-3`` leaves levels 4-7 exactly as they were).

Data: ``--data synthetic`` renders fresh seeded clips on the fly (:mod:`tnn_ros.sim.gestures`);
``--data jester --data-dir DIR`` reads Jester-style folders of frames (:mod:`tnn_ros.data.jester`).
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ..data.gestures import SyntheticGestureDataset
from ..eval.accuracy import GESTURE_EVAL_SEED, gesture_top1
from ..models.gesture import (
    DEFAULT_ARCHITECTURE,
    ThrottleableGestureNet,
    check_architecture,
    conv1_channel_order,
    permute_conv1_channels,
)
from ..models.io import card_path, load_state, read_card, write_card
from ..sim.gestures import GESTURE_CLASSES
from .common import (
    TrainConfig,
    calibrate_bn,
    default_output,
    level_table,
    seed_everything,
    train,
    write_model_card,
)

# Seeds of the held-out evaluation clips and of the training stream never overlap.
TRAIN_SEED_BASE = 1_000_000
CALIBRATION_SEED_BASE = 3_000_000
LABEL_SMOOTHING = 0.1
ACCURACY_METRIC = "top1 on held-out seeded synthetic clips (tnn_ros.sim.gestures)"


# --- losses -------------------------------------------------------------------------------------------


def classification_loss(logits: Tensor, labels: Tensor) -> tuple[Tensor, dict]:
    """Cross-entropy with label smoothing, and the batch accuracy for the log.

    ``labels``: class indices, or (N, classes) probability targets (soft labels of partial stream
    windows); the accuracy then counts the target's top class.
    """
    loss = F.cross_entropy(logits, labels, label_smoothing=LABEL_SMOOTHING)
    top = labels.argmax(1) if labels.dim() == 2 else labels
    return loss, {"acc": (logits.argmax(1) == top).float().mean()}


def distillation_loss(student: Tensor, teacher: Tensor, labels: Tensor) -> Tensor:
    """In-place distillation: KL(teacher || student) on the full level's detached probabilities."""
    return F.kl_div(F.log_softmax(student, dim=1), F.softmax(teacher, dim=1), reduction="batchmean")


# --- data ---------------------------------------------------------------------------------------------


class OneHot(Dataset):
    """Items of ``dataset`` with their class index as a one-hot float vector (to batch with soft labels)."""

    def __init__(self, dataset: Dataset, num_classes: int) -> None:
        self.dataset, self.num_classes = dataset, num_classes

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        clip, label = self.dataset[index]
        return clip, F.one_hot(torch.tensor(label), self.num_classes).float()


class Interleaved(Dataset):
    """Items of two datasets in turn: even indices from ``first``, odd ones from ``second``."""

    def __init__(self, first: Dataset, second: Dataset) -> None:
        self.first, self.second = first, second

    def __len__(self) -> int:
        return 2 * min(len(self.first), len(self.second))

    def __getitem__(self, index: int):
        return (self.second if index % 2 else self.first)[index // 2]


def synthetic_batches(
    arch: dict,
    classes: list[str],
    batch_size: int,
    seed: int,
    start_step: int = 0,
    workers: int = 1,
    stream_mix: bool = False,
    stream_boundary: float = 0.0,
    stream_drop_rate: float = 0.0,
    stream_partial: float = 0.0,
    class_repeats: dict[str, int] | None = None,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Endless fresh synthetic batches, preprocessed for the net.

    ``stream_mix``: every other clip is a window of the simulated camera stream
    (:class:`~tnn_ros.data.stream.StreamGestureDataset`: scene backgrounds, gesture onsets and the
    hand's jumps between gestures as no_gesture) instead of an isolated gesture clip;
    ``stream_boundary`` / ``stream_drop_rate`` / ``stream_partial`` are its ``boundary_fraction`` /
    ``drop_rate`` / ``partial_fraction``; with ``stream_partial > 0`` the labels are probability
    vectors (one-hot for the isolated clips, soft for partial stream windows). ``class_repeats``:
    classes drawn that many times per label cycle in both kinds of clips
    (:func:`~tnn_ros.data.gestures.label_cycle`).

    Batch ``s`` depends only on (seed, s), so a resumed run goes on with new clips instead of
    replaying the ones it already saw.
    """
    dataset = SyntheticGestureDataset(
        10**9,
        seed=seed,
        clip_length=arch["clip_length"],
        frame_size=tuple(arch["frame_size"]),
        classes=classes,
        class_repeats=class_repeats,
    )
    if stream_mix:
        from ..data.stream import StreamGestureDataset

        dataset = Interleaved(
            OneHot(dataset, len(classes)) if stream_partial > 0 else dataset,
            StreamGestureDataset(
                10**9,
                seed=seed,
                clip_length=arch["clip_length"],
                frame_size=tuple(arch["frame_size"]),
                classes=classes,
                boundary_fraction=stream_boundary,
                drop_rate=stream_drop_rate,
                partial_fraction=stream_partial,
                class_repeats=class_repeats,
            ),
        )
    indices = range(start_step * batch_size, 10**9)
    loader = DataLoader(
        dataset, batch_size=batch_size, sampler=indices, num_workers=workers, persistent_workers=workers > 0
    )
    for clips, labels in loader:
        yield ThrottleableGestureNet.preprocess(clips), labels


def dataset_batches(dataset: Dataset, batch_size: int, seed: int, workers: int = 1) -> Iterator:
    """Shuffled batches of a finite dataset (e.g. Jester), forever, with a new shuffle every pass."""
    epoch = 0
    while True:
        if hasattr(dataset, "epoch"):
            dataset.epoch = epoch  # JesterDataset: other random frame offsets each pass
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=workers,
            generator=torch.Generator().manual_seed(seed * 1000 + epoch),
        )
        for clips, labels in loader:
            yield ThrottleableGestureNet.preprocess(clips), labels
        epoch += 1


# A per-level BatchNorm tensor of a gated layer, e.g. "convs.0.norms.3.running_mean".
_LEVEL_NORM = re.compile(r"(?P<layer>.+)\.norms\.(?P<level>\d+)\.(?P<field>weight|bias|running_(?:mean|var))")


def init_from(model: ThrottleableGestureNet, path: str | Path) -> None:
    """Start ``model`` from the weights of another gesture model file of the same widths.

    Tensors of equal shape are copied. A temporal-kernel-1 conv of a ``temporal="valid"`` net taken
    from a kernel-3 conv gets the kernel summed over time (the same response to a still input), so
    a valid net can start from a trained "same" one. A gated conv1 (``conv1_min_width``) taken from an
    ungated one first has its channels ordered by importance (:func:`conv1_channel_order`, with
    ``convs.0``'s inputs to match); each level's BatchNorm then keeps the prefix of its channels. A
    level whose gated width differs (another ``channel_multiple``, a ``lowest_fraction``) starts from
    the BatchNorm of that layer at the nearest level of the same width, else from its own or the full
    level's cut to size (:func:`_norm_of_width`).
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    own = model.state_dict()
    if set(state) != set(own):
        raise ValueError(f"{path}: its layers differ from the net's (not the same widths/levels)")
    conv1_norms = [key for key in state if key.startswith("conv1.norms.") and state[key].dim() == 1]
    if any(state[key].shape != own[key].shape for key in conv1_norms):
        state = _conv1_ordered_state(model, state, path)
    for key, value in state.items():
        target = own[key]
        if value.shape != target.shape:
            norm = _LEVEL_NORM.fullmatch(key)
            start = _norm_of_width(state, norm, target.shape[0], model.num_levels) if norm else None
            if value.dim() == 5 and target.shape[2] == 1 and value.shape[:2] == target.shape[:2]:
                value = value.float().sum(dim=2, keepdim=True)
            elif key in conv1_norms and value.shape[0] > target.shape[0]:
                value = value[: target.shape[0]]  # the most important channels come first
            elif key not in conv1_norms and start is not None:
                value = start
            else:
                raise ValueError(
                    f"{path}: {key} has shape {tuple(value.shape)}, the net {tuple(target.shape)}"
                )
        own[key] = value.to(target.dtype)
    model.load_state_dict(own)


def _norm_of_width(state: dict, norm: re.Match, width: int, num_levels: int) -> Tensor | None:
    """The start of a level's BatchNorm tensor whose width changed (channel_multiple, lowest_fraction).

    The file's BatchNorm of the same layer at the nearest level that had exactly ``width`` channels
    (it normalised the same channels), else the level's own cut to ``width`` when it was wider (a
    narrower lowest level, ``lowest_fraction``), else the full level's cut; None if none fits. Its
    statistics are re-estimated after training anyway.
    """
    level, layer, field = int(norm["level"]), norm["layer"], norm["field"]
    by_distance = sorted(range(num_levels), key=lambda other: (abs(other - level), -other))
    for other in by_distance:
        tensor = state.get(f"{layer}.norms.{other}.{field}")
        if tensor is not None and tensor.shape[0] == width:
            return tensor
    for other in (level, num_levels - 1):
        wider = state.get(f"{layer}.norms.{other}.{field}")
        if wider is not None and wider.shape[0] >= width:
            return wider[:width]
    return None


def _conv1_ordered_state(model: ThrottleableGestureNet, state: dict, path: str | Path) -> dict:
    """``state`` of an ungated-conv1 net with conv1's channels ordered by importance."""
    ungated = ThrottleableGestureNet(model.classes, {**model.architecture, "conv1_min_width": None})
    try:
        ungated.load_state_dict(
            {key: value.float() if value.is_floating_point() else value for key, value in state.items()}
        )
    except RuntimeError as exc:
        raise ValueError(f"{path}: not an ungated-conv1 net of the same widths ({exc})") from None
    permute_conv1_channels(ungated, conv1_channel_order(ungated))
    return ungated.state_dict()


# --- evaluation ---------------------------------------------------------------------------------------


@torch.no_grad()
def make_card(
    model: ThrottleableGestureNet,
    accuracies: list[float],
    latencies: list[float],
    training: dict,
    baseline_accuracy: float | None,
    name: str = "gesture",
) -> dict:
    """The model card: how to rebuild the net, what each level costs and scores, how it was trained."""
    return {
        "name": name,
        "task": "gesture",
        "architecture": model.architecture,
        "classes": model.classes,
        "clip_length": model.clip_length,
        "frame_size": list(model.frame_size),
        "num_levels": model.num_levels,
        "levels": level_table(model, accuracies, latencies),
        "accuracy_metric": "top1",
        "accuracy_eval": ACCURACY_METRIC,
        "baseline_accuracy": None if baseline_accuracy is None else round(baseline_accuracy, 4),
        "training": training,
    }


def save_half(model: ThrottleableGestureNet, path: str | Path, card: dict) -> None:
    """Save the state dict with float tensors as float16 (half the file; loads into the float32 net).

    The card's accuracies are measured after loading these rounded weights (see ``--card-only``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        k: v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu().clone()
        for k, v in model.state_dict().items()
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)
    write_card(path, card)


# --- command line -----------------------------------------------------------------------------------


def _class_repeats(text: str) -> dict[str, int]:
    """``NAME=K[,NAME=K...]`` -> {name: K}, K an integer >= 1, names among the synthetic classes."""
    repeats: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, count = item.partition("=")
        if not sep or not count.strip().isdigit() or int(count) < 1:
            raise argparse.ArgumentTypeError(f"expected NAME=K with an integer K >= 1, got {item!r}")
        if name.strip() not in GESTURE_CLASSES:
            raise argparse.ArgumentTypeError(
                f"unknown class {name.strip()!r}; expected one of {list(GESTURE_CLASSES)}"
            )
        repeats[name.strip()] = int(count)
    return repeats


def _level_list(text: str) -> list[int]:
    """``"0-3"`` or ``"0,2,5"`` (or both, comma separated) -> sorted level indices."""
    levels: set[int] = set()
    try:
        for part in text.split(","):
            low, _, high = part.strip().partition("-")
            levels.update(range(int(low), int(high or low) + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected levels like 0-3 or 0,2,5, got {text!r}") from None
    if not levels or min(levels) < 0:
        raise argparse.ArgumentTypeError(f"expected levels like 0-3 or 0,2,5, got {text!r}")
    return sorted(levels)


# (flag, architecture key, metavar, type, help) of the architecture flags; defaults from DEFAULT_ARCHITECTURE
ARCHITECTURE_FLAGS = (
    (
        "--conv1-min-width",
        "conv1_min_width",
        "W",
        int,
        "gate conv1 from W channels at level 0 (default: off)",
    ),
    (
        "--channel-multiple",
        "channel_multiple",
        "M",
        int,
        "gated widths are multiples of M (default 8; 16 matches onnxruntime's channel groups on "
        "AVX-512 CPUs). With --init from a net of another multiple, a level whose widths change "
        "starts from the BatchNorm of the nearest level of the same width (see --train-norms-of)",
    ),
    (
        "--conv1-stride-levels",
        "conv1_stride_levels",
        "K",
        int,
        "the lowest K levels run conv1 at spatial stride 2 instead of conv1 + pool1 (a quarter of "
        "conv1's work; default 0: none)",
    ),
    (
        "--lowest-fraction",
        "lowest_fraction",
        "F",
        float,
        "level 0 alone runs the gated layers at width fraction F (at most min_fraction, 0.375; "
        "default: off); the other levels keep their widths, so --init loads any file of the same "
        "widths. BatchNorm-only training (--train-norms-of 0) does not recover level 0 "
        "(docs/gesture.md, 'Cheaper lowest level')",
    ),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tnn-train gesture", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data",
        choices=("synthetic", "stream-mix", "jester"),
        default="synthetic",
        help="stream-mix: half isolated synthetic clips, half simulated-stream windows",
    )
    parser.add_argument(
        "--init",
        default=None,
        help="start from this model file's weights (same architecture) instead of random",
    )
    parser.add_argument(
        "--stream-boundary",
        type=float,
        default=0.0,
        help="stream-mix: fraction of no_gesture stream windows drawn where a gesture is partly in "
        "view (onsets, a gesture's end and the jump after it), in [0, 1]",
    )
    parser.add_argument(
        "--stream-drop-rate",
        type=float,
        default=0.0,
        help="stream-mix: per-frame probability that a stream window repeats the previous frame "
        "(a frame the node dropped, filled as the recognizer does), in [0, 1]",
    )
    parser.add_argument(
        "--stream-partial",
        type=float,
        default=0.0,
        help="stream-mix: fraction of gesture stream windows drawn where the gesture is only partly "
        "in view (its onset, or its end and the hand's jump after it), with a soft label by how much "
        "of it is inside (tnn_ros.data.stream.partial_weight), in [0, 1]",
    )
    parser.add_argument(
        "--class-repeats",
        type=_class_repeats,
        default={},
        metavar="NAME=K[,NAME=K...]",
        help="synthetic / stream-mix: draw these classes K times per label cycle instead of once "
        "(e.g. rotate=2: more clips of a class the net reads poorly; validation stays balanced)",
    )
    parser.add_argument("--data-dir", help="Jester-style root (with --data jester; see docs/gesture.md)")
    parser.add_argument("--steps", type=int, default=500, help="optimizer steps")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads while training")
    parser.add_argument(
        "--workers", type=int, default=1, help="data loader processes (0: render in the main one)"
    )
    parser.add_argument(
        "--frame-size", type=int, nargs=2, metavar=("W", "H"), default=DEFAULT_ARCHITECTURE["frame_size"]
    )
    parser.add_argument("--clip-length", type=int, default=DEFAULT_ARCHITECTURE["clip_length"])
    parser.add_argument("--levels", type=int, default=DEFAULT_ARCHITECTURE["num_levels"])
    parser.add_argument(
        "--temporal",
        choices=("same", "valid"),
        default=DEFAULT_ARCHITECTURE["temporal"],
        help="valid: no temporal padding, so the net can run frame by frame (streaming)",
    )
    for flag, key, metavar, kind, text in ARCHITECTURE_FLAGS:
        parser.add_argument(flag, type=kind, default=DEFAULT_ARCHITECTURE[key], metavar=metavar, help=text)
    parser.add_argument(
        "--random-levels",
        type=int,
        default=1,
        help="random middle levels per step besides the full and lowest (sandwich rule)",
    )
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="train only the full width (one level): the non-throttleable baseline",
    )
    parser.add_argument(
        "--output",
        default=None,
        help="weights path (default: the shipped models/gesture.pt, or "
        "checkpoints/gesture_baseline.pt with --baseline); the card goes next to it",
    )
    parser.add_argument("--checkpoint", default=None, help="resumable checkpoint (default <output>.ckpt)")
    parser.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    parser.add_argument(
        "--baseline-card",
        default=None,
        help="card of a --baseline run: its accuracy goes into this model's card",
    )
    parser.add_argument("--val-clips", type=int, default=400, help="held-out clips for the card's accuracy")
    parser.add_argument(
        "--calibrate-batches", type=int, default=12, help="batches for per-level BN calibration"
    )
    parser.add_argument(
        "--train-norms-of",
        type=_level_list,
        default=None,
        metavar="LEVELS",
        help="with --init: train only these levels' own BatchNorm scales and shifts (e.g. 0-3, below "
        "the full level), distilled from the full level; the shared weights and every other level "
        "stay the init file's (for levels an architecture change touched: --conv1-stride-levels)",
    )
    parser.add_argument(
        "--calibrate-levels",
        type=_level_list,
        default=None,
        metavar="LEVELS",
        help="re-estimate BN statistics only at these levels (e.g. 0-3; default: every level); the "
        "others keep what training or --init left",
    )
    parser.add_argument(
        "--latency-threads",
        type=int,
        default=2,
        help="threads for the card's latency profile (the controller's default profile)",
    )
    parser.add_argument(
        "--latency-repeats",
        type=int,
        default=30,
        help="timing rounds (each runs every level) for the card's latency",
    )
    parser.add_argument(
        "--card-only",
        action="store_true",
        help="do not train: re-measure accuracy/latency of --output and rewrite its card",
    )
    return parser


def _validation_set(args, arch: dict, classes: list[str]) -> Dataset:
    if args.data == "jester":
        from ..data.jester import JesterDataset

        return JesterDataset(
            args.data_dir,
            split="validation",
            clip_length=arch["clip_length"],
            frame_size=tuple(arch["frame_size"]),
            classes=classes,
        )
    return SyntheticGestureDataset(
        args.val_clips,
        seed=GESTURE_EVAL_SEED,
        clip_length=arch["clip_length"],
        frame_size=tuple(arch["frame_size"]),
        classes=classes,
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``tnn-train gesture``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.steps < 0 or args.batch_size < 1 or args.lr <= 0 or args.val_clips < 1:
        parser.error("--batch-size, --lr and --val-clips must be positive, --steps at least 0")
    if args.steps == 0 and not args.init:
        parser.error("--steps 0 (BN statistics only) needs --init: there are no weights to calibrate")
    if args.data == "jester" and not args.data_dir:
        parser.error("--data jester needs --data-dir")
    if args.data == "jester" and args.class_repeats:
        parser.error("--class-repeats applies to the synthetic data (synthetic, stream-mix), not jester")
    if not all(0.0 <= v <= 1.0 for v in (args.stream_boundary, args.stream_drop_rate, args.stream_partial)):
        parser.error("--stream-boundary, --stream-drop-rate and --stream-partial must be in [0, 1]")
    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    arch = {
        **DEFAULT_ARCHITECTURE,
        "num_levels": 1 if args.baseline else args.levels,
        "frame_size": list(args.frame_size),
        "clip_length": args.clip_length,
        "temporal": args.temporal,
        **{key: getattr(args, key) for _, key, _, _, _ in ARCHITECTURE_FLAGS},
    }
    if args.calibrate_levels and args.calibrate_levels[-1] >= arch["num_levels"]:
        parser.error(f"--calibrate-levels: the net has levels 0-{arch['num_levels'] - 1}")
    if args.train_norms_of is not None:
        if not args.init or args.baseline:
            parser.error("--train-norms-of needs --init (the weights it leaves as they are), not --baseline")
        if args.train_norms_of[-1] >= arch["num_levels"] - 1:
            parser.error(f"--train-norms-of: levels below the full one (0-{arch['num_levels'] - 2})")
        if args.calibrate_levels is None:
            args.calibrate_levels = args.train_norms_of  # the others keep the init file's statistics
    try:  # refuse bad architecture flags (--conv1-min-width, --conv1-stride-levels, ...) before any work
        check_architecture(arch)
    except ValueError as exc:
        parser.error(str(exc))
    train_set = None
    classes = list(GESTURE_CLASSES)
    if args.data == "jester":
        from ..data.jester import JesterDataset

        train_set = JesterDataset(
            args.data_dir,
            split="train",
            clip_length=arch["clip_length"],
            frame_size=tuple(arch["frame_size"]),
            random_offset=True,
            seed=args.seed,
        )
        classes = train_set.classes
        print(
            f"Jester data: {len(train_set)} training videos, {len(classes)} classes "
            f"({train_set.skipped_missing} rows without frames skipped)",
            flush=True,
        )
    name = "gesture_baseline" if args.baseline else "gesture"
    output = Path(args.output or default_output("gesture", args.baseline))
    if args.card_only:
        # Re-measure the net the card describes (temporal mode, gated conv1, ...), not the defaults.
        arch = {**arch, **read_card(output).get("architecture", {})}
    model = ThrottleableGestureNet(classes, arch)
    command = "tnn-train gesture " + " ".join(shlex.quote(a) for a in argv)

    if args.card_only:
        load_state(output, model)
        training = read_card(output).get("training", {"command": command})
    else:
        checkpoint = args.checkpoint or str(output) + ".ckpt"
        start = 0
        if args.resume and Path(checkpoint).is_file():
            start = int(torch.load(checkpoint, map_location="cpu", weights_only=True)["step"])
        if args.init and not (args.resume and Path(checkpoint).is_file()):
            init_from(model, args.init)
            print(f"starting from the weights of {args.init}", flush=True)
        if train_set is None:
            batches = synthetic_batches(
                arch,
                classes,
                args.batch_size,
                TRAIN_SEED_BASE + args.seed,
                start,
                args.workers,
                stream_mix=args.data == "stream-mix",
                stream_boundary=args.stream_boundary,
                stream_drop_rate=args.stream_drop_rate,
                stream_partial=args.stream_partial,
                class_repeats=args.class_repeats,
            )
        else:
            batches = dataset_batches(train_set, args.batch_size, args.seed, args.workers)
        config = TrainConfig(
            steps=args.steps,
            lr=args.lr,
            sandwich=not args.baseline,
            seed=args.seed,
            checkpoint=checkpoint,
            resume=args.resume,
            num_random_levels=args.random_levels,
            norms_of_levels=args.train_norms_of,
            warmup_steps=min(50, args.steps // 10 + 1),
            checkpoint_every=50,
            log_every=25,
        )
        kind = "baseline" if args.baseline else "throttleable"
        print(
            f"training {kind} gesture net: {args.steps} steps of {args.batch_size} clips ({args.data}), "
            f"{args.threads} threads",
            flush=True,
        )
        result = train(model, batches, classification_loss, config, distill_fn=distillation_loss, desc=name)
        if train_set is None:
            calibration = synthetic_batches(
                arch,
                classes,
                args.batch_size,
                CALIBRATION_SEED_BASE + args.seed,
                workers=0,
                stream_mix=args.data == "stream-mix",
                stream_boundary=args.stream_boundary,
                stream_drop_rate=args.stream_drop_rate,
                stream_partial=args.stream_partial,
            )
        else:
            calibration = dataset_batches(train_set, args.batch_size, args.seed + 1, workers=0)
        calibrate_bn(model, calibration, args.calibrate_batches, levels=args.calibrate_levels)
        fresh = f"fresh every step, seed {args.seed}"
        data = {
            "synthetic": f"synthetic gesture clips (tnn_ros.sim.gestures), {fresh}",
            "stream-mix": "every other clip synthetic (tnn_ros.sim.gestures), every other a "
            f"simulated-stream window (tnn_ros.data.stream.StreamGestureDataset), {fresh}",
        }.get(args.data, f"jester: {args.data_dir}")
        stream_options = (args.stream_boundary, args.stream_drop_rate, args.stream_partial)
        if args.data == "stream-mix" and any(stream_options):
            data += (
                f"; stream windows: boundary_fraction {args.stream_boundary}, "
                f"drop_rate {args.stream_drop_rate}, partial_fraction {args.stream_partial}"
            )
        if args.class_repeats:  # refused with jester data above
            data += "; class repeats per label cycle: " + ", ".join(
                f"{name} x{count}" for name, count in args.class_repeats.items()
            )
        if args.init:
            data += f"; fine-tuned from {args.init}" if args.steps else f"; the weights of {args.init}"
        if args.train_norms_of is not None:
            data += f"; only the BatchNorm scales/shifts of levels {args.train_norms_of} trained"
        if args.calibrate_levels is not None:
            data += f"; BatchNorm statistics re-estimated at levels {args.calibrate_levels} only"
        training = {
            "command": command,
            "data": data,
            "seed": args.seed,
            "epochs": round(args.steps * args.batch_size / len(train_set), 3) if train_set else 1,
            "steps": args.steps,
            "batch_size": args.batch_size,
            "clips_seen": args.steps * args.batch_size,
            "lr": args.lr,
            "optimizer": "AdamW, cosine schedule with warmup",
            "sandwich_rule": not args.baseline,
            "random_levels_per_step": 0 if args.baseline else args.random_levels,
            "inplace_distillation": not args.baseline,
            "threads": args.threads,
            "wall_time_s": round(result.seconds, 1),
            "loss_curve": [round(v, 4) for v in result.losses],
        }
        if args.init and card_path(args.init).is_file():
            training["previous"] = read_card(args.init).get("training")  # how the init weights came about
        save_half(
            model,
            output,
            {"name": name, "architecture": model.architecture, "classes": classes, "training": training},
        )
        load_state(output, model)  # measure what was saved: the float16-rounded weights

    val_set = _validation_set(args, arch, classes)
    accuracies = gesture_top1(model, val_set)
    print(f"top-1 per level: {[round(a, 3) for a in accuracies]}", flush=True)
    write_model_card(
        model,
        output,
        accuracies,
        training,
        lambda *card_args: make_card(*card_args, name=name),
        baseline_card=args.baseline_card,
        latency_threads=args.latency_threads,
        latency_repeats=args.latency_repeats,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
