"""Agreement of a converted (throttled) model with its unthrottled original, per level; accuracy too.

Detection: mAP@0.5 (torchmetrics) of each level's detections against the original's detections on
the same frames, used as pseudo ground truth (boxes above ``pseudo_threshold``). Video: top-1
agreement, the share of clips whose top class equals the original's. Equivalence: the largest
absolute difference over every raw network output (backbone features, head outputs, detections)
between the full level and the original. Accuracy: the same metrics against real labels
(:func:`detection_map50` with ground-truth boxes, :func:`top1_accuracy` with class ids).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

PSEUDO_THRESHOLD = 0.3  # the original's detections kept as pseudo ground truth
SCORE_FLOOR = 0.01  # detections a level must report to be ranked by mAP
MAX_DETECTIONS = 300  # SSDlite reports up to 300 per image; rank them all


def _raw_modules(net: nn.Module) -> dict[str, nn.Module]:
    """The torchvision sub-modules whose outputs make up a detector's raw outputs."""
    modules = {"backbone": net.backbone}
    if hasattr(net, "rpn"):
        modules["rpn_head"] = net.rpn.head
        modules["box_predictor"] = net.roi_heads.box_predictor
    else:
        modules["head"] = net.head
    return modules


def _tensors(value) -> list[Tensor]:
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return []


@torch.no_grad()
def detector_raw_outputs(run, net: nn.Module, include_detections: bool = True) -> dict[str, list[Tensor]]:
    """Call ``run()`` (a forward of the model containing ``net``) and capture every raw output.

    Returns name -> tensors: backbone features, head outputs and (``include_detections``) the final
    ``boxes``/``scores``/``labels`` per image. In float32 the detections of a random-weight net can
    swap places between near-equal scores, which is rounding, not a conversion error.
    """
    captured: dict[str, list[Tensor]] = {}
    handles = []
    for name, module in _raw_modules(net).items():

        def hook(_module, _inputs, output, name=name):
            captured.setdefault(name, []).extend(t.detach().clone() for t in _tensors(output))

        handles.append(module.register_forward_hook(hook))
    try:
        detections = run()
    finally:
        for handle in handles:
            handle.remove()
    for i, det in enumerate(detections if include_detections else []):
        for key in ("boxes", "scores", "labels"):
            captured[f"{key}[{i}]"] = [det[key].detach().float()]
    return captured


def max_abs_difference(reference: dict[str, list[Tensor]], candidate: dict[str, list[Tensor]]) -> float:
    """Largest absolute difference over matching tensors; inf when any shape or name differs."""
    if reference.keys() != candidate.keys():
        return float("inf")
    worst = 0.0
    for name, tensors in reference.items():
        others = candidate[name]
        if len(tensors) != len(others):
            return float("inf")
        for a, b in zip(tensors, others):
            if a.shape != b.shape:
                return float("inf")
            if a.numel():
                worst = max(worst, float((a.float() - b.float()).abs().max()))
    return worst


@torch.no_grad()
def full_level_difference(
    model, original: nn.Module, inputs: Iterable[Tensor], include_detections: bool = True
) -> float:
    """Max abs difference of every output between ``model`` at its top level and ``original``.

    Detectors: backbone features, head outputs and (``include_detections``) final detections;
    video nets: the logits. ``inputs`` are batches in the model's ``forward`` format and dtype.
    """
    previous = model.level
    model.set_level(model.num_levels - 1)
    worst = 0.0
    try:
        for batch in inputs:
            if getattr(model, "architecture", {}).get("task") == "detection":
                ref = detector_raw_outputs(lambda: original(list(batch)), original, include_detections)
                got = detector_raw_outputs(lambda: model(batch), model.net, include_detections)
                worst = max(worst, max_abs_difference(ref, got))
            else:
                worst = max(worst, float((original(batch) - model(batch)).abs().max()))
    finally:
        model.set_level(previous)
    return worst


@torch.no_grad()
def equivalence_report(model, original: nn.Module, inputs: Sequence[Tensor]) -> dict:
    """The card's equivalence figures of a conversion, measured on ``inputs`` (float32 batches).

    - ``full_level_max_abs_diff``: float32, every raw output (detectors: backbone features and head
      outputs; the final detection lists are compared in float64 only, see below).
    - ``full_level_max_abs_diff_fp64``: the same with model and original in float64, detections
      included: the conversion's own error, free of float32 rounding.
    - ``fp32_noise_floor``: the original in float32 against itself in float64, the rounding any
      reimplementation of the same function in float32 would show.
    """
    import copy

    fp32 = full_level_difference(model, original, inputs, include_detections=False)
    model64, original64 = copy.deepcopy(model).double(), copy.deepcopy(original).double()
    inputs64 = [x.double() for x in inputs]
    fp64 = full_level_difference(model64, original64, inputs64, include_detections=True)
    floor = 0.0
    detection = getattr(model, "architecture", {}).get("task") == "detection"
    for x, x64 in zip(inputs, inputs64):
        if detection:
            ref = detector_raw_outputs(lambda: original(list(x)), original, include_detections=False)
            exact = detector_raw_outputs(lambda: original64(list(x64)), original64, include_detections=False)
            floor = max(floor, max_abs_difference(ref, exact))
        else:
            floor = max(floor, float((original(x).double() - original64(x64)).abs().max()))
    return {"full_level_max_abs_diff": fp32, "full_level_max_abs_diff_fp64": fp64, "fp32_noise_floor": floor}


@torch.no_grad()
def detection_agreement(
    model,
    original: nn.Module,
    images: Sequence[Tensor],
    levels: Sequence[int] | None = None,
    pseudo_threshold: float = PSEUDO_THRESHOLD,
) -> list[float]:
    """mAP@0.5 of each level against the original's detections (score >= ``pseudo_threshold``).

    ``images`` are (3, H, W) floats in [0, 1]. Frames on which the original finds nothing count
    through false positives only (torchmetrics ignores them when no level reports anything either).
    Returns NaN for a level when the original detected nothing on any frame (nothing to agree on).
    """
    targets = []
    for image in images:
        det = original([image])[0]
        keep = det["scores"] >= pseudo_threshold
        targets.append({"boxes": det["boxes"][keep], "labels": det["labels"][keep]})
    return detection_map50(model, images, targets, levels)


def map50(detections: Sequence[dict], targets: Sequence[dict]) -> float:
    """mAP@0.5 (torchmetrics) of per-image ``detections`` against ``targets`` (same label ids).

    Detections scoring below ``SCORE_FLOOR`` are not ranked and up to ``MAX_DETECTIONS`` per image
    are: every mAP and agreement figure of the converter, the adaptation and the quality experiment
    is this one function.
    """
    from torchmetrics.detection import MeanAveragePrecision

    metric = MeanAveragePrecision(
        iou_thresholds=[0.5], box_format="xyxy", max_detection_thresholds=[1, 10, MAX_DETECTIONS]
    )
    metric.warn_on_many_detections = False
    for det, target in zip(detections, targets):
        keep = det["scores"] >= SCORE_FLOOR
        metric.update([{k: det[k][keep] for k in ("boxes", "scores", "labels")}], [target])
    return float(metric.compute()["map_50"])


@torch.no_grad()
def detection_map50(
    model, images: Sequence[Tensor], targets: Sequence[dict], levels: Sequence[int] | None = None
) -> list[float]:
    """mAP@0.5 (:func:`map50`) of each level's detections against ``targets``.

    Targets: boxes xyxy in the images' pixels and labels in the model's label ids (pseudo ground
    truth or real labels).

    NaN for every level when no target has a box (nothing to find).
    """
    levels = list(range(model.num_levels)) if levels is None else list(levels)
    if not any(len(t["labels"]) for t in targets):
        return [float("nan")] * len(levels)
    previous = model.level
    scores = []
    try:
        for level in levels:
            model.set_level(level)
            scores.append(map50([model(image[None])[0] for image in images], targets))
    finally:
        model.set_level(previous)
    return scores


@torch.no_grad()
def top1_agreement(
    model, original: nn.Module, clips: Sequence[Tensor], levels: Sequence[int] | None = None
) -> list[float]:
    """Share of clips whose top-1 class at each level equals the original's (clips: (3, T, H, W))."""
    reference = original(torch.stack(list(clips))).argmax(1)
    return top1_accuracy(model, clips, reference, levels)


@torch.no_grad()
def top1_accuracy(
    model, clips: Sequence[Tensor], labels: Tensor | Sequence[int], levels: Sequence[int] | None = None
) -> list[float]:
    """Share of clips whose top-1 class at each level is ``labels`` (the original's or real ones)."""
    batch = torch.stack(list(clips))
    reference = torch.as_tensor(labels)
    previous = model.level
    levels = list(range(model.num_levels)) if levels is None else list(levels)
    scores = []
    try:
        for level in levels:
            model.set_level(level)
            scores.append(float((model(batch).argmax(1) == reference).float().mean()))
    finally:
        model.set_level(previous)
    return scores


def agreement_per_level(model, original: nn.Module, held_out: Sequence[Tensor]) -> tuple[list[float], str]:
    """Each level's agreement with ``original`` on ``held_out`` inputs, and the metric's name.

    Detectors take (3, H, W) images in [0, 1] (mAP@0.5 against the original's detections); video
    nets take normalised (3, T, H, W) clips (top-1 agreement).
    """
    if getattr(model, "architecture", {}).get("task") == "detection":
        scores = detection_agreement(model, original, held_out)
        return scores, (
            f"mAP@0.5 (torchmetrics) against the original's detections with score >= "
            f"{PSEUDO_THRESHOLD} on {len(held_out)} held-out frames"
        )
    metric = f"top-1 agreement with the original on {len(held_out)} held-out clips"
    return top1_agreement(model, original, held_out), metric
