r"""`tnn-train adapt`: label-free adaptation of a converted model on the robot's own frames.

    tnn-train adapt models/ssdlite_throttled.pt --frames recordings/run1 --topic /camera/image_raw \\
        -o models/ssdlite_adapted.pt

Three phases, all without labels; the teacher is a frozen copy of the model's full level, which is
the unthrottled original (``tnn-train convert`` checks that to float32 rounding):

1. per-level BatchNorm recalibration, matched to the teacher: every level below the top gets BN
   statistics under which its channels, on these frames, have the mean and variance the full
   level's have (a narrower level sees other activations than the original, and the full level
   keeps the statistics of the original's training data);
2. in-place distillation: each step trains the lowest level and a random lower level to match the
   teacher's outputs (detectors: backbone features and head outputs, normalised MSE; video nets:
   KL divergence of the class distributions). ``--trainable norms`` (default) trains only the
   lower levels' own BN scales/shifts, so the full level stays bit-identical to the original;
   ``--trainable all`` also trains the gated convs' weights, which the levels share: by default
   (``--full-level keep``) the full level first gets its own frozen copy of them and stays
   bit-identical too; ``--full-level adapt`` shares them and distills the full level as well;
3. a final BN recalibration of the lower levels for the updated weights.

The card records agreement with the teacher per level before, after phase 1 and after adaptation,
the teacher, the weights' origin and sha256, the frames used and the command. Frames: an image
folder, a video file or a rosbag2 bag (any ``sensor_msgs/msg/Image`` encoding the perception node
decodes). Bad input (empty source, bag without an image topic, undecodable frames) prints one line
and exits 2 before anything is written.
"""

from __future__ import annotations

import argparse
import copy
import os
import random
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from .convert import (
    add_accuracy,
    add_knob_options,
    add_level_options,
    fail,
    knob_candidates,
    labeled_inputs,
    measure_knob_levels,
    measure_levels,
    print_levels,
    sha256_file,
)


def _parse(argv):
    parser = argparse.ArgumentParser(
        prog="tnn-train adapt", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model", help="converted model file (.pt, from tnn-train convert)")
    parser.add_argument("--frames", required=True, metavar="DIR|VIDEO|BAG", help="unlabeled frames")
    parser.add_argument("--topic", default=None, help="image topic when --frames is a bag")
    parser.add_argument("-o", "--output", required=True, help="adapted model file (.pt)")
    parser.add_argument(
        "--max-frames", type=int, default=512, help="frames read from the source (default 512)"
    )
    parser.add_argument("--frame-stride", type=int, default=1, help="use every n-th frame (default 1)")
    parser.add_argument(
        "--holdout",
        type=float,
        default=0.25,
        help="share of the frames kept out of training to measure agreement (default 0.25)",
    )
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument(
        "--lr",
        type=float,
        default=None,
        help="AdamW learning rate (default 1e-3 with --trainable norms, 1e-5 with all)",
    )
    parser.add_argument(
        "--trainable",
        choices=("norms", "all"),
        default="norms",
        help="norms (default): only the lower levels' own BN scales/shifts, the full level "
        "stays the original; all: also the shared gated conv weights",
    )
    parser.add_argument(
        "--full-level",
        choices=("keep", "adapt"),
        default="keep",
        help="with --trainable all: keep (default) gives the full level its own frozen copy of the "
        "weights, so it stays the original while the lower levels adapt theirs (one more set of "
        "the gated weights in the file); adapt distills the full level too, which moves it",
    )
    parser.add_argument("--calibration-batches", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", default=None, help="checkpoint path (default OUTPUT.ckpt)")
    parser.add_argument("--checkpoint-every", type=int, default=50)
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    add_level_options(parser)
    add_knob_options(parser)
    return parser.parse_args(argv)


# --- model-specific pieces ------------------------------------------------------------------------------


def _is_detector(model) -> bool:
    return model.architecture["task"] == "detection"


def distill_outputs(model, batch: Tensor) -> list[Tensor]:
    """The tensors distillation matches, at the model's current level, without post-processing.

    Detectors: backbone feature maps and the head's raw outputs (SSD: class logits and box
    regression per anchor; Faster R-CNN: RPN objectness and deltas). Video nets: class logits.
    """
    if not _is_detector(model):
        return [model(batch)]
    net = model.net
    model._state.level = model.level
    images, _ = net.transform(list(batch))
    features = net.backbone(images.tensors)
    features = list(features.values()) if isinstance(features, dict) else [features]
    if hasattr(net, "rpn"):
        objectness, deltas = net.rpn.head(features)
        return features + list(objectness) + list(deltas)
    head = net.head(features)
    return features + [head["cls_logits"], head["bbox_regression"]]


def distill_loss(model, student: list[Tensor], teacher: list[Tensor]) -> Tensor:
    """Detectors: MSE per tensor normalised by the teacher's variance; video: KL of class distributions."""
    if not _is_detector(model):
        return F.kl_div(
            F.log_softmax(student[0], 1), F.log_softmax(teacher[0], 1), log_target=True, reduction="batchmean"
        )
    losses = [F.mse_loss(s, t) / (t.var() + 1e-6) for s, t in zip(student, teacher)]
    return torch.stack(losses).mean()


def _as_original(teacher):
    """The teacher with the torchvision call signature the agreement metrics use."""
    if _is_detector(teacher):
        return lambda images: teacher(torch.stack(list(images)))
    return teacher


def _gated_ops(model):
    from ..throttle import gated_ops

    return gated_ops(model)


def set_gated_mode(model, train: bool, norm_stats: bool = False) -> None:
    """Gated ops in train mode (sliced weights, per-level BN) or eval mode (folded caches).

    Everything else (stems, heads, torchvision's own BN layers) stays in eval mode. ``norm_stats``:
    the per-level BNs use and update batch statistics (calibration); otherwise they keep their
    running statistics (distillation with small batches).
    """
    for op in _gated_ops(model):
        op.train(train)
        if train and op.norms is not None and not norm_stats:
            op.norms.eval()


@torch.no_grad()
def _frame_statistics(model, batches: list[Tensor], level: int) -> list[tuple[Tensor, Tensor]]:
    """Per gated op, the exact mean / variance its ``level`` BN input has on ``batches``."""
    model = copy.deepcopy(model)
    model.set_level(level)
    norms = [op.norms[level] for op in _gated_ops(model) if op.norms is not None]
    set_gated_mode(model, True, norm_stats=True)
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    for batch in batches:
        distill_outputs(model, batch)
    return [(norm.running_mean.clone(), norm.running_var.clone()) for norm in norms]


@torch.no_grad()
def recalibrate_bn(model, batches: list[Tensor], levels: list[int], match_teacher: bool = True) -> None:
    """New BN statistics for each of ``levels`` from ``batches`` (the top level is never changed).

    ``match_teacher`` (default): each lower level's statistics are set so that, on these frames,
    its normalised channels have the mean and variance the full level's (the teacher's) have:
    the full level keeps the statistics of the original's training data, and a lower level simply
    recalibrated to the robot's frames would normalise them differently from its teacher. Without
    it, each level gets the plain statistics of the frames.
    """
    top = model.num_levels - 1
    teacher = _frame_statistics(model, batches, top) if match_teacher else None
    ops = [op for op in _gated_ops(model) if op.norms is not None]
    for level in levels:
        if level == top:
            continue
        stats = _frame_statistics(model, batches, level)
        for i, (op, (mean, var)) in enumerate(zip(ops, stats)):
            norm = op.norms[level]
            if teacher is None:
                norm.running_mean.copy_(mean)
                norm.running_var.copy_(var)
                continue
            width = mean.numel()
            teacher_mean, teacher_var = teacher[i][0][:width], teacher[i][1][:width]
            full = op.norms[top]
            eps = norm.eps
            ratio = torch.sqrt((var + eps) / (teacher_var + eps))
            norm.running_mean.copy_(mean - (teacher_mean - full.running_mean[:width]) * ratio)
            scaled = (var + eps) * (full.running_var[:width] + eps) / (teacher_var + eps) - eps
            norm.running_var.copy_(scaled.clamp_min(0.0))
    set_gated_mode(model, False)


def _trainable_parameters(model, which: str) -> list[torch.nn.Parameter]:
    top = model.num_levels - 1
    params = []
    for op in _gated_ops(model):
        if which == "all":
            params.extend(p for name, p in op.named_parameters() if not name.startswith(f"norms.{top}."))
        elif op.norms is not None:
            params.extend(p for level, norm in enumerate(op.norms) if level != top for p in norm.parameters())
    return params


# --- data ------------------------------------------------------------------------------------------------


def load_inputs(model, source, max_frames: int, stride: int) -> list[Tensor]:
    """Frames of ``source`` in the model's forward format (clips of consecutive frames for video)."""
    frames = list(source.frames(limit=max_frames, stride=stride))
    if _is_detector(model):
        import cv2

        width, height = model.input_size
        return [
            model.preprocess(cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA))[0] for f in frames
        ]
    length = model.clip_length
    return [
        model.preprocess(model.frames_to_clip(frames[i : i + length]))[0]
        for i in range(0, len(frames) - length + 1, length)
    ]


def _batches(inputs: list[Tensor], batch_size: int, rng: random.Random):
    while True:
        yield torch.stack(rng.sample(inputs, min(batch_size, len(inputs))))


# --- main ------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Entry point of `tnn-train adapt`."""
    from ..data.frames import FrameSourceError, frames_digest, open_frames
    from ..eval.agreement import agreement_per_level, full_level_difference
    from ..models.converted import build_converted, is_converted_card, keep_top_level_weights
    from ..models.io import ModelFileError, load_model, read_card, save_model
    from .common import load_checkpoint, save_checkpoint, seed_everything

    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parse(argv)
    if not args.output.endswith(".pt"):
        return fail(f"--output must end in .pt, got {args.output!r}")
    if not 0.0 < args.holdout < 1.0:
        return fail(f"--holdout must be in (0, 1), got {args.holdout}")
    try:
        card = read_card(args.model)
        if not is_converted_card(card):
            return fail(f"{args.model}: not a converted torchvision model (tnn-train convert makes those)")
        model = load_model(args.model, build_converted)
        # Adaptation works on the width levels (per-level BN and distillation live there); the
        # input's resolution / clip levels come back at the end, or a new Pareto set when asked for.
        knob_levels = model.knob_levels
        model.set_knob_levels(None)
        candidates = knob_candidates(model, args)
        labeled = labeled_inputs(model, args)
        source = open_frames(args.frames, args.topic)
        inputs = load_inputs(model, source, args.max_frames, args.frame_stride)
    except (ModelFileError, FrameSourceError, ValueError) as exc:
        return fail(str(exc))
    if len(inputs) < 2:
        unit = "frames" if _is_detector(model) else f"clips of {model.clip_length} frames"
        return fail(f"{args.frames}: only {len(inputs)} {unit}; need at least 2")
    torch.set_num_threads(max(1, args.threads))
    torch.set_flush_denormal(True)
    seed_everything(args.seed)
    if args.lr is None:
        # Adam moves every weight by ~lr per step whatever its scale; shared conv weights need far
        # smaller steps than BN scales (1e-4 moved a random-init SSDlite's full level by 3.9 in 2 steps).
        args.lr = 1e-3 if args.trainable == "norms" else 1e-5
    if args.trainable == "all" and args.full_level == "keep":
        keep_top_level_weights(model)  # before the teacher copy and any checkpoint is loaded
    split = max(1, int(round(len(inputs) * args.holdout)))
    held_out, train_inputs = inputs[:split], inputs[split:]  # first frames held out: no shuffling leak
    top = model.num_levels - 1
    teacher = copy.deepcopy(model).eval()
    teacher.set_level(top)
    for p in teacher.parameters():
        p.requires_grad_(False)
    original = _as_original(teacher)
    rng = random.Random(args.seed)
    checkpoint = Path(args.checkpoint or args.output + ".ckpt")
    params = _trainable_parameters(model, args.trainable)
    for p in model.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    calibration = [
        torch.stack(train_inputs[i : i + args.batch_size])
        for i in range(0, len(train_inputs), args.batch_size)
    ][: args.calibration_batches]
    lower = list(range(top))
    start_step, history = 0, {}
    started = time.perf_counter()
    if args.resume and checkpoint.is_file():
        set_gated_mode(model, True)
        start_step = load_checkpoint(checkpoint, model, optimizer, rng)
        set_gated_mode(model, False)
        history = torch.load(checkpoint, map_location="cpu", weights_only=True)["extra"].get("history", {})
        print(f"resumed from {checkpoint} at step {start_step}", flush=True)
    else:
        print(
            f"agreement before adaptation ({len(held_out)} held-out, {len(train_inputs)} training "
            "inputs) ...",
            flush=True,
        )
        history["before"], _ = agreement_per_level(model, original, held_out)
        recalibrate_bn(model, calibration, lower)
        history["after_bn_recalibration"], _ = agreement_per_level(model, original, held_out)
    batches = _batches(train_inputs, args.batch_size, rng)
    set_gated_mode(model, True)
    progress = tqdm(
        range(start_step, args.steps),
        desc="adapt",
        initial=start_step,
        total=args.steps,
        mininterval=5.0,
        dynamic_ncols=True,
    )
    loss_value = float("nan")
    for step in progress:
        batch = next(batches)
        with torch.no_grad():
            target = distill_outputs(teacher, batch)
        levels = [0, rng.randrange(1, top)] if top > 1 else [0]
        if args.trainable == "all" and args.full_level == "adapt":
            levels.append(top)  # keeps the full level near the teacher while the shared weights move
        optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for level in levels:
            model.set_level(level)
            loss = distill_loss(model, distill_outputs(model, batch), target)
            if not torch.isfinite(loss):
                set_gated_mode(model, False)
                return fail(
                    f"adaptation diverged (loss {float(loss)} at step {step}, level {level}); "
                    "try a lower --lr"
                )
            loss.backward()
            total += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        optimizer.step()
        loss_value = total / len(levels)
        progress.set_postfix(loss=f"{loss_value:.4f}")
        if (step + 1) % args.checkpoint_every == 0 and step + 1 < args.steps:
            save_checkpoint(checkpoint, model, optimizer, step + 1, rng, {"history": history})
    set_gated_mode(model, False)
    model.set_level(top)
    recalibrate_bn(model, calibration, lower)
    with torch.no_grad():
        drift = full_level_difference(
            model,
            teacher if not _is_detector(model) else _teacher_net(teacher),
            [held_out[0][None]],
            include_detections=False,
        )
    width_history = [
        {
            "width_level": k,
            "agreement_before_adaptation": _round(before),
            "agreement_after_bn_recalibration": _round(bn_only),
        }
        for k, (before, bn_only) in enumerate(zip(history["before"], history["after_bn_recalibration"]))
    ]
    knobs = None
    if candidates:
        levels, metric, knobs = measure_knob_levels(model, original, held_out, candidates, args)
    else:
        model.set_knob_levels(knob_levels)
        levels, metric = measure_levels(model, original, held_out, args.latency_repeats, args.threads)
    if model.knob_levels is None:
        for row, before in zip(levels, width_history):
            row.update({k: v for k, v in before.items() if k != "width_level"})
    new_card = dict(card)
    if knobs is not None:
        new_card["knobs"] = knobs
    new_card.update(
        name=Path(args.output).stem,
        architecture=model.architecture,
        num_levels=model.num_levels,
        levels=levels,
        agreement_metric=metric + " (teacher: the full level of the input model)",
        held_out={**source.describe(), "inputs": len(held_out), "first_inputs_of_the_source": True},
        adaptation={
            "command": "tnn-train adapt " + shlex.join(argv),
            "teacher": f"full level of {args.model} (= the unthrottled {card['architecture']['arch']})",
            "teacher_file_sha256": sha256_file(args.model),
            "weights_origin": card.get("source", {}),
            "frames": {
                **source.describe(),
                "inputs_used_for_training": len(train_inputs),
                "frame_stride": args.frame_stride,
                "max_frames": args.max_frames,
                "sha256": frames_digest([x.numpy() for x in inputs]),
            },
            "steps": args.steps,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "trainable": args.trainable,
            "full_level": "own frozen copy of the original's weights"
            if model.architecture.get("top_level_weights") == "own"
            else "shared weights",
            "seed": args.seed,
            "final_loss": _round(loss_value),
            "bn_recalibration": "teacher-matched (lower levels normalise the frames like the full level)",
            "full_level_max_abs_diff_vs_teacher": drift,
            # Before / after phase 1 per width level at the full resolution / clip (the level
            # rows carry them too when the levels are the width levels).
            "width_levels": width_history,
            "seconds": round(time.perf_counter() - started, 1),
        },
    )
    new_card.pop("accuracy_metric", None)  # the input's accuracy is not this model's
    new_card.pop("labeled", None)
    add_accuracy(new_card, model, labeled)
    save_model(model, args.output, new_card)
    if checkpoint.is_file():
        os.remove(checkpoint)
    print_levels(new_card, header=f"full level vs teacher after adaptation: max abs diff {drift:.3g}")
    if model.knob_levels is None:
        changes = (f"L{r['level']} {r['agreement_before_adaptation']} -> {r['agreement']}" for r in levels)
        print("agreement before -> after adaptation: " + ", ".join(changes))
    print(f"wrote {args.output}")
    return 0


def _teacher_net(teacher):
    """The teacher's torchvision net at the full level, callable like the original (list of images)."""
    teacher._state.level = teacher.num_levels - 1
    return teacher.net


def _round(value: float) -> float | None:
    return None if value != value else round(float(value), 4)


if __name__ == "__main__":
    sys.exit(main())
