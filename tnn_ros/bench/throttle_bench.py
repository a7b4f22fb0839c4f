"""`tnn-bench throttle`: latency, MACs and accuracy of every level of a model, side by side."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import torch


@torch.no_grad()
def measure_latency(
    model,
    example: torch.Tensor,
    repeats: int = 30,
    levels: Sequence[int] | None = None,
    reference: Callable[[], object] | None = None,
    warmup: int = 3,
) -> dict:
    """Median / p90 forward latency (ms) of each level, levels interleaved within every repetition.

    Interleaving spreads the machine's noise (other processes, frequency changes) evenly over the
    levels, so their ratios are fair even when absolute times drift. ``reference`` (a callable) is
    timed in the same rounds.
    """
    model.eval()
    levels = list(range(model.num_levels)) if levels is None else list(levels)
    previous = model.level
    samples = {level: [] for level in levels}
    reference_samples = []
    for _ in range(warmup):
        for level in levels:
            model.set_level(level)
            model(example)
        if reference is not None:
            reference()
    for _ in range(repeats):
        for level in levels:
            model.set_level(level)
            start = time.perf_counter()
            model(example)
            samples[level].append((time.perf_counter() - start) * 1000)
        if reference is not None:
            start = time.perf_counter()
            reference()
            reference_samples.append((time.perf_counter() - start) * 1000)
    model.set_level(previous)

    def p90(values):
        return statistics.quantiles(values, n=10)[-1] if len(values) > 1 else values[0]

    result = {
        "levels": levels,
        "median_ms": [statistics.median(samples[k]) for k in levels],
        "p90_ms": [p90(samples[k]) for k in levels],
    }
    if reference is not None:
        result["reference_median_ms"] = statistics.median(reference_samples)
    return result


def measure_switch_us(model, samples: int = 2000) -> float:
    """Median time of one ``set_level`` call in microseconds (cycling through all levels)."""
    previous = model.level
    times = []
    for i in range(samples):
        level = i % model.num_levels
        start = time.perf_counter_ns()
        model.set_level(level)
        times.append((time.perf_counter_ns() - start) / 1000)
    model.set_level(previous)
    return statistics.median(times)


def _detector_setup(args):
    import torchvision

    from ..data.scenes import SyntheticDetectionDataset
    from ..models import load_detector
    from ..train.detector import VAL_SEED_OFFSET, evaluate_dataset

    model = load_detector(args.path)
    width, height = model.input_size
    example = model.example_input()
    reference = torchvision.models.detection.ssdlite320_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=len(model.classes) + 1
    ).eval()

    def run_reference():
        # Backbone + head at the same input: the network part, like our forward (decoding excluded
        # on both sides: SSD's random-weight post-processing would time NMS on garbage).
        return reference.head(list(reference.backbone(example).values()))

    num_images = args.eval_images or (48 if args.quick else 200)
    dataset = SyntheticDetectionDataset(num_images, width, height, seed=(args.seed or 0) + VAL_SEED_OFFSET)

    def accuracy():
        return evaluate_dataset(model, dataset)

    name = f"torchvision ssdlite320_mobilenet_v3_large (random weights, backbone+head) at {width}x{height}"
    seed = (args.seed or 0) + VAL_SEED_OFFSET
    metric = f"mAP@0.5 (torchmetrics) on {num_images} held-out synthetic scenes (seed {seed})"
    return model, example, run_reference, name, accuracy, metric


def _gesture_setup(args):
    import torchvision

    try:
        from ..models import load_gesture
        from ..train.gesture import evaluate
    except (ImportError, AttributeError) as exc:
        raise SystemExit(
            f"tnn-bench throttle --model gesture needs tnn_ros.models.load_gesture and "
            f"tnn_ros.train.gesture.evaluate (the gesture net), which are not available: {exc}"
        ) from exc
    model = load_gesture(args.path)
    example = model.example_input()
    reference = torchvision.models.video.r3d_18(weights=None, num_classes=len(model.classes)).eval()
    num_clips = args.eval_images or (32 if args.quick else 200)

    def accuracy():
        previous, scores = model.level, []
        for level in range(model.num_levels):
            model.set_level(level)
            # the gesture trainer's own held-out seed unless --seed is given
            kwargs = {} if args.seed is None else {"seed": args.seed}
            scores.append(float(evaluate(model, num_clips, **kwargs)))
        model.set_level(previous)
        return scores

    shape = "x".join(str(v) for v in example.shape[1:])
    name = f"torchvision r3d_18 (random weights) at {shape}"
    seed = "the trainer's held-out seed" if args.seed is None else f"seed {args.seed}"
    metric = f"top-1 on {num_clips} held-out clips ({seed})"
    return model, example, lambda: reference(example), name, accuracy, metric


def run_benchmark(args) -> dict:
    """Measure every level of the model named in ``args`` and return the JSON document."""
    from ..throttle import count_level_costs

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    setup = _detector_setup if args.model == "detector" else _gesture_setup
    model, example, reference, reference_name, accuracy, metric = setup(args)
    model.eval()
    costs = count_level_costs(model, example)
    repeats = args.repeats or (15 if args.quick else 60)
    with torch.no_grad():
        timing = measure_latency(model, example, repeats=repeats, reference=reference)
    switch_us = measure_switch_us(model)
    accuracies = accuracy()
    full_macs, full_ms = costs[-1].macs, timing["median_ms"][-1]
    levels = []
    for cost, median, p90, acc in zip(costs, timing["median_ms"], timing["p90_ms"], accuracies):
        mac_ratio = cost.macs / full_macs
        speedup = full_ms / median
        levels.append(
            {
                "level": cost.level,
                "utilization": model.utilization_of(cost.level),
                "macs": cost.macs,
                "params": cost.params,
                "mac_ratio": round(mac_ratio, 4),
                "latency_ms_median": round(median, 3),
                "latency_ms_p90": round(p90, 3),
                "speedup": round(speedup, 3),
                "efficiency": round(speedup * mac_ratio, 3),
                "accuracy": round(acc, 4),
            }
        )
    card = getattr(model, "card", {}) or {}
    extra = {}
    if args.model == "gesture":   # per-frame (continual) vs clip cost, full and lowest level
        from ..models.gesture_streaming import measure_streaming

        extra["streaming"] = measure_streaming(model, repeats=repeats)
    return {**extra,
        "model": args.model,
        "threads": args.threads,
        "repeats": repeats,
        "levels": levels,
        "accuracy_metric": metric,
        "baseline_accuracy": card.get("baseline_accuracy"),
        "switch_us_median": round(switch_us, 3),
        "reference": {"name": reference_name, "latency_ms_median": round(timing["reference_median_ms"], 3)},
    }


def markdown_table(result: dict) -> str:
    """The per-level results as a markdown table."""
    lines = [
        f"### {result['model']}: {result['threads']} threads, accuracy = {result['accuracy_metric']}",
        "",
        "| level | u | MMACs | MAC ratio | median ms | p90 ms | speedup | efficiency | accuracy |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["levels"]:
        lines.append(
            f"| {row['level']} | {row['utilization']:.3f} | {row['macs'] / 1e6:.1f} | "
            f"{row['mac_ratio']:.3f} | "
            f"{row['latency_ms_median']:.2f} | {row['latency_ms_p90']:.2f} | {row['speedup']:.2f} | "
            f"{row['efficiency']:.2f} | {row['accuracy']:.3f} |"
        )
    ref = result["reference"]
    lines += [
        "",
        f"baseline (non-throttleable, same budget) accuracy: {result['baseline_accuracy']}; "
        f"switch (set_level) median: {result['switch_us_median']:.2f} us; "
        f"reference {ref['name']}: {ref['latency_ms_median']:.2f} ms",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """`tnn-bench throttle --model {detector,gesture} --json PATH [--quick]`."""
    import argparse
    import json
    from pathlib import Path

    parser = argparse.ArgumentParser(prog="tnn-bench throttle", description=__doc__)
    parser.add_argument("--model", choices=("detector", "gesture"), default="detector")
    parser.add_argument("--path", default=None, help="model weights (default: the shipped model)")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--markdown", default=None, help="also write the markdown table here")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and images (< 1 minute)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=None, help="timing rounds (each runs every level)")
    parser.add_argument("--eval-images", type=int, default=None, help="held-out images/clips for accuracy")
    parser.add_argument("--seed", type=int, default=None, help="held-out data seed (default: the trainer's)")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be >= 1")
    result = run_benchmark(args)
    table = markdown_table(result)
    print(table)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    return 0
