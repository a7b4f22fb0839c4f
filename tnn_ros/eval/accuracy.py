"""Accuracy of throttleable models per level: detector mAP@0.5 and gesture top-1.

One place for the trainers' cards, the benchmarks and the accuracy floors of the tests.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from ..data.gestures import SyntheticGestureDataset
from ..data.scenes import SyntheticDetectionDataset, collate_detections
from ..models.detector import ThrottleableDetector, decode
from ..models.gesture import ThrottleableGestureNet

VAL_SEED_OFFSET = 10_000  # validation scenes never share a seed with training scenes
GESTURE_EVAL_SEED = 20_240_001  # held-out gesture clips: no training run draws from this seed


@torch.no_grad()
def detector_map50(
    model: ThrottleableDetector,
    dataset: Dataset,
    levels: Sequence[int] | None = None,
    batch_size: int = 8,
    score_threshold: float = 0.05,
) -> list[float]:
    """mAP@0.5 (torchmetrics, COCO-style 101-point) of each level on ``dataset``; model left in eval."""
    from torchmetrics.detection import MeanAveragePrecision

    model.eval()
    previous = model.level
    levels = list(range(model.num_levels)) if levels is None else list(levels)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_detections)
    batches = list(loader)
    scores = []
    for level in levels:
        model.set_level(level)
        metric = MeanAveragePrecision(iou_thresholds=[0.5], box_format="xyxy")
        for images, (boxes, labels) in batches:
            heat, dist = model(images)
            preds = [
                {"boxes": b, "scores": s, "labels": c} for b, s, c in decode(heat, dist, score_threshold)
            ]
            metric.update(preds, [{"boxes": b, "labels": c} for b, c in zip(boxes, labels)])
        scores.append(float(metric.compute()["map_50"]))
    model.set_level(previous)
    return scores


def detector_map50_heldout(model: ThrottleableDetector, num_images: int = 200, seed: int = 0) -> float:
    """mAP@0.5 of the model's current level on ``num_images`` held-out synthetic scenes."""
    width, height = model.input_size
    dataset = SyntheticDetectionDataset(num_images, width, height, seed=seed + VAL_SEED_OFFSET)
    return detector_map50(model, dataset, [model.level])[0]


def gesture_top1(
    model: ThrottleableGestureNet, dataset: Dataset, levels: list[int] | None = None, batch_size: int = 16
) -> list[float]:
    """Top-1 accuracy (0..1) of each of ``levels`` (default: all) on ``dataset``; restores the level."""
    levels = list(range(model.num_levels)) if levels is None else list(levels)
    previous, was_training = model.level, model.training
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size)
    batches = [(model.preprocess(clips), labels) for clips, labels in loader]
    accuracies = []
    try:
        for level in levels:
            model.set_level(level)
            correct = sum(int((model(clips).argmax(1) == labels).sum()) for clips, labels in batches)
            accuracies.append(correct / max(1, len(dataset)))
    finally:
        model.set_level(previous)
        model.train(was_training)
    return accuracies


def gesture_top1_heldout(
    model: ThrottleableGestureNet, num_clips: int = 400, seed: int = GESTURE_EVAL_SEED
) -> float:
    """Top-1 accuracy (0..1) of ``model`` at its current level on ``num_clips`` seeded synthetic clips.

    The clips depend only on ``seed`` and the model's clip length / frame size, so models are compared
    on identical clips; the default seed is the held-out one no training run draws from. The model's
    classes must be the synthetic gesture classes.
    """
    dataset = SyntheticGestureDataset(
        num_clips,
        seed=seed,
        clip_length=model.clip_length,
        frame_size=model.frame_size,
        classes=model.classes,
    )
    return gesture_top1(model, dataset, [model.level])[0]
