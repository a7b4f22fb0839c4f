"""Train the throttleable detector (``tnn-train detector``) on synthetic scenes or COCO-format data.

Targets and losses follow TTFNet: a Gaussian heatmap per class (penalty-reduced focal loss) and
GIoU on the boxes predicted at every cell inside each object's Gaussian, weighted by that Gaussian.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.ops as box_ops
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ..data.scenes import SyntheticDetectionDataset, collate_detections
from ..eval.accuracy import VAL_SEED_OFFSET, detector_map50
from ..models.detector import (
    DEFAULT_ARCHITECTURE,
    STRIDE,
    ThrottleableDetector,
    build_detector,
    distances_to_boxes,
)
from ..models.io import ModelFileError, card_path, load_model, load_state, read_card, save_model, write_card
from ..sim.scenes import CLASSES
from .common import (
    TrainConfig,
    calibrate_bn,
    default_output,
    level_table,
    seed_everything,
    train,
    write_model_card,
)

GAUSSIAN_ALPHA = 0.54  # Gaussian radius as a share of the box (TTFNet)
GIOU_WEIGHT = 5.0


# --- targets and losses -------------------------------------------------------------------------------
def build_targets(
    boxes_list: Sequence[Tensor], labels_list: Sequence[Tensor], num_classes: int, out_h: int, out_w: int
) -> dict[str, Tensor]:
    """TTFNet targets for a batch: heatmap (N, C, h, w), box (N, 4, h, w) and weight (N, h, w).

    Larger objects are written first so a smaller object wins the cells both cover.
    """
    n = len(boxes_list)
    heat = torch.zeros(n, num_classes, out_h, out_w)
    box_target = torch.zeros(n, 4, out_h, out_w)
    weight = torch.zeros(n, out_h, out_w)
    ys = (torch.arange(out_h, dtype=torch.float32) + 0.5) * STRIDE
    xs = (torch.arange(out_w, dtype=torch.float32) + 0.5) * STRIDE
    for i, (boxes, labels) in enumerate(zip(boxes_list, labels_list)):
        if len(boxes) == 0:
            continue
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        for j in torch.argsort(areas, descending=True).tolist():
            x1, y1, x2, y2 = boxes[j].tolist()
            w, h = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            sx, sy = GAUSSIAN_ALPHA * w / 6, GAUSSIAN_ALPHA * h / 6
            g = torch.exp(
                -((xs.view(1, -1) - cx) ** 2) / (2 * sx * sx) - ((ys.view(-1, 1) - cy) ** 2) / (2 * sy * sy)
            )
            # The peak sits on the cell that contains the centre, so every object has a positive.
            ci = min(max(int(cx // STRIDE), 0), out_w - 1)
            cj = min(max(int(cy // STRIDE), 0), out_h - 1)
            g[cj, ci] = 1.0
            c = int(labels[j])
            heat[i, c] = torch.maximum(heat[i, c], g)
            region = g > 0.05
            region[cj, ci] = True
            share = g * region
            share = share / share.sum() * float(np.log(max(w * h, 2.0)))
            box_target[i, :, region] = torch.tensor([x1, y1, x2, y2]).view(4, 1)
            weight[i][region] = share[region]
    return {"heatmap": heat, "boxes": box_target, "weight": weight}


def focal_loss(logits: Tensor, target: Tensor) -> Tensor:
    """CenterNet's penalty-reduced focal loss, normalised by the number of objects."""
    prob = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    positive = target.eq(1.0).float()
    pos = -torch.log(prob) * (1 - prob) ** 2 * positive
    neg = -torch.log(1 - prob) * prob**2 * (1 - target) ** 4 * (1 - positive)
    return (pos.sum() + neg.sum()) / positive.sum().clamp(min=1.0)


def detection_loss(outputs: tuple[Tensor, Tensor], targets: dict[str, Tensor]) -> tuple[Tensor, dict]:
    """Heatmap focal loss + weighted GIoU of the boxes inside each object's Gaussian."""
    heat_logits, distances = outputs
    heat = focal_loss(heat_logits, targets["heatmap"])
    weight = targets["weight"]
    mask = weight > 0
    if mask.any():
        pred = distances_to_boxes(distances).permute(0, 2, 3, 1)[mask]
        gt = targets["boxes"].permute(0, 2, 3, 1)[mask]
        giou = box_ops.generalized_box_iou_loss(pred, gt, reduction="none")
        giou = (giou * weight[mask]).sum() / weight[mask].sum().clamp(min=1e-6)
    else:
        giou = distances.sum() * 0.0
    return heat + GIOU_WEIGHT * giou, {"heat": heat.detach(), "giou": giou.detach()}


def detection_distill(
    student: tuple[Tensor, Tensor], teacher: tuple[Tensor, Tensor], targets: dict[str, Tensor]
) -> Tensor:
    """In-place distillation: match the full level's heatmap and its boxes where objects are."""
    heat = F.mse_loss(torch.sigmoid(student[0]), torch.sigmoid(teacher[0]), reduction="sum")
    heat = heat / targets["heatmap"].eq(1.0).sum().clamp(min=1)
    weight = targets["weight"]
    l1 = ((student[1] - teacher[1]).abs().sum(1) * weight).sum() / weight.sum().clamp(min=1e-6)
    return heat + l1 / 16.0


# --- data ---------------------------------------------------------------------------------------------
def endless_batches(dataset: Dataset, batch_size: int, num_classes: int, seed: int) -> Iterator:
    """Shuffled batches forever, with TTFNet targets built on the fly."""
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        collate_fn=collate_detections,
        drop_last=True,
        generator=generator,
    )
    while True:
        for images, (boxes, labels) in loader:
            targets = build_targets(
                boxes, labels, num_classes, images.shape[2] // STRIDE, images.shape[3] // STRIDE
            )
            yield images, targets


# --- fine-tuning --------------------------------------------------------------------------------------
def init_from(model: ThrottleableDetector, path: str | Path) -> dict:
    """Start ``model`` from the weights of another detector file of the same architecture; returns its card.

    The file's card must describe the same net (architecture and classes); a mismatch raises
    ValueError naming what differs, before any weight is touched.
    """
    card = read_card(path, ("architecture", "classes"))
    theirs = json.loads(json.dumps({**DEFAULT_ARCHITECTURE, **card["architecture"]}))
    ours = json.loads(json.dumps(model.architecture))
    differing = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
    if differing:
        detail = ", ".join(f"{k} {theirs.get(k)} != {ours.get(k)}" for k in differing[:3])
        raise ValueError(f"{path}: another architecture than the net being trained ({detail})")
    if list(card["classes"]) != list(model.classes):
        raise ValueError(f"{path}: classes {card['classes']} != the training data's {model.classes}")
    load_state(path, model)
    return card


# --- model card ---------------------------------------------------------------------------------------
def make_card(
    model: ThrottleableDetector,
    accuracies: Sequence[float],
    latencies: Sequence[float],
    training: dict,
    baseline_accuracy: float | None,
) -> dict:
    """The model card: how to rebuild the net and what each level costs and scores."""
    return {
        "name": "detector",
        "task": "detection",
        "architecture": model.architecture,
        "classes": model.classes,
        "input_size": list(model.input_size),
        "num_levels": model.num_levels,
        "levels": level_table(model, accuracies, latencies),
        "accuracy_metric": "mAP@0.5 (torchmetrics) on held-out seeded synthetic scenes",
        "baseline_accuracy": None if baseline_accuracy is None else round(baseline_accuracy, 4),
        "training": training,
    }


def _dataset(args, train_split: bool) -> Dataset:
    width, height = args.input_size
    if args.data == "coco":
        from ..data.coco import CocoDetectionDataset

        images = args.coco_images if train_split else (args.coco_val_images or args.coco_images)
        ann = args.coco_annotations if train_split else (args.coco_val_annotations or args.coco_annotations)
        return CocoDetectionDataset(images, ann, width, height)
    if train_split:
        return SyntheticDetectionDataset(args.num_images, width, height, seed=args.seed)
    return SyntheticDetectionDataset(args.val_images, width, height, seed=_val_seed(args) + VAL_SEED_OFFSET)


def _val_seed(args) -> int:
    """The seed of the held-out scenes: --val-seed, else --seed (as before the option existed)."""
    return args.seed if args.val_seed is None else args.val_seed


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tnn-train detector", description=__doc__)
    parser.add_argument("--data", choices=("synthetic", "coco"), default="synthetic")
    parser.add_argument("--coco-images", help="COCO image folder (with --data coco)")
    parser.add_argument("--coco-annotations", help="COCO instances JSON (with --data coco)")
    parser.add_argument("--coco-val-images", help="validation image folder (default: the training one)")
    parser.add_argument("--coco-val-annotations", help="validation JSON (default: the training one)")
    parser.add_argument("--num-images", type=int, default=4000, help="synthetic training scenes")
    parser.add_argument("--val-images", type=int, default=200, help="held-out scenes for accuracy")
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0, help="seed of the training scenes and the run")
    parser.add_argument(
        "--val-seed",
        type=int,
        default=None,
        help="seed of the held-out scenes (default: --seed); keep a card's to compare a fine-tune with it",
    )
    parser.add_argument(
        "--init",
        default=None,
        help="start from this detector file's weights (same architecture, read from its card)",
    )
    parser.add_argument(
        "--distill-weight",
        type=float,
        default=0.5,
        help="share of in-place distillation from the full level in a smaller level's loss (0-1)",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument(
        "--input-size", type=int, nargs=2, metavar=("W", "H"), default=DEFAULT_ARCHITECTURE["input_size"]
    )
    parser.add_argument("--levels", type=int, default=DEFAULT_ARCHITECTURE["num_levels"])
    parser.add_argument(
        "--random-levels",
        type=int,
        default=1,
        help="random middle levels per step besides the full and smallest (sandwich rule)",
    )
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="train only the full level: the non-throttleable baseline with the same budget",
    )
    parser.add_argument(
        "--output",
        default=None,
        help="weights path (default models/detector.pt, or checkpoints/detector_baseline.pt with --baseline)",
    )
    parser.add_argument("--checkpoint", default=None, help="resumable checkpoint (default <output>.ckpt)")
    parser.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    parser.add_argument(
        "--baseline-card",
        default=None,
        help="card of a --baseline run: its accuracy goes into this model's card",
    )
    parser.add_argument(
        "--card-only",
        action="store_true",
        help="do not train: re-measure accuracy/latency of --output and rewrite its card",
    )
    parser.add_argument(
        "--latency-threads", type=int, default=2, help="threads for the card's latency profile"
    )
    parser.add_argument(
        "--latency-repeats", type=int, default=30, help="timing rounds for the latency profile"
    )
    parser.add_argument(
        "--calibrate-batches", type=int, default=20, help="batches for per-level BN calibration"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    output = Path(args.output or default_output("detector", args.baseline))
    if args.data == "coco" and not (args.coco_images and args.coco_annotations):
        print("--data coco needs --coco-images and --coco-annotations", file=sys.stderr)
        return 2
    if not 0.0 <= args.distill_weight <= 1.0:
        print(f"--distill-weight must be in [0, 1], got {args.distill_weight}", file=sys.stderr)
        return 2
    if args.init and args.card_only:
        print("--init trains; it cannot be combined with --card-only", file=sys.stderr)
        return 2
    command = "tnn-train detector " + " ".join(shlex.quote(a) for a in argv)
    if args.card_only:
        model = load_model(output, build_detector)
        args.input_size = list(model.input_size)
        training = read_card(output).get("training", {"command": command})
        if args.val_seed is None:  # re-measure on the held-out scenes the card was measured on
            args.val_seed = training.get("val_seed", training.get("seed", args.seed))
    else:
        train_set = _dataset(args, True)
        classes = list(getattr(train_set, "classes", CLASSES))
        architecture = {
            **DEFAULT_ARCHITECTURE,
            "input_size": list(args.input_size),
            "num_levels": args.levels,
        }
        model = ThrottleableDetector(classes, architecture)
        init_card = None
        if args.init:
            try:
                init_card = init_from(model, args.init)
            except (ValueError, ModelFileError) as exc:
                print(f"--init: {exc}", file=sys.stderr)
                return 2
            print(f"starting from the weights of {args.init}", flush=True)
        steps = max(1, int(args.epochs * len(train_set) // args.batch_size))
        config = TrainConfig(
            steps=steps,
            lr=args.lr,
            sandwich=not args.baseline,
            seed=args.seed,
            checkpoint=args.checkpoint or str(output) + ".ckpt",
            resume=args.resume,
            num_random_levels=args.random_levels,
            distill_weight=args.distill_weight,
            warmup_steps=min(100, steps // 10 + 1),
        )
        batches = endless_batches(train_set, args.batch_size, len(classes), args.seed)
        print(
            f"training {'baseline' if args.baseline else 'throttleable'} detector: {steps} steps of "
            f"{args.batch_size} images, {len(train_set)} training images, {args.threads} threads",
            flush=True,
        )
        result = train(
            model,
            batches,
            detection_loss,
            config,
            distill_fn=detection_distill,
            desc="detector-baseline" if args.baseline else "detector",
        )
        calibration = endless_batches(train_set, args.batch_size, len(classes), args.seed + 1)
        calibrate_bn(
            model,
            calibration,
            args.calibrate_batches,
            levels=[model.num_levels - 1] if args.baseline else None,
        )
        training = {
            "command": command,
            "data": args.data
            if args.data == "coco"
            else f"synthetic scenes (tnn_ros.sim.scenes), {args.num_images} images, seed {args.seed}",
            "seed": args.seed,
            "val_seed": _val_seed(args),
            "epochs": args.epochs,
            "steps": steps,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "optimizer": "AdamW, cosine schedule with warmup",
            "sandwich_rule": not args.baseline,
            "random_levels_per_step": 0 if args.baseline else args.random_levels,
            "inplace_distillation": not args.baseline,
            "distill_weight": args.distill_weight,
            "threads": args.threads,
            "wall_time_s": round(result.seconds, 1),
            "loss_curve": [round(v, 4) for v in result.losses],
        }
        if init_card is not None:
            # A fine-tune keeps the history of the weights it started from.
            training["data"] += f"; fine-tuned from {args.init}"
            training["fine_tuned_from"] = str(args.init)
            training["previous"] = init_card.get("training", {})
        if args.resume and card_path(output).is_file():
            # A resumed run keeps the history: every command, total wall time, the whole loss curve.
            previous = read_card(output).get("training", {})
            training["commands"] = previous.get("commands", [previous.get("command")]) + [command]
            training["wall_time_s"] = round(training["wall_time_s"] + previous.get("wall_time_s", 0.0), 1)
            training["loss_curve"] = previous.get("loss_curve", []) + training["loss_curve"]
        save_model(
            model,
            output,
            {
                "name": "detector",
                "architecture": model.architecture,
                "classes": model.classes,
                "training": training,
            },
        )
    val_set = _dataset(args, False)
    levels = [model.num_levels - 1] if args.baseline else list(range(model.num_levels))
    t0 = time.monotonic()
    accuracies = detector_map50(model, val_set, levels)
    print(
        f"mAP@0.5 per level: {[round(a, 3) for a in accuracies]} ({time.monotonic() - t0:.0f}s)", flush=True
    )
    if args.baseline:
        card = {
            "name": "detector_baseline",
            "architecture": model.architecture,
            "classes": model.classes,
            "input_size": list(model.input_size),
            "accuracy": accuracies[0],
            "accuracy_metric": "mAP@0.5 (torchmetrics) on held-out seeded synthetic scenes",
            "training": training,
        }
        write_card(output, card)
        print(json.dumps({"baseline_accuracy": accuracies[0]}), flush=True)
        return 0
    write_model_card(
        model,
        output,
        accuracies,
        training,
        make_card,
        baseline_card=args.baseline_card,
        latency_threads=args.latency_threads,
        latency_repeats=args.latency_repeats,
    )
    return 0


__all__ = [
    "main",
    "build_targets",
    "detection_loss",
    "detection_distill",
    "make_card",
    "endless_batches",
]
