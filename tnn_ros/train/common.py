"""Training machinery shared by the detector and gesture trainers.

* Sandwich rule (Yu & Huang, slimmable networks): every step trains the full level, the smallest
  level and a few random levels in between, accumulating their gradients into one update.
* In-place distillation: the smaller levels also learn from the full level's (detached) outputs.
* Switchable BN: each level has its own BatchNorm; ``calibrate_bn`` re-estimates every level's
  statistics after training with exact (cumulative) averages.
* Checkpoints with ``--resume``, seeds, tqdm progress.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from ..throttle import ThrottleableModule, gated_ops


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def sandwich_levels(num_levels: int, rng: random.Random, num_random: int = 2) -> list[int]:
    """Levels for one step: the full level first (the teacher), the smallest, and random others."""
    top = num_levels - 1
    middle = list(range(1, top))
    picks = rng.sample(middle, min(num_random, len(middle)))
    return [top] + ([0] if top > 0 else []) + sorted(picks, reverse=True)


def cosine_lr(step: int, total_steps: int, warmup_steps: int) -> float:
    """Learning-rate factor: linear warmup, then cosine decay to 2% of the peak."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


@dataclass
class TrainConfig:
    """What a training run does; the task supplies losses and batches."""

    steps: int
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    sandwich: bool = True  # False: train only the full level (the non-throttleable baseline)
    # Only these levels' own BatchNorm scales/shifts train (shared weights frozen); the full level
    # is then only the teacher (eval mode), so every other level stays bit-identical.
    norms_of_levels: Sequence[int] | None = None
    num_random_levels: int = 2
    distill_weight: float = 0.5  # share of in-place distillation in a sub-level's loss
    grad_clip: float = 10.0
    seed: int = 0
    checkpoint: str | None = None
    checkpoint_every: int = 200
    resume: bool = False
    log_every: int = 50
    extra: dict = field(default_factory=dict)


@dataclass
class TrainResult:
    steps: int
    seconds: float
    losses: list[float]  # mean full-level loss per log window


LossFn = Callable[[object, object], tuple[Tensor, dict]]
DistillFn = Callable[[object, object, object], Tensor]


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    step: int,
    rng: random.Random,
    extra: dict | None = None,
) -> None:
    """Write a resumable checkpoint (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "level_rng": repr(rng.getstate()),
            "torch_rng": torch.get_rng_state(),
            "extra": extra or {},
        },
        tmp,
    )
    os.replace(tmp, path)


def load_checkpoint(
    path: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer, rng: random.Random
) -> int:
    """Restore a checkpoint written by :func:`save_checkpoint`; returns the step to continue from."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    rng.setstate(_parse_rng_state(state["level_rng"]))
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"])


def _parse_rng_state(text: str):
    import ast

    return ast.literal_eval(text)


def train(
    model: ThrottleableModule,
    batches: Iterator,
    loss_fn: LossFn,
    config: TrainConfig,
    distill_fn: DistillFn | None = None,
    desc: str = "train",
) -> TrainResult:
    """Train ``model`` for ``config.steps`` steps on ``batches`` (an endless iterator of (inputs, targets)).

    ``loss_fn(outputs, targets) -> (loss, parts)`` is the task loss; ``distill_fn(student_outputs,
    teacher_outputs, targets) -> loss`` the in-place distillation loss (optional).
    """
    seed_everything(config.seed)
    torch.set_flush_denormal(True)  # denormal floats make CPU convs 10x slower
    level_rng = random.Random(config.seed)
    top = model.num_levels - 1
    student_levels = None if config.norms_of_levels is None else sorted(set(config.norms_of_levels))
    if student_levels is not None and (
        not student_levels or student_levels[-1] >= top or student_levels[0] < 0
    ):
        raise ValueError(f"norms_of_levels must be levels below the full one ({top}), got {student_levels}")
    parameters = (
        list(model.parameters()) if student_levels is None else _norm_parameters(model, student_levels)
    )
    trained = {id(p) for p in parameters}
    frozen = [p for p in model.parameters() if p.requires_grad and id(p) not in trained]
    for parameter in frozen:
        parameter.requires_grad_(False)
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    start = 0
    if config.resume and config.checkpoint and Path(config.checkpoint).is_file():
        start = load_checkpoint(config.checkpoint, model, optimizer, level_rng)
        print(f"resumed from {config.checkpoint} at step {start}", flush=True)
    model.train()
    losses, window = [], []
    t0 = time.monotonic()
    progress = tqdm(
        range(start, config.steps),
        desc=desc,
        initial=start,
        total=config.steps,
        mininterval=10.0,
        dynamic_ncols=True,
    )
    for step in progress:
        factor = cosine_lr(step, config.steps, config.warmup_steps)
        for group in optimizer.param_groups:
            group["lr"] = config.lr * factor
        inputs, targets = next(batches)
        if student_levels is not None:
            others = student_levels[1:]
            picks = level_rng.sample(others, min(config.num_random_levels, len(others)))
            levels = [top, student_levels[0], *sorted(picks, reverse=True)]
        elif config.sandwich:
            levels = sandwich_levels(model.num_levels, level_rng, config.num_random_levels)
        else:
            levels = [top]
        optimizer.zero_grad(set_to_none=True)
        teacher = None
        for level in levels:
            model.set_level(level)
            if student_levels is not None and level == top:
                # The deployed full level as the teacher: eval mode, so its BN statistics stay put.
                model.eval()
                with torch.no_grad():
                    outputs = model(inputs)
                model.train()
                window.append(loss_fn(outputs, targets)[0].item())
                teacher = _detach(outputs)
                continue
            outputs = model(inputs)
            loss, parts = loss_fn(outputs, targets)
            if level == top:
                window.append(loss.item())
                teacher = _detach(outputs) if distill_fn is not None and len(levels) > 1 else None
            elif teacher is not None and config.distill_weight > 0:
                loss = (1 - config.distill_weight) * loss + config.distill_weight * distill_fn(
                    outputs, teacher, targets
                )
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss is {float(loss)} at step {step}, level {level}: {parts}")
            loss.backward()
        if config.grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        if (step + 1) % config.log_every == 0 or step + 1 == config.steps:
            mean = sum(window) / max(1, len(window))
            losses.append(mean)
            window = []
            progress.set_postfix(loss=f"{mean:.3f}", lr=f"{config.lr * factor:.2e}")
            print(
                f"step {step + 1}/{config.steps} loss {mean:.4f} "
                f"({time.monotonic() - t0:.0f}s) "
                + " ".join(f"{k}={float(v):.3f}" for k, v in parts.items()),
                flush=True,
            )
        if config.checkpoint and ((step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps):
            save_checkpoint(config.checkpoint, model, optimizer, step + 1, level_rng, config.extra)
    for parameter in frozen:
        parameter.requires_grad_(True)
    model.set_level(top)
    return TrainResult(config.steps - start, time.monotonic() - t0, losses)


def _detach(outputs):
    if isinstance(outputs, Tensor):
        return outputs.detach()
    return type(outputs)(_detach(o) for o in outputs)


@torch.no_grad()
def calibrate_bn(
    model: ThrottleableModule, batches: Iterable, num_batches: int, levels: Iterable[int] | None = None
) -> None:
    """Re-estimate each level's BatchNorm statistics as exact averages over ``num_batches`` batches.

    A level's forward only touches its own switchable BNs, so each level gets its own statistics.
    The model is left in eval mode (caches rebuilt with the new statistics).
    """
    batches = [batch for _, batch in zip(range(num_batches), batches)]
    previous = model.level
    model.train()  # gated ops take the unfolded path, so their BNs see the batches
    for level in range(model.num_levels) if levels is None else levels:
        model.set_level(level)
        norms = _level_norms(model, level)
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None  # cumulative average = exact mean over the batches
        for inputs, _ in batches:
            model(inputs)
        for norm in norms:
            norm.momentum = 0.1
    model.set_level(previous)
    model.eval()


def _norm_parameters(model: nn.Module, levels: Sequence[int]) -> list[nn.Parameter]:
    """The BatchNorm scales and shifts that belong to ``levels`` only (switchable BN)."""
    return [p for level in levels for norm in _level_norms(model, level) for p in norm.parameters()]


def _level_norms(model: nn.Module, level: int) -> list:
    """The BatchNorm modules that belong to ``level`` (switchable BN lists are indexed by level)."""
    return [op.norms[level] for op in gated_ops(model) if op.norms is not None]


# --- the epilogue every trainer shares: output path, baseline, latency profile, card -----------------


def default_output(name: str, baseline: bool) -> Path:
    """Where a trainer writes by default: the shipped ``models/<name>.pt`` or a baseline checkpoint.

    The shipped path is found the way the loaders find it (never relative to the current directory);
    a ``--baseline`` run goes to ``checkpoints/<name>_baseline.pt``.
    """
    from ..models.io import shipped_model_path

    return Path(f"checkpoints/{name}_baseline.pt") if baseline else shipped_model_path(name)


def baseline_accuracy(card_file: str | os.PathLike | None) -> float | None:
    """The full-width accuracy a ``--baseline`` run recorded in its card (None when not given).

    Detector baselines record ``accuracy``, gesture baselines a one-level ``levels`` table; both are
    read here. A card that was named but cannot be read is an error, not a silently empty field.
    """
    if not card_file:
        return None
    import json

    card = json.loads(Path(card_file).read_text())
    if card.get("accuracy") is not None:
        return float(card["accuracy"])
    return float(card["levels"][-1]["accuracy"])


def level_table(
    model: ThrottleableModule, accuracies: Sequence[float], latencies: Sequence[float]
) -> list[dict]:
    """The card's ``levels``: per level its utilization, executed MACs / params, accuracy and latency."""
    from ..throttle import count_level_costs

    costs = count_level_costs(model, model.example_input())
    full = costs[-1].macs
    return [
        {
            "level": c.level,
            "utilization": model.utilization_of(c.level),
            "macs": c.macs,
            "params": c.params,
            "mac_ratio": round(c.macs / full, 4),
            "accuracy": round(acc, 4),
            "latency_ms": round(lat, 3),
        }
        for c, acc, lat in zip(costs, accuracies, latencies)
    ]


def write_model_card(
    model: ThrottleableModule,
    output: str | os.PathLike,
    accuracies: list[float],
    training: dict,
    make_card: Callable[..., dict],
    *,
    baseline_card: str | None,
    latency_threads: int,
    latency_repeats: int,
) -> dict:
    """Measure the per-level latency profile and write the card beside the weights; returns the card.

    The card's ``latency_ms`` is the controller's latency profile, so every trainer measures it the
    same way: ``latency_threads`` torch threads, every level interleaved
    (:func:`tnn_ros.eval.latency.measure_latency`).
    ``make_card(model, accuracies, latencies, training, baseline_accuracy)`` builds the model's card.
    """
    import json

    from ..eval.latency import measure_latency
    from ..models.io import card_path, write_card

    torch.set_num_threads(latency_threads)
    torch.set_flush_denormal(True)
    model.eval()
    model.warmup()
    latencies = measure_latency(model, model.example_input(), repeats=max(1, latency_repeats))["median_ms"]
    card = make_card(model, accuracies, latencies, training, baseline_accuracy(baseline_card))
    card["latency_threads"] = latency_threads
    write_card(output, card)
    print(json.dumps(card["levels"], indent=1), flush=True)
    print(f"wrote {output} and {card_path(output)}", flush=True)
    return card
