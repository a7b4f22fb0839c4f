"""Quality experiments of issue 8: converted + adapted torchvision nets vs their naive knob.

No pretrained weights can be downloaded here, so a *non-throttleable* torchvision SSDlite320 is
trained briefly on the synthetic scenes as a stand-in for pretrained weights (``train``). It is then
converted and adapted with the normal CLIs (see docs/convert.md), and ``evaluate`` reports per-level
mAP@0.5 against the scenes' real ground truth and the latency of each operating point, measured in
one run beside

- the native throttleable detector (models/detector.pt), and
- the naive knob: the original SSDlite at lower input resolutions.

    python -m tnn_ros.bench.convert_quality train --minutes 15 -o /tmp/q/ssd_synthetic.pth
    python -m tnn_ros.bench.convert_quality evaluate --converted A.pt [B.pt ...] --original W.pth

The same for a video net (``train-video`` / ``video-frames`` / ``evaluate-video``): a
non-throttleable torchvision R3D-18 (or MC3-18, R(2+1)D-18) trained on the synthetic gesture clips,
converted, adapted on unlabeled synthetic clips written to an image folder, then per-level top-1
against the clips' real labels beside the native throttleable gesture net (models/gesture.pt) and
the naive knob: the original on fewer (newest) frames of the clip. See docs/convert.md.

    python -m tnn_ros.bench.convert_quality train-video --minutes 65 --clip-length 8 \
        -o /tmp/vq/r3d_gestures.pth
    python -m tnn_ros.bench.convert_quality video-frames --clips 192 --clip-length 8 -o /tmp/vq/frames
    python -m tnn_ros.bench.convert_quality evaluate-video --original /tmp/vq/r3d_gestures.pth \
        --converted /tmp/vq/r3d_converted.pt /tmp/vq/r3d_adapted.pt --json /tmp/vq/video.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from ..data.scenes import SyntheticDetectionDataset
from ..eval.agreement import PSEUDO_THRESHOLD, map50
from ..models.io import shipped_model_path
from ..sim.scenes import CLASSES

ARCH = "ssdlite320_mobilenet_v3_large"
CATEGORIES = ["__background__", *CLASSES]
VAL_SEED = 424242
TRAIN_SEED = 7
MONITOR_SEED = 8  # validation scenes watched during training (not the held-out ones)
SCENE_FRAMES_SEED = 9  # unlabeled scenes for ``tnn-train adapt``


def _shift_labels(det: dict) -> dict:
    """Detections of a torchvision model (label 0 = background) in ground-truth label ids."""
    keep = det["labels"] > 0
    return {"boxes": det["boxes"][keep], "scores": det["scores"][keep], "labels": det["labels"][keep] - 1}


def _targets(boxes, labels) -> list[dict]:
    return [{"boxes": b, "labels": c.long() + 1} for b, c in zip(boxes, labels)]  # 0 is background


def cosine_lr_scale(step: int, progress: float, warmup_steps: int, floor: float = 0.02) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine decay with ``progress`` in [0, 1], floored."""
    import math

    warm = min(1.0, (step + 1) / max(1, warmup_steps))
    return max(warm * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))), floor)


def _recipe_record(
    lr: float, warmup_steps: int, zero_init_residual: bool, seed: int, wall_s: float, losses: list[float]
) -> dict:
    """The part of a stand-in's training record that both trainers share (recipe, loss curve, command)."""
    return {
        "lr": lr,
        "optimizer": f"AdamW (weight decay 1e-4), {warmup_steps}-step linear warm-up, cosine decay "
        "over the budget (floor 2% of lr), gradient norm clipped at 5",
        "zero_init_residual": zero_init_residual,
        "seed": seed,
        "threads": torch.get_num_threads(),
        "wall_time_s": round(wall_s, 1),
        "loss_curve": [round(sum(c) / len(c), 4) for c in _chunks(losses, max(1, len(losses) // 16))],
        "command": " ".join(sys.argv),
    }


def zero_init_inverted_residuals(model: torch.nn.Module) -> int:
    """Zero the last BatchNorm scale of every MobileNetV3 inverted-residual block with a skip.

    The same start-as-identity trick as :func:`zero_init_residual_branches`, for the SSDlite
    backbone (torchvision's ``InvertedResidual``: ``block[-1]`` is the linear 1x1 projection +
    BatchNorm). Returns the number of blocks touched.
    """
    from torchvision.models.mobilenetv3 import InvertedResidual

    count = 0
    for block in model.modules():
        if isinstance(block, InvertedResidual) and block.use_res_connect:
            torch.nn.init.zeros_(block.block[-1][1].weight)
            count += 1
    return count


def train(
    minutes: float,
    output: str,
    batch_size: int = 8,
    lr: float = 1e-3,
    seed: int = 0,
    max_steps: int | None = None,
    warmup_steps: int = 200,
    zero_init_residual: bool = True,
    monitor_every: int = 300,
    monitor_images: int = 32,
    val_images: int = 64,
) -> dict:
    """Train the non-throttleable SSDlite on fresh synthetic scenes for ``minutes`` of wall time.

    The recipe that made the video stand-in learn from scratch (:func:`train_video`): AdamW with a
    linear warm-up and a cosine decay over the budget, gradient norm clipped, residual branches
    starting as the identity. Every ``monitor_every`` steps it prints mAP@0.5 on ``monitor_images``
    scenes of their own seed. Saves a plain state dict at ``output`` every 50 steps and at the end,
    and a record (recipe, steps, loss and validation curves, held-out mAP@0.5) at ``output.json``.
    """
    from ..data.scenes import collate_detections
    from ..models.converted import build_original

    torch.manual_seed(seed)
    model = build_original(ARCH, len(CATEGORIES)).train()
    if zero_init_residual:
        zero_init_inverted_residuals(model)
    dataset = SyntheticDetectionDataset(2**31 - 1, 320, 240, seed=TRAIN_SEED)
    monitor_set = _scenes(monitor_images, MONITOR_SEED)
    sampler = torch.utils.data.RandomSampler(
        dataset, replacement=True, num_samples=2**31 - 1, generator=torch.Generator().manual_seed(seed)
    )
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, collate_fn=collate_detections
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    budget_s = minutes * 60.0
    start, step, curve, monitor_curve = time.monotonic(), 0, [], []
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        torch.save(model.state_dict(), str(out) + ".tmp")
        Path(str(out) + ".tmp").replace(out)

    for images, (boxes, labels) in loader:
        elapsed = time.monotonic() - start
        if (max_steps is not None and step >= max_steps) or (max_steps is None and elapsed >= budget_s):
            break
        progress = step / max_steps if max_steps is not None else elapsed / budget_s
        for group in optimizer.param_groups:
            group["lr"] = lr * cosine_lr_scale(step, progress, warmup_steps)
        losses = model(list(images), _targets(boxes, labels))
        loss = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        step += 1
        curve.append(float(loss.detach()))
        if step % 20 == 0:
            print(
                f"step {step} loss {sum(curve[-20:]) / 20:.3f} lr {optimizer.param_groups[0]['lr']:.1e} "
                f"({time.monotonic() - start:.0f}s / {budget_s:.0f}s)",
                flush=True,
            )
        if step % 50 == 0:
            save()
        if monitor_every and step % monitor_every == 0:
            model.eval()
            score = map50([_shift_labels(model([im])[0]) for im in monitor_set[0]], monitor_set[1])
            model.train()
            monitor_curve.append([step, round(score, 4)])
            print(f"step {step} validation mAP@0.5 {score:.3f} on {monitor_images} scenes", flush=True)
    save()
    wall = time.monotonic() - start
    model.eval()
    heldout_images, heldout_truth = _scenes(val_images, VAL_SEED)
    heldout = map50([_shift_labels(model([im])[0]) for im in heldout_images], heldout_truth)
    record = {
        "arch": ARCH,
        "categories": CATEGORIES,
        "steps": step,
        "batch_size": batch_size,
        "images_seen": step * batch_size,
        **_recipe_record(lr, warmup_steps, zero_init_residual, seed, wall, curve),
        "validation_curve": monitor_curve,
        "validation_seed": MONITOR_SEED,
        "data": f"fresh synthetic scenes 320x240 (tnn_ros.data.scenes), seed {TRAIN_SEED}",
        "heldout_map50": heldout,
        "heldout_images": val_images,
        "heldout_seed": VAL_SEED,
    }
    Path(str(out) + ".json").write_text(json.dumps(record, indent=2) + "\n")
    print(
        f"trained {step} steps in {wall:.0f}s; held-out mAP@0.5 {heldout:.3f} on {val_images} scenes -> {out}"
    )
    return record


def _scenes(count: int, seed: int) -> tuple[list[torch.Tensor], list[dict]]:
    """``count`` seeded 320x240 scenes: float images in [0, 1] and their ground truth (label ids)."""
    dataset = SyntheticDetectionDataset(count, 320, 240, seed=seed)
    images, truth = [], []
    for i in range(count):
        image, target = dataset[i]
        images.append(image)
        truth.append({"boxes": target["boxes"], "labels": target["labels"].long()})
    return images, truth


@torch.no_grad()
def _detect(model, images: list[torch.Tensor]) -> list[dict]:
    """Detections of a batch-1 forward per image, in ground-truth label ids (wrappers, trained SSDlite)."""
    return [model(image[None])[0] for image in images]


class _LevelWrapper(torch.nn.Module):
    """A detector behind the level interface whose forward returns detections in ground-truth label ids."""

    def __init__(self, model: torch.nn.Module, num_levels: int) -> None:
        super().__init__()
        self.model = model
        self.num_levels = num_levels
        self.level = num_levels - 1
        self.eval()  # a fixed net: MAC counting and timing restore this mode afterwards

    def set_level(self, level: int) -> None:
        if not 0 <= level < self.num_levels:
            raise ValueError(f"level {level} not in [0, {self.num_levels - 1}]")
        self.level = level
        if hasattr(self.model, "set_level"):
            self.model.set_level(level)


class OriginalAtResolutions(_LevelWrapper):
    """The naive detection knob: the non-throttleable original SSDlite at a lower square input side.

    Level ``k`` resizes every image to ``resolutions[k]`` (ascending, the last is the original's
    own 320) before the unchanged network, through torchvision's own transform.
    """

    def __init__(self, original: torch.nn.Module, resolutions: list[int]) -> None:
        super().__init__(original, len(resolutions))
        self.resolutions = list(resolutions)

    def forward(self, images: torch.Tensor) -> list[dict]:
        side = self.resolutions[self.level]
        transform = self.model.transform
        transform.fixed_size, transform.min_size, transform.max_size = (side, side), (side,), side
        return [_shift_labels(d) for d in self.model(list(images))]


class ConvertedInGroundTruthIds(_LevelWrapper):
    """A converted detector whose labels count the background (0) shifted to ground-truth ids."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__(model, model.num_levels)

    def forward(self, images: torch.Tensor) -> list[dict]:
        return [_shift_labels(d) for d in self.model(images)]


class NativeDetections(_LevelWrapper):
    """The native throttleable detector, network + decode (score floor 0.01), as torchvision detections."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__(model, model.num_levels)

    def forward(self, images: torch.Tensor) -> list[dict]:
        from ..models.detector import decode

        return [
            {"boxes": boxes, "scores": scores, "labels": labels}
            for boxes, scores, labels in decode(*self.model(images), 0.01)
        ]


@torch.no_grad()
def evaluate(
    converted: list[str],
    original_weights: str,
    num_images: int,
    repeats: int,
    resolutions: list[int],
    native: str | None = "models/detector.pt",
) -> dict:
    """Per-level mAP@0.5 vs the scenes' ground truth, agreement, MACs and latency, in one run.

    Rows: the naive knob (the original SSDlite at each of ``resolutions``), every level of each
    ``converted`` file and every level of the ``native`` detector, on the same held-out scenes
    (seed :data:`VAL_SEED`). ``agreement`` is mAP@0.5 against the original's own detections at
    320 px with score >= 0.3 (the cards' metric). Operating points are timed interleaved (median
    wall and process-CPU ms of a batch-1 forward with post-processing). Each converted row is
    compared with the naive knob at equal cost, as in :func:`evaluate_video`.
    """
    from ..models import load_detector
    from ..models.converted import build_original, load_original_weights

    if not converted:
        raise ValueError("give at least one converted model file")
    original = build_original(ARCH, len(CATEGORIES))
    load_original_weights(original, original_weights)
    naive = OriginalAtResolutions(original, sorted(set(resolutions) | {320}))
    entries = [("original SSDlite (naive resolution knob)", naive)]
    for path in converted:  # every file checked before the long part
        model = load_detector(path)
        if getattr(model, "architecture", {}).get("arch") != ARCH or list(model.classes) != CATEGORIES:
            raise ValueError(f"{path}: not an {ARCH} converted with --classes {','.join(CATEGORIES)}")
        entries.append((f"converted {Path(path).name}", ConvertedInGroundTruthIds(model)))
    if native:
        entries.append((f"native {Path(native).name}", NativeDetections(load_detector(native))))

    images, truth = _scenes(num_images, VAL_SEED)
    example = images[0][None]
    naive.set_level(naive.num_levels - 1)
    pseudo = []
    for det in _detect(naive, images):
        keep = det["scores"] >= PSEUDO_THRESHOLD
        pseudo.append({"boxes": det["boxes"][keep], "labels": det["labels"][keep]})

    def agreeable(model) -> bool:  # same label space as the original, and something to agree on
        return not isinstance(model, NativeDetections) and any(len(t["labels"]) for t in pseudo)

    rows, points = [], []
    for name, model in entries:
        macs = _macs(model, example)
        for level in range(model.num_levels):
            model.set_level(level)
            detections = _detect(model, images)  # once, scored against truth and pseudo truth
            if isinstance(model, OriginalAtResolutions):
                setting = f"{model.resolutions[level]}x{model.resolutions[level]}"
            else:
                setting = f"level {level}"
            agreement = map50(detections, pseudo) if agreeable(model) else None
            rows.append(_row(name, setting, level, macs, map50(detections, truth), agreement))
            points.append((model, level, example))
            print(f"{name} {setting}: mAP@0.5 {rows[-1]['accuracy']:.3f}", flush=True)
    print(f"timing {len(points)} operating points, {repeats} interleaved rounds ...", flush=True)
    for row, (wall_ms, cpu_ms) in zip(rows, _interleaved_timing(points, repeats)):
        row.update(latency_ms=round(wall_ms, 2), cpu_ms=round(cpu_ms, 2))
    return {
        "task": "detection",
        "arch": ARCH,
        "images": num_images,
        "seed": VAL_SEED,
        "threads": torch.get_num_threads(),
        "repeats": repeats,
        "original_weights": str(original_weights),
        "accuracy_metric": "mAP@0.5 (torchmetrics) against the scenes' ground truth",
        "agreement_metric": "mAP@0.5 against the original's detections at 320 px with score >= "
        f"{PSEUDO_THRESHOLD}",
        "rows": rows,
        "summary": _summaries(rows, entries[0][0], [name for name, _ in entries[1 : 1 + len(converted)]]),
    }


# --- video: a torchvision video ResNet on the synthetic gesture clips ----------------------------------

VIDEO_ARCH = "r3d_18"
VIDEO_TRAIN_SEED = 11  # training clips; the adaptation frames and held-out clips use other seeds
VIDEO_FRAMES_SEED = 12  # unlabeled clips for ``tnn-train adapt``
VIDEO_MONITOR_SEED = 13  # validation clips watched during training (not the held-out ones)


def video_preprocess(clips: torch.Tensor) -> torch.Tensor:
    """uint8 (N, T, H, W, 3) -> float (N, 3, T, H, W) with the converted net's Kinetics normalisation.

    The stand-in is trained on exactly what :meth:`ConvertedVideoNet.preprocess` feeds it later.
    """
    from ..models.converted import VIDEO_MEAN, VIDEO_STD

    mean = torch.tensor(VIDEO_MEAN).view(1, 3, 1, 1, 1)
    std = torch.tensor(VIDEO_STD).view(1, 3, 1, 1, 1)
    return (clips.permute(0, 4, 1, 2, 3).float().div_(255.0) - mean) / std


def _clip_batch(dataset, indices) -> tuple[torch.Tensor, torch.Tensor]:
    clips, labels = zip(*(dataset[int(i)] for i in indices))
    return torch.stack(clips), torch.tensor(labels)


def train_video(
    output: str,
    minutes: float,
    arch: str = VIDEO_ARCH,
    clip_length: int = 16,
    frame_size: tuple[int, int] = (32, 32),
    batch_size: int = 8,
    lr: float = 1e-3,
    seed: int = 0,
    max_steps: int | None = None,
    val_clips: int = 96,
    log_every: int = 10,
    warmup_steps: int = 100,
    label_smoothing: float = 0.1,
    zero_init_residual: bool = True,
    monitor_every: int = 150,
    monitor_clips: int = 64,
) -> dict:
    """Train the non-throttleable torchvision video net on fresh synthetic gesture clips.

    Stops after ``minutes`` of wall time (or ``max_steps``); AdamW with a linear warm-up over
    ``warmup_steps`` and a cosine decay over the budget, label smoothing, and the last BatchNorm of
    every residual branch starting at zero (:func:`zero_init_residual_branches`; a from-scratch
    18-layer video ResNet otherwise sat at chance for hundreds of steps here). Every
    ``monitor_every`` steps it prints top-1 on ``monitor_clips`` validation clips of their own seed
    (neither training nor held-out clips). Saves a plain state dict at ``output`` (``torch.load(...,
    weights_only=True)`` / ``tnn-train convert --weights`` read it) every 50 steps and at the end,
    and a record (recipe, steps, clips seen, loss and validation curves, held-out top-1) at
    ``output`` + ``.json``.
    """
    import numpy as np

    from ..data.gestures import SyntheticGestureDataset
    from ..eval.accuracy import GESTURE_EVAL_SEED
    from ..models.converted import arch_spec, build_original
    from ..sim.gestures import GESTURE_CLASSES

    if arch_spec(arch).task != "video":
        raise ValueError(f"{arch} is not a video architecture")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_original(arch, len(GESTURE_CLASSES)).train()
    if zero_init_residual:
        zero_init_residual_branches(model)
    train_set = SyntheticGestureDataset(2**31 - 1, VIDEO_TRAIN_SEED, clip_length, frame_size)
    monitor_set = SyntheticGestureDataset(monitor_clips, VIDEO_MONITOR_SEED, clip_length, frame_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    budget_s = minutes * 60.0
    start, step, curve, monitor_curve = time.monotonic(), 0, [], []
    seen_correct = seen = 0
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        torch.save(model.state_dict(), str(out) + ".tmp")
        Path(str(out) + ".tmp").replace(out)

    while True:
        elapsed = time.monotonic() - start
        if (max_steps is not None and step >= max_steps) or (max_steps is None and elapsed >= budget_s):
            break
        progress = min(1.0, elapsed / budget_s) if max_steps is None else step / max_steps
        for group in optimizer.param_groups:
            group["lr"] = lr * cosine_lr_scale(step, progress, warmup_steps)
        clips, labels = _clip_batch(train_set, rng.integers(0, len(train_set), batch_size))
        logits = model(video_preprocess(clips))
        loss = torch.nn.functional.cross_entropy(logits, labels, label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)  # from scratch: no early blow-up
        optimizer.step()
        step += 1
        seen_correct += int((logits.argmax(1) == labels).sum())
        seen += batch_size
        curve.append(float(loss.detach()))
        if step % log_every == 0:
            print(
                f"step {step} loss {sum(curve[-log_every:]) / log_every:.3f} "
                f"train top-1 {seen_correct / seen:.2f} lr {optimizer.param_groups[0]['lr']:.1e} "
                f"({time.monotonic() - start:.0f}s / {budget_s:.0f}s)",
                flush=True,
            )
            seen_correct = seen = 0
        if step % 50 == 0:
            save()
        if monitor_every and step % monitor_every == 0:
            top1 = _top1(model, monitor_set)
            model.train()
            monitor_curve.append([step, round(top1, 4)])
            print(f"step {step} validation top-1 {top1:.3f} on {monitor_clips} clips", flush=True)
    save()
    wall = time.monotonic() - start
    heldout = _top1(model, SyntheticGestureDataset(val_clips, GESTURE_EVAL_SEED, clip_length, frame_size))
    record = {
        "arch": arch,
        "classes": list(GESTURE_CLASSES),
        "clip_length": clip_length,
        "frame_size": list(frame_size),
        "steps": step,
        "batch_size": batch_size,
        "clips_seen": step * batch_size,
        **_recipe_record(lr, warmup_steps, zero_init_residual, seed, wall, curve),
        "label_smoothing": label_smoothing,
        "validation_curve": monitor_curve,
        "validation_seed": VIDEO_MONITOR_SEED,
        "data": f"fresh synthetic gesture clips (tnn_ros.data.gestures), seed {VIDEO_TRAIN_SEED}",
        "heldout_top1": heldout,
        "heldout_clips": val_clips,
        "heldout_seed": GESTURE_EVAL_SEED,
    }
    Path(str(out) + ".json").write_text(json.dumps(record, indent=2) + "\n")
    print(
        f"trained {step} steps ({step * batch_size} clips) in {wall:.0f}s; held-out top-1 "
        f"{record['heldout_top1']:.3f} on {val_clips} clips -> {out}",
        flush=True,
    )
    return record


def zero_init_residual_branches(model: torch.nn.Module) -> int:
    """Set the scale of the last BatchNorm in every residual branch of a video ResNet to zero.

    Each block then starts as the identity, which lets a deep ResNet trained from scratch learn
    from its first steps (Goyal et al. 2017, "Accurate, Large Minibatch SGD"). torchvision's own
    ``zero_init_residual`` only handles Bottleneck blocks; the video ResNets use BasicBlock, whose
    branch ends in ``conv2 = Sequential(conv, BatchNorm3d)``. Returns the number of blocks touched.
    """
    from torchvision.models.video.resnet import BasicBlock

    count = 0
    for block in model.modules():
        if isinstance(block, BasicBlock):
            torch.nn.init.zeros_(block.conv2[-1].weight)
            count += 1
    return count


@torch.no_grad()
def _top1(model: torch.nn.Module, dataset, batch: int = 16) -> float:
    """Top-1 of ``model`` (put in eval mode) on every clip of ``dataset``."""
    model.eval()
    correct = 0
    for first in range(0, len(dataset), batch):
        clips, labels = _clip_batch(dataset, range(first, min(len(dataset), first + batch)))
        correct += int((model(video_preprocess(clips)).argmax(1) == labels).sum())
    return correct / len(dataset)


def _chunks(values: list, size: int) -> list[list]:
    return [values[i : i + size] for i in range(0, len(values), size)]


def write_video_frames(
    output: str, clips: int, clip_length: int = 16, frame_size: tuple[int, int] = (32, 32)
) -> int:
    """Write ``clips`` unlabeled synthetic gesture clips as consecutive PNG frames into ``output``.

    ``tnn-train adapt --frames DIR`` cuts the sorted frames into clips of the model's clip length
    from the first frame on, so with the same ``clip_length`` its clips are these clips. The clips
    come from their own seed (neither training nor held-out clips); no label is written.
    """
    import cv2

    from ..data.gestures import SyntheticGestureDataset

    folder = Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.iterdir()):
        raise ValueError(f"{folder}: not empty (adapt would read the old frames too)")
    dataset = SyntheticGestureDataset(clips, VIDEO_FRAMES_SEED, clip_length, frame_size)
    count = 0
    for i in range(clips):
        for frame in dataset[i][0].numpy():
            cv2.imwrite(str(folder / f"{count:06d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            count += 1
    print(f"wrote {count} frames ({clips} clips of {clip_length}) to {folder}")
    return count


def write_scene_frames(output: str, images: int) -> int:
    """Write ``images`` unlabeled synthetic scenes (320x240) as PNG frames into ``output``.

    The unlabeled frames ``tnn-train adapt --frames DIR`` reads for the detection stand-in: their
    own seed (neither training, monitoring nor held-out scenes); no label is written.
    """
    import cv2

    folder = Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.iterdir()):
        raise ValueError(f"{folder}: not empty (adapt would read the old frames too)")
    dataset = SyntheticDetectionDataset(images, 320, 240, seed=SCENE_FRAMES_SEED)
    for i in range(images):
        rgb, _, _ = dataset.scene(i)
        cv2.imwrite(str(folder / f"{i:06d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    print(f"wrote {images} scenes to {folder}")
    return images


class OriginalOnShortClips(torch.nn.Module):
    """The naive clip knob: the non-throttleable original on the newest frames of each clip.

    Level ``k`` runs ``knobs[k] = (clip_length, frame_stride)``, the same frame choice as a converted
    model's clip levels (:func:`~tnn_ros.throttle.convert.newest_frame_indices`); frames it skips are
    never read. Offers the level interface (``num_levels``, ``level``, ``set_level``) that MAC
    counting and the interleaved timing use.
    """

    def __init__(self, original: torch.nn.Module, clip_length: int, knobs: list[tuple[int, int]]) -> None:
        from ..throttle.convert import newest_frame_indices

        super().__init__()
        if not knobs:
            raise ValueError("need at least one (clip_length, frame_stride) pair")
        self.original = original.eval()
        self.clip_length = clip_length
        self.knobs = [(int(length), int(stride)) for length, stride in knobs]
        self.frames = [newest_frame_indices(clip_length, length, stride) for length, stride in self.knobs]
        self.level = len(self.knobs) - 1
        self.eval()  # a fixed net: MAC counting and timing restore this mode afterwards

    @property
    def num_levels(self) -> int:
        return len(self.knobs)

    def set_level(self, level: int) -> None:
        if not 0 <= level < self.num_levels:
            raise ValueError(f"level {level} not in [0, {self.num_levels - 1}]")
        self.level = level

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        if clips.shape[2] != self.clip_length:
            raise ValueError(f"expected clips of {self.clip_length} frames, got {clips.shape[2]}")
        frames = self.frames[self.level]
        return self.original(clips[:, :, frames[0] :: self.knobs[self.level][1]])


def _macs(model, example: torch.Tensor) -> list[int]:
    """MACs per level, counted from the executed conv/linear shapes (:mod:`tnn_ros.throttle.macs`)."""
    from ..throttle.macs import count_level_costs

    return [cost.macs for cost in count_level_costs(model, example)]


@torch.no_grad()
def _predictions(model, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Top-1 class of every held-out clip at each level of ``model`` (batches of normalised clips)."""
    previous = model.level
    result = []
    for level in range(model.num_levels):
        model.set_level(level)
        result.append(torch.cat([model(batch).argmax(1) for batch in inputs]))
    model.set_level(previous)
    return result


@torch.no_grad()
def _interleaved_timing(points: list[tuple], repeats: int) -> list[tuple[float, float]]:
    """(median wall ms, median process CPU ms) of a batch-1 forward of every operating point.

    ``points`` are (model, level, example); every round runs every point once, so the machine's
    load drifts over all of them alike and their ratios stay fair.
    """
    import statistics

    wall: list[list[float]] = [[] for _ in points]
    cpu: list[list[float]] = [[] for _ in points]
    for round_index in range(repeats + 1):
        for i, (model, level, example) in enumerate(points):
            model.set_level(level)
            start, start_cpu = time.perf_counter(), time.process_time()
            model(example)
            if round_index:  # round 0 warms oneDNN's per-shape primitives
                wall[i].append((time.perf_counter() - start) * 1e3)
                cpu[i].append((time.process_time() - start_cpu) * 1e3)
    return [(statistics.median(w), statistics.median(c)) for w, c in zip(wall, cpu)]


def _clip_inputs(num_clips: int, clip_length: int, frame_size, preprocess, batch: int = 16):
    """Held-out clips (seed :data:`GESTURE_EVAL_SEED`) as preprocessed batches and their labels."""
    from ..data.gestures import SyntheticGestureDataset
    from ..eval.accuracy import GESTURE_EVAL_SEED

    dataset = SyntheticGestureDataset(num_clips, GESTURE_EVAL_SEED, clip_length, tuple(frame_size))
    batches, labels = [], []
    for first in range(0, num_clips, batch):
        clips, y = _clip_batch(dataset, range(first, min(num_clips, first + batch)))
        batches.append(preprocess(clips))
        labels.append(y)
    return batches, torch.cat(labels)


def _dominating(row: dict, naive: list[dict], cost: str) -> list[str]:
    """Naive-knob settings at most as costly as ``row`` and strictly more accurate."""
    return [n["setting"] for n in naive if n[cost] <= row[cost] and n["accuracy"] > row["accuracy"] + 1e-9]


def _naive_at_cost(row: dict, naive: list[dict], cost: str) -> float | None:
    """Best accuracy of the naive knob among its settings at most as costly as ``row`` (None: none is)."""
    accuracies = [n["accuracy"] for n in naive if n[cost] <= row[cost]]
    return max(accuracies) if accuracies else None


def _row(
    model: str, setting: str, level: int, macs: list[int], accuracy: float, agreement: float | None
) -> dict:
    """One operating point of an evaluation table (timing is added after the interleaved rounds)."""
    return {
        "model": model,
        "setting": setting,
        "level": level,
        "macs": macs[level],
        "mac_ratio": round(macs[level] / macs[-1], 4),
        "accuracy": accuracy,
        "agreement": agreement,
    }


def _summaries(rows: list[dict], naive_name: str, converted_names: list[str]) -> list[dict]:
    """Compare each converted row with the naive knob at equal cost; one summary per converted model.

    Adds ``naive_at_cpu`` / ``naive_at_macs`` (the naive knob's best accuracy at most as costly) and
    ``dominated_by_naive_cpu`` / ``_macs`` (its cheaper-or-equal, strictly more accurate settings)
    to the rows; the summary names the level nearest half the MACs and its loss against full.
    """
    naive_rows = [r for r in rows if r["model"] == naive_name]
    summaries = []
    for name in converted_names:
        own = [r for r in rows if r["model"] == name]
        for row in own:
            row["naive_at_cpu"] = _naive_at_cost(row, naive_rows, "cpu_ms")
            row["naive_at_macs"] = _naive_at_cost(row, naive_rows, "macs")
            row["dominated_by_naive_cpu"] = _dominating(row, naive_rows, "cpu_ms")
            row["dominated_by_naive_macs"] = _dominating(row, naive_rows, "macs")
        half = min(own, key=lambda r: abs(r["mac_ratio"] - 0.5))
        full = own[-1]
        summaries.append(
            {
                "model": name,
                "half_mac_level": half["level"],
                "half_mac_ratio": half["mac_ratio"],
                "half_mac_accuracy_drop_points": round(100 * (full["accuracy"] - half["accuracy"]), 2),
                "half_mac_agreement": half["agreement"],
                "half_mac_agreement_drop_points": None
                if half["agreement"] is None
                else round(100 * (full["agreement"] - half["agreement"]), 2),
                "levels_dominated_by_naive_cpu": [r["level"] for r in own if r["dominated_by_naive_cpu"]],
                "levels_dominated_by_naive_macs": [r["level"] for r in own if r["dominated_by_naive_macs"]],
                # the tolerance, read the other way round: how cheap can 3 points get?
                "cheapest_level_within_3_points_agreement": next(
                    (
                        r["level"]
                        for r in own
                        if r["agreement"] is not None and full["agreement"] - r["agreement"] <= 0.03 + 1e-9
                    ),
                    None,
                ),
            }
        )
    return summaries


@torch.no_grad()
def evaluate_video(
    converted: list[str],
    original_weights: str,
    native: str | None = "models/gesture.pt",
    num_clips: int = 160,
    repeats: int = 5,
    knobs: list[tuple[int, int]] | None = None,
) -> dict:
    """Per-level top-1 vs the clips' labels, MACs and latency of every compared model, in one run.

    Rows: the naive knob (the original on the newest ``knobs`` (clip length, frame stride) frames),
    every level of each ``converted`` model file (all with the same architecture, clip and frame
    size) and every level of the ``native`` gesture net (on its own frame size, same clip seeds).
    Converted and naive rows also report top-1 *agreement* with the original on the full clip.
    Each converted row is compared with the naive knob at equal cost (process CPU ms and MACs):
    ``naive_at_cpu`` is the best naive accuracy among its settings at most as costly,
    ``dominated_by_naive_cpu`` those cheaper-or-equal settings that are strictly more accurate.
    """
    from ..eval.accuracy import GESTURE_EVAL_SEED
    from ..models import load_gesture
    from ..models.converted import build_converted, build_original, load_original_weights
    from ..models.io import load_model
    from ..sim.gestures import GESTURE_CLASSES

    if not converted:
        raise ValueError("give at least one converted model file")
    models = [(path, load_model(path, build_converted)) for path in converted]
    first = models[0][1]
    arch, clip_length, frame_size = first.architecture["arch"], first.clip_length, first.frame_size
    for path, model in models:
        layout = (model.architecture["arch"], model.clip_length, model.frame_size)
        if layout != (arch, clip_length, frame_size):
            raise ValueError(f"{path}: architecture / clip / frame size differ from {converted[0]}")
        if list(model.labels) != list(GESTURE_CLASSES):
            raise ValueError(f"{path}: classes {model.labels} are not the synthetic gesture classes")
    original = build_original(arch, len(GESTURE_CLASSES))
    load_original_weights(original, original_weights)
    # Pairs whose span fits the clip; one frame has no stride.
    fitting = {(n, k if n > 1 else 1) for n, k in knobs or [] if (n - 1) * k + 1 <= clip_length}
    knobs = sorted(fitting | {(clip_length, 1)}, key=lambda k: (k[0], -k[1]))
    naive = OriginalOnShortClips(original, clip_length, knobs)

    inputs, labels = _clip_inputs(num_clips, clip_length, frame_size, video_preprocess)
    example = inputs[0][:1]
    reference = _predictions(naive, inputs)[-1]  # the original on the full clip
    entries = [("original (naive clip knob)", naive, inputs, example, labels)]
    for path, model in models:
        entries.append((f"converted {Path(path).name}", model.eval(), inputs, example, labels))
    if native:
        net = load_gesture(native).eval()
        native_inputs, native_labels = _clip_inputs(
            num_clips, net.clip_length, net.frame_size, net.preprocess
        )
        entries.append(
            (f"native {Path(native).name}", net, native_inputs, native_inputs[0][:1], native_labels)
        )

    rows, points = [], []
    for name, model, batches, ex, truth in entries:
        macs = _macs(model, ex)
        for level, predicted in enumerate(_predictions(model, batches)):
            if isinstance(model, OriginalOnShortClips):
                setting = "{}x{}".format(*model.knobs[level])
            elif getattr(model, "knob_levels", None) is not None:
                k = model.knobs_of(level)
                setting = f"level {level} (w{k['width_level']}, {k['clip_length']}x{k['frame_stride']})"
            else:
                setting = f"level {level}"
            same_clips = model is naive or any(model is m for _, m in models)
            agreement = float((predicted == reference).float().mean()) if same_clips else None
            rows.append(
                _row(name, setting, level, macs, float((predicted == truth).float().mean()), agreement)
            )
            points.append((model, level, ex))
    print(f"timing {len(points)} operating points, {repeats} interleaved rounds ...", flush=True)
    for row, (wall_ms, cpu_ms) in zip(rows, _interleaved_timing(points, repeats)):
        row.update(latency_ms=round(wall_ms, 2), cpu_ms=round(cpu_ms, 2))
    return {
        "task": "video",
        "arch": arch,
        "clip_length": clip_length,
        "frame_size": list(frame_size),
        "clips": num_clips,
        "seed": GESTURE_EVAL_SEED,
        "threads": torch.get_num_threads(),
        "repeats": repeats,
        "original_weights": str(original_weights),
        "rows": rows,
        "summary": _summaries(rows, entries[0][0], [f"converted {Path(p).name}" for p, _ in models]),
    }


def print_table(result: dict) -> None:
    """The evaluate / evaluate-video rows as a table (accuracy, agreement, cost) and the summaries."""
    if result["task"] == "video":
        size = f"{result['clip_length']}x{result['frame_size'][0]}x{result['frame_size'][1]}"
        title, metric = f"{result['arch']} {size}, {result['clips']} held-out clips", "top-1"
    else:
        title, metric = f"{result['arch']}, {result['images']} held-out scenes", "mAP50"
    print(f"\n{title}, {result['threads']} thread(s), median of {result['repeats']}")
    header = (
        f"{'model':44} {'setting':26} {'MMACs':>8} {'ratio':>6} {metric:>6} {'agree':>6} "
        f"{'ms':>8} {'cpu ms':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in result["rows"]:
        agree = "-" if r["agreement"] is None else f"{r['agreement']:.3f}"
        print(
            f"{r['model'][:44]:44} {r['setting'][:26]:26} {r['macs'] / 1e6:8.1f} {r['mac_ratio']:6.3f} "
            f"{r['accuracy']:6.3f} {agree:>6} {r['latency_ms']:8.2f} {r['cpu_ms']:8.2f}"
        )
    for s in result["summary"]:
        print(
            f"{s['model']}: level {s['half_mac_level']} ({s['half_mac_ratio']:.2f} of the MACs) loses "
            f"{s['half_mac_accuracy_drop_points']:+.1f} points of {metric} and "
            f"{_points(s['half_mac_agreement_drop_points'])} points of agreement vs full; levels dominated "
            f"by the naive knob (cpu ms): {s['levels_dominated_by_naive_cpu'] or 'none'}, (MACs): "
            f"{s['levels_dominated_by_naive_macs'] or 'none'}"
        )


def _points(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1f}"


def _knob_pairs(lengths: str, strides: str) -> list[tuple[int, int]]:
    return [
        (int(length), int(stride))
        for length in lengths.split(",")
        if length.strip()
        for stride in strides.split(",")
        if stride.strip()
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tnn_ros.bench.convert_quality",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train the non-throttleable SSDlite stand-in")
    t.add_argument("--monitor-images", type=int, default=32)
    t.add_argument("--val-images", type=int, default=64, help="held-out scenes scored at the end")
    e = sub.add_parser("evaluate", help="per-level mAP@0.5 vs ground truth + latency, one run")
    e.add_argument("--converted", nargs="+", required=True)
    e.add_argument("--original", required=True, help="the stand-in's weights file")
    e.add_argument("--images", type=int, default=64)
    e.add_argument("--repeats", type=int, default=5)
    e.add_argument("--resolutions", type=int, nargs="+", default=[320, 256, 224, 192, 160])
    e.add_argument(
        "--native", default=str(shipped_model_path("detector")), help="native detector ('' to skip)"
    )
    e.add_argument("--json", default=None)
    tv = sub.add_parser("train-video", help="train the non-throttleable video net stand-in on gesture clips")
    tv.add_argument("--arch", default=VIDEO_ARCH, choices=("r3d_18", "mc3_18", "r2plus1d_18"))
    tv.add_argument("--clip-length", type=int, default=16)
    tv.add_argument("--frame-size", type=int, nargs=2, default=(32, 32), metavar=("W", "H"))
    tv.add_argument("--label-smoothing", type=float, default=0.1)
    tv.add_argument("--monitor-clips", type=int, default=64)
    tv.add_argument("--val-clips", type=int, default=96, help="held-out clips scored at the end")
    sf = sub.add_parser("scene-frames", help="write unlabeled synthetic scenes as PNG frames")
    sf.add_argument("--images", type=int, default=512)
    sf.add_argument("-o", "--output", required=True, help="empty or new folder")
    vf = sub.add_parser("video-frames", help="write unlabeled synthetic gesture clips as PNG frames")
    vf.add_argument("--clips", type=int, default=96)
    vf.add_argument("--clip-length", type=int, default=16)
    vf.add_argument("--frame-size", type=int, nargs=2, default=(32, 32), metavar=("W", "H"))
    vf.add_argument("-o", "--output", required=True, help="empty or new folder")
    ev = sub.add_parser("evaluate-video", help="per-level top-1 vs labels + MACs + latency, one run")
    ev.add_argument("--converted", nargs="+", required=True, help="converted (and adapted) model files")
    ev.add_argument("--original", required=True, help="the stand-in's weights file")
    ev.add_argument(
        "--native", default=str(shipped_model_path("gesture")), help="native gesture net ('' to skip)"
    )
    ev.add_argument("--clips", type=int, default=160, help="held-out clips (default 160)")
    ev.add_argument("--repeats", type=int, default=5)
    ev.add_argument("--clip-lengths", default="16,8,4", help="naive knob: frames the original sees")
    ev.add_argument("--frame-strides", default="1,2", help="naive knob: distance between those frames")
    ev.add_argument("--json", default=None)
    for p, warmup, monitor in ((t, 200, 300), (tv, 100, 150)):  # the two stand-ins' shared recipe
        p.add_argument("--minutes", type=float, default=15.0, help="wall-clock budget (default 15)")
        p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps instead")
        p.add_argument("--batch-size", type=int, default=8)
        p.add_argument("--lr", type=float, default=1e-3, help="peak AdamW learning rate (default 1e-3)")
        p.add_argument("--warmup-steps", type=int, default=warmup)
        p.add_argument(
            "--monitor-every", type=int, default=monitor, help="steps between validation prints (0: off)"
        )
        p.add_argument(
            "--no-zero-init-residual",
            dest="zero_init_residual",
            action="store_false",
            help="keep torchvision's init of the residual branches' last BatchNorm (default: zero)",
        )
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("-o", "--output", required=True, help="weights file (.pth state dict)")
    for p in (t, e, tv, ev):
        p.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.command not in ("video-frames", "scene-frames"):
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    if args.command in ("train", "train-video"):
        recipe = {
            "minutes": args.minutes,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "seed": args.seed,
            "max_steps": args.max_steps,
            "warmup_steps": args.warmup_steps,
            "zero_init_residual": args.zero_init_residual,
            "monitor_every": args.monitor_every,
        }
        if args.command == "train":
            train(
                output=args.output, monitor_images=args.monitor_images, val_images=args.val_images, **recipe
            )
        else:
            train_video(
                args.output,
                arch=args.arch,
                clip_length=args.clip_length,
                frame_size=tuple(args.frame_size),
                val_clips=args.val_clips,
                label_smoothing=args.label_smoothing,
                monitor_clips=args.monitor_clips,
                **recipe,
            )
        return 0
    if args.command == "scene-frames":
        write_scene_frames(args.output, args.images)
        return 0
    if args.command == "video-frames":
        write_video_frames(args.output, args.clips, args.clip_length, tuple(args.frame_size))
        return 0
    from ..models.converted import WeightsError
    from ..models.io import ModelFileError

    try:
        if args.command == "evaluate-video":
            knobs = _knob_pairs(args.clip_lengths, args.frame_strides)
            result = evaluate_video(
                args.converted, args.original, args.native or None, args.clips, args.repeats, knobs
            )
        else:
            result = evaluate(
                args.converted,
                args.original,
                args.images,
                args.repeats,
                args.resolutions,
                args.native or None,
            )
    except (ValueError, WeightsError, ModelFileError) as exc:  # a wrong file: one line, exit 2
        print(f"convert_quality {args.command}: error: {exc}", file=sys.stderr)
        return 2
    print_table(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
