"""`tnn-train controller`: fit the learned (LinUCB) controller offline from recorded runs.

Two kinds of data, usable together:

* ``--bags``: rosbag2 runs of the system (``make demo`` / ``tnn-demo`` record them). Each processed
  frame with ground truth gives one sample for the level that ran: context (battery, temperature,
  deadline, CPU load, recent latency quantile, detection confidence) from the topics at that time,
  reward from the frame's detection F1 vs ground truth, its latency vs the deadline and its cost.
  Only the levels the run used learn from a bag (bandit feedback).
* ``--traces``: per-level traces recorded by ``tnn-bench control`` (every level measured on every
  frame). Each frame is paired with random contexts (battery, temperature, deadline, CPU load), and
  every level's reward is known (full information), so all arms learn. Above 85 C the bench's
  throttling model applies (latency and CPU x2), the same as in the suite.

Writes the state dict (``-o controller.pt``: torch tensors; ``.npz``: numpy) and a card next to it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from collections import deque
from pathlib import Path

import numpy as np

from tnn_ros.control.learned import (
    Context,
    LinUCB,
    RewardWeights,
    arm_context,
    expected_hit,
    reward,
    save_bandit,
)

FPS = 15.0
THROTTLE_C, THROTTLE_FACTOR = 85.0, 2.0  # the bench's thermal throttling model
RECENT = 15  # frames in the recent latency quantile (learned.RecentLatency)


def queued_latency(service_ms: np.ndarray, period_ms: float) -> np.ndarray:
    """Latency (ms, arrival to result) of every camera frame when one level runs all of them.

    One worker, a depth-1 queue where the newest frame wins (like the perception node): a frame
    waits while the worker is busy and is dropped (``inf``) when a newer one arrives first; a frame
    with an unusable service time is lost too (``inf``) and leaves the worker free.
    """
    latency = np.full(len(service_ms), np.inf)
    busy_until = 0.0
    waiting: int | None = None
    for i, service in enumerate(service_ms):
        arrival = i * period_ms
        if waiting is not None and busy_until <= arrival:  # the waiting frame started before this one came
            busy_until = _run(latency, service_ms, waiting, busy_until, period_ms)
            waiting = None
        if busy_until <= arrival:
            busy_until = _run(latency, service_ms, i, arrival, period_ms)
        else:
            waiting = i  # an older waiting frame is dropped: newest frame wins
    if waiting is not None:
        _run(latency, service_ms, waiting, busy_until, period_ms)
    return latency


def _run(latency: np.ndarray, service_ms: np.ndarray, i: int, start: float, period_ms: float) -> float:
    """Process frame ``i`` from ``start``; returns when the worker is free again."""
    service = float(service_ms[i])
    if not (math.isfinite(service) and service > 0.0):
        return start
    latency[i] = start + service - i * period_ms
    return start + service


def level_map50(traces: list, num_levels: int) -> list[float | None]:
    """COCO mAP@0.5 of each level over every frame of ``traces`` (the suite's accuracy metric)."""
    from tnn_ros.eval.traces import fast_map50

    return [
        fast_map50([(trace, i, level) for trace in traces for i in range(trace.num_frames)])
        for level in range(num_levels)
    ]


def samples_from_trace(
    trace,
    rng: np.random.Generator,
    contexts_per_frame: int,
    margin: float,
    bad: list[int] | None = None,
) -> list[tuple[int, np.ndarray, float, float, Context]]:
    """(arm, context vector, hit, busy, context) for every level of every frame under random contexts.

    ``hit`` is whether the frame's result arrives within the context's deadline when that level runs
    every frame (:func:`queued_latency`: queueing and dropped frames included), ``busy`` its measured
    CPU time per frame period and core; the reward adds the level's accuracy (:func:`main`).
    Samples with NaN / inf / missing values are left out and counted in ``bad[0]``.
    """
    bad = [0] if bad is None else bad
    period = 1000.0 / FPS
    cores = max(trace.meta.get("cores") or 1, 1)
    latency = np.where(np.isfinite(trace.latency_ms), trace.latency_ms, np.nan)
    ref = float(np.nanpercentile(latency[:, -1], 90))
    # arrival-to-result latency of each frame per level, at normal speed and throttled
    queued = {
        factor: np.stack([queued_latency(latency[:, k] * factor, period) for k in range(trace.num_levels)], 1)
        for factor in (1.0, THROTTLE_FACTOR)
    }
    out = []
    for i in range(trace.num_frames):
        window = slice(max(0, i - RECENT + 1), i + 1)
        with np.errstate(all="ignore"):
            recent = np.nanpercentile(latency[window], 95, axis=0)
            typical = np.nanmedian(latency[window], axis=0)
        for _ in range(contexts_per_frame):
            temperature = float(rng.uniform(30.0, 95.0))
            factor = THROTTLE_FACTOR if temperature > THROTTLE_C else 1.0
            context = Context(
                battery=float(rng.uniform(0.0, 1.0)),
                temperature_c=temperature,
                deadline_ms=float(ref * rng.uniform(0.3, 3.0)),
                cpu_load=float(rng.uniform(0.0, 1.0)),
                confidence=None,
            )
            for arm in range(trace.num_levels):
                values = (trace.latency_ms[i, arm], trace.cpu_ms[i, arm], recent[arm], typical[arm])
                if not all(math.isfinite(float(v)) for v in values) or trace.latency_ms[i, arm] <= 0:
                    bad[0] += 1  # NaN / inf / missing sample: counted, left out
                    continue
                x = arm_context(
                    context, float(recent[arm]) * factor, margin, float(typical[arm]) * factor, period
                )
                arrived = float(queued[factor][i, arm])
                hit = 1.0 if arrived <= context.deadline_ms else 0.0
                busy = (
                    float(trace.cpu_ms[i, arm]) * factor / period / cores if math.isfinite(arrived) else 0.0
                )
                out.append((arm, x, hit, busy, context))
    return out


def samples_from_bag(
    bag: str,
    utilizations: list[float],
    base_ms: list[float],
    margin: float,
    problems: dict[str, int],
) -> tuple[list, dict[int, tuple[float, int]]]:
    """(arm, context vector, hit, busy, context) for every processed frame with ground truth.

    Also returns, per level the run used, (mAP@0.5 of its frames, number of frames) for the accuracy
    proxy; ([], {}) when the bag is unusable.
    """
    from tnn_ros.bag.common import BagError
    from tnn_ros.demo.analysis import _value_at, load_run
    from tnn_ros.demo.analysis import detection_map50 as bag_map50

    try:
        run = load_run(bag)
    except (BagError, OSError, ValueError) as error:
        problems[f"{bag}: unreadable ({error})"] = 1
        return [], {}
    if not run.frames or not run.truth:
        needed = (("*/detections/json", run.frames), ("*/ground_truth/json", run.truth))
        missing = [name for name, ok in needed if not ok]
        problems[f"{bag}: no {' or '.join(missing)} messages"] = 1
        return [], {}
    period = 1000.0 / FPS
    recent: deque[float] = deque(maxlen=RECENT)
    out: list = []
    frames_of: dict[int, list] = {}
    skipped = 0
    for frame in run.frames:
        truth = run.truth.get(int(frame.get("stamp_ns", -1)))
        u = frame.get("utilization")
        latency = frame.get("latency_ms")
        try:
            u, latency = float(u), float(latency)
        except (TypeError, ValueError):
            skipped += 1
            continue
        if truth is None or not (math.isfinite(u) and math.isfinite(latency) and latency > 0 and u > 0):
            skipped += 1
            continue
        arm = int(np.argmin([abs(u - v) for v in utilizations]))
        ratio_now = latency / float(np.interp(u, utilizations, base_ms))
        recent.append(ratio_now)
        t = frame["t"]
        deadline = _value_at(run.deadline, t)
        battery = _value_at(run.battery[:, :2], t) if len(run.battery) else math.nan
        context = Context(
            battery=battery if math.isfinite(battery) else None,
            temperature_c=_finite(_value_at(run.temperature, t)),
            deadline_ms=_finite(deadline),
            cpu_load=_finite(_value_at(run.cpu_load, t)),
            confidence=_confidence(frame.get("detections", [])),
        )
        predicted = float(np.quantile(recent, 0.95)) * base_ms[arm]
        typical = float(np.quantile(recent, 0.5)) * base_ms[arm]
        x = arm_context(context, predicted, margin, typical, period)
        hit = expected_hit(latency, context.deadline_ms, period)
        cpu = frame.get("cpu_ms", latency)  # measured CPU time where the bag records it
        busy = float(cpu) / period if cpu is not None and math.isfinite(float(cpu)) else latency / period
        out.append((arm, x, hit, busy, context))
        frames_of.setdefault(arm, []).append(frame)
    accuracy = {}
    for arm, frames in frames_of.items():
        value = bag_map50(frames, run.truth)
        if value is not None:
            accuracy[arm] = (value, len(frames))
    if skipped:
        problems[f"{bag}: {skipped} frame(s) without ground truth or with NaN/inf latency/utilization"] = (
            skipped
        )
    return out, accuracy


def _finite(value: float) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _confidence(detections: list) -> float | None:
    scores = [float(d.get("score", math.nan)) for d in detections]
    scores = [s for s in scores if math.isfinite(s)]
    return float(np.mean(scores)) if scores else None


def _non_negative(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value >= 0.0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tnn-train controller", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--bags", nargs="*", default=[], help="rosbag2 runs with ground truth (tnn-demo bags)"
    )
    parser.add_argument(
        "--traces", nargs="*", default=[], help="per-level traces (.npz) from tnn-bench control"
    )
    parser.add_argument("-o", "--output", default="controller.pt", help="state dict (.pt torch, .npz numpy)")
    parser.add_argument("--contexts-per-frame", type=int, default=4, help="random contexts per trace frame")
    parser.add_argument("--alpha", type=float, default=0.1, help="exploration weight stored in the file")
    parser.add_argument("--ridge", type=float, default=1.0, help="ridge prior of every arm")
    parser.add_argument("--margin", type=float, default=0.1, help="deadline_margin the 'fits' feature uses")
    defaults = RewardWeights()
    parser.add_argument(
        "--miss-penalty",
        type=_non_negative,
        default=defaults.miss_penalty,
        help=f"reward lost on a missed deadline beyond the accuracy (default {defaults.miss_penalty})",
    )
    parser.add_argument(
        "--energy-weight",
        type=_non_negative,
        default=defaults.energy,
        help=f"energy cost per busy fraction at any charge and temperature (default {defaults.energy})",
    )
    parser.add_argument(
        "--battery-weight",
        type=_non_negative,
        default=defaults.battery_energy,
        help="extra energy cost x battery urgency (0 above 50%% charge, 1 at empty; "
        f"default {defaults.battery_energy})",
    )
    parser.add_argument(
        "--thermal-weight",
        type=_non_negative,
        default=defaults.thermal_energy,
        help=f"extra energy cost x heat (0 below 60 C, 1 at 85 C; default {defaults.thermal_energy})",
    )
    parser.add_argument(
        "--accuracy-source",
        choices=("data", "card"),
        default="data",
        help="reward's per-level accuracy: mAP@0.5 of each level over the training traces/bags (data), "
        "or the detector card's held-out accuracy (card)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--model-card", default=None, help="detector card for utilizations/latency shape (default: shipped)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.bags and not args.traces:
        print("tnn-train controller: give --bags and/or --traces", file=sys.stderr)
        return 2
    from tnn_ros.control.latency import LatencyProfile
    from tnn_ros.paths import find_package_file

    card_file = args.model_card or find_package_file("models", "detector.card.json")
    profile = LatencyProfile.from_card(card_file)
    utilizations = list(profile.utilizations)
    weights = RewardWeights(
        miss_penalty=args.miss_penalty,
        energy=args.energy_weight,
        battery_energy=args.battery_weight,
        thermal_energy=args.thermal_weight,
    )
    rng = np.random.default_rng(args.seed)
    bandit = LinUCB(len(utilizations), alpha=args.alpha, ridge=args.ridge)
    experience: list[tuple[int, np.ndarray, float, float, Context]] = []
    traces = []
    bag_accuracy: dict[int, list[tuple[float, int]]] = {}
    problems: dict[str, int] = {}
    started = time.monotonic()
    sources = []
    for path in args.traces:
        from tnn_ros.eval.traces import Trace

        try:
            trace = Trace.load(path)
        except (OSError, ValueError, KeyError) as error:
            problems[f"{path}: unreadable trace ({error})"] = 1
            continue
        if trace.num_levels != len(utilizations):
            problems[f"{path}: {trace.num_levels} levels, the card has {len(utilizations)}"] = 1
            continue
        bad = [0]
        samples = samples_from_trace(trace, rng, args.contexts_per_frame, args.margin, bad)
        if bad[0]:
            problems[f"{path}: {bad[0]} sample(s) with NaN/inf/missing values left out"] = bad[0]
        experience += samples
        traces.append(trace)
        sources.append(
            {
                "traces": str(path),
                "samples": len(samples),
                "recorded": {
                    key: trace.meta.get(key)
                    for key in ("seed", "contention", "threads", "cores", "loadavg_after")
                },
                "frames": trace.num_frames,
            }
        )
        print(
            f"  {path}: {len(samples)} samples ({trace.num_frames} frames x {trace.num_levels} levels x "
            f"{args.contexts_per_frame} contexts), {time.monotonic() - started:.0f} s",
            flush=True,
        )
    for bag in args.bags:
        samples, accuracy = samples_from_bag(bag, utilizations, profile.latencies_ms, args.margin, problems)
        experience += samples
        for arm, value in accuracy.items():
            bag_accuracy.setdefault(arm, []).append(value)
        if samples:
            sources.append({"bag": str(bag), "samples": len(samples)})
            print(f"  {bag}: {len(samples)} frames, {time.monotonic() - started:.0f} s", flush=True)
    for problem in problems:  # each reason once
        print(f"tnn-train controller: skipped: {problem}", file=sys.stderr)
    if not sources:
        print("tnn-train controller: no usable data (see the reasons above)", file=sys.stderr)
        return 2
    # The reward's accuracy is each level's mAP@0.5 over all training frames (the suite's metric;
    # per-frame F1 at one score threshold hardly separates the levels), frame-weighted over traces
    # and bags; a level without data (or `--accuracy-source card`) keeps the detector card's accuracy.
    card_accuracy = [level.get("accuracy") for level in json.loads(Path(card_file).read_text())["levels"]]
    from_data = args.accuracy_source == "data"
    trace_map = level_map50(traces, len(utilizations)) if traces and from_data else [None] * len(utilizations)
    trace_frames = sum(trace.num_frames for trace in traces)
    if not from_data:
        bag_accuracy = {}
    accuracies = []
    for a in range(len(utilizations)):
        parts = list(bag_accuracy.get(a, []))
        if trace_map[a] is not None:
            parts.append((trace_map[a], trace_frames))
        total = sum(n for _, n in parts)
        accuracies.append(sum(v * n for v, n in parts) / total if total else float(card_accuracy[a] or 0.0))
    for arm, x, hit, busy, context in experience:
        bandit.update(arm, x, reward(accuracies[arm], hit, busy, context, weights))
    card = {
        "name": "controller",
        "task": "control",
        "algorithm": "disjoint LinUCB (Li et al. 2010)",
        "utilizations": utilizations,
        "accuracies": [round(a, 4) for a in accuracies],
        "accuracy_proxy": (
            "detection mAP@0.5 of each level over the training data (traces and bags)"
            if from_data
            else f"the detector card's per-level accuracy ({card_file})"
        ),
        "frame_period_ms": 1000.0 / FPS,
        "reward_weights": dataclasses.asdict(weights),
        "samples_per_arm": [int(c) for c in bandit.counts],
        "training": {
            "command": "tnn-train controller " + " ".join(sys.argv[1:] if argv is None else argv),
            "sources": sources,
            "seed": args.seed,
            "skipped": list(problems),
            "wall_time_s": round(time.monotonic() - started, 1),
        },
    }
    weights_path, card_path = save_bandit(bandit, args.output, card)
    theta = bandit.theta()
    print(f"wrote {weights_path} and {card_path}: samples per level {card['samples_per_arm']}")
    print("per-level reward weights (" + ", ".join(card_features()) + "):")
    for arm, row in enumerate(theta):
        print(f"  u {utilizations[arm]:.3f}: " + " ".join(f"{v:+.3f}" for v in row))
    return 0


def card_features() -> tuple[str, ...]:
    from tnn_ros.control.learned import FEATURES

    return FEATURES


if __name__ == "__main__":
    sys.exit(main())
