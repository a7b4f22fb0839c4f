"""Live gesture accuracy without ROS: the simulated camera stream straight into the recognizer.

``tnn-bench gesture-stream`` renders the frames the ``sim_camera`` node would publish
(:class:`tnn_ros.sim.stream.SimFrameSource`, same seed / size / fps), fits them to the net's frame
size as the perception pipeline does, pushes every frame into a recognizer at a fixed level and
scores the announcements two ways: frame-level (label vs the ground truth of its own frame, the
demo's ``gesture_accuracy``) and event-level (:mod:`tnn_ros.eval.gesture_events`, the demo's
``gesture_event_accuracy``). By default every frame is processed (no drops), so this is the
recognizer's own accuracy; ``--drop-rate`` drops frames at random as a node under load does (each
frame after the first with that probability, seeded), and the recognizer gets the camera stamps so
it can fill the gaps (``--no-fill-gaps``: it cannot). ``--phases N`` scores the stream N times,
starting it 0 .. N-1 frames later (the recognizer's stride phase), and reports the mean: one stride
phase alone moves a seed's event accuracy by several points, so comparisons between nets use the mean.
``--seed A B ...`` scores several streams (seeds) the same way and reports the mean over them too.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .gesture_events import DEFAULT_ALLOWANCE_S, frame_accuracy, score_stream


@dataclass
class StreamRecording:
    """Frames of one simulated stream, already fitted to the net's frame size, with their truth."""

    frames: list[np.ndarray]
    times: list[float]
    labels: list[str]


def record_stream(
    frame_size: tuple[int, int],
    seconds: float = 90.0,
    seed: int = 11,
    fps: float = 15.0,
    width: int = 320,
    height: int = 240,
    progress: bool = False,
) -> StreamRecording:
    """Render ``seconds`` of the simulated camera and fit each frame to ``frame_size`` (width, height)."""
    from ..models.gesture import resize_frame
    from ..sim.stream import SimFrameSource

    source = SimFrameSource(width, height, seed=seed, fps=fps)
    count = int(round(seconds * fps))
    recording = StreamRecording([], [], [])
    for i in range(count):
        frame = source.frame_at(i)
        recording.frames.append(resize_frame(frame.rgb, frame_size))
        recording.times.append(frame.time_s)
        recording.labels.append(frame.gesture)
        if progress and (i + 1) % 300 == 0:
            print(f"  rendered {i + 1}/{count} frames", file=sys.stderr, flush=True)
    return recording


def stream_phase(recording: StreamRecording, phase: int) -> StreamRecording:
    """The stream as a recognizer sees it when started ``phase`` frames later (its truth starts there too)."""
    if not 0 <= phase < len(recording.frames):
        raise ValueError(f"phase must be in [0, {len(recording.frames) - 1}], got {phase}")
    return StreamRecording(recording.frames[phase:], recording.times[phase:], recording.labels[phase:])


def kept_frames(count: int, drop_rate: float = 0.0, seed: int = 0) -> list[int]:
    """Indices of the frames a node keeps when each frame after the first is dropped with ``drop_rate``."""
    if not 0.0 <= drop_rate < 1.0:
        raise ValueError(f"drop_rate must be in [0, 1), got {drop_rate}")
    rng = np.random.default_rng(seed)
    dropped = rng.random(count) < drop_rate
    return [i for i in range(count) if i == 0 or not dropped[i]]


def run_recognizer(
    recognizer, recording: StreamRecording, frames: Sequence[int] | None = None, stamps: bool = True
) -> tuple[list[float], list[str], list[str]]:
    """Push the frames; return (times, announced labels, truth labels of those frames).

    ``frames``: the indices to push (default all); ``stamps``: pass each frame's camera time, so
    the recognizer can fill the slots of the frames left out.
    """
    times, announced, truth = [], [], []
    indices = range(len(recording.frames)) if frames is None else frames
    for i in indices:
        frame, t, label = recording.frames[i], recording.times[i], recording.labels[i]
        result = recognizer.push(frame, stamp_s=t) if stamps else recognizer.push(frame)
        if result is not None:
            times.append(t)
            announced.append(result.label)
            truth.append(label)
    return times, announced, truth


def score_recognizer(
    make_recognizer: Callable[[], object],
    recording: StreamRecording,
    allowance_s: float = DEFAULT_ALLOWANCE_S,
    frames: Sequence[int] | None = None,
    stamps: bool = True,
) -> dict:
    """Frame- and event-level figures of a fresh recognizer over ``recording`` (or its ``frames``)."""
    recognizer = make_recognizer()
    start = time.perf_counter()
    times, announced, truth = run_recognizer(recognizer, recording, frames, stamps)
    elapsed = time.perf_counter() - start
    events = score_stream(recording.times, recording.labels, times, announced, allowance_s)
    return {
        "frame_accuracy": frame_accuracy(announced, truth),
        "event_accuracy": events.levenshtein_accuracy,
        "events": events.as_dict(),
        "announcements": len(announced),
        "frames_pushed": len(recording.frames) if frames is None else len(frames),
        "filled_frames": getattr(recognizer, "filled_frames", 0),
        "ms_per_frame": 1000.0 * elapsed / max(len(recording.frames) if frames is None else len(frames), 1),
    }


def _mean_figures(runs: list[dict], kept_as: str) -> dict:
    """One level's figures over several runs (stride phases, or seeds), each run kept under ``kept_as``.

    Accuracies and counts become means; a run without any gesture (accuracy ``None``) is left out
    of that accuracy's mean. Per-run lists (a seed's ``per_phase``) are not averaged.
    """

    def mean(values):
        values = [v for v in values if v is not None]
        return sum(values) / len(values) if values else None

    events = {
        key: mean([r["events"][key] for r in runs])
        for key, value in runs[0]["events"].items()
        if isinstance(value, (int, float))
    }
    figures = {
        key: mean([r[key] for r in runs])
        for key, value in runs[0].items()
        if key != "events" and (value is None or isinstance(value, (int, float)))
    }
    figures["events"] = events
    figures[kept_as] = runs
    return figures


def _figures_line(figures: dict) -> str:
    """The printed summary of one level's figures."""
    e = figures["events"]
    frame_level, event_level = (
        "n/a" if figures[key] is None else f"{figures[key]:.3f}"  # a stream without any gesture
        for key in ("frame_accuracy", "event_accuracy")
    )

    def count(value) -> str:  # a count, or a mean of counts over phases / seeds
        return f"{round(value, 2):g}"

    return (
        f"frame-level {frame_level}  event-level (Levenshtein) {event_level}  "
        f"detected {count(e['detected'])}/{count(e['gestures'])}  misclassified {count(e['misclassified'])}  "
        f"missed {count(e['missed'])}  false alarms {count(e['false_alarms'])}  "
        f"filled {count(figures['filled_frames'])}  {figures['ms_per_frame']:.2f} ms/frame"
    )


def _score_seed(net, args: argparse.Namespace, seed: int, levels: Sequence[int], settings: dict):
    """Render the stream of ``seed`` and score every level on it (each stride phase, then their mean).

    Returns (the recognizer's settings, {level: figures}), or ``None`` when the stream is too short
    for ``--phases`` (after printing why).
    """
    from ..models import GestureRecognizer
    from ..models.gesture_recognizer import recognizer_settings

    print(f"rendering {args.seconds:g} s of the simulated stream (seed {seed})", file=sys.stderr)
    recording = record_stream(net.frame_size, args.seconds, seed, args.fps, *args.size, progress=True)
    if args.phases > len(recording.frames):
        print(
            f"--phases {args.phases} needs at least that many frames, the stream has {len(recording.frames)}",
            file=sys.stderr,
        )
        return None
    phases = [stream_phase(recording, phase) for phase in range(args.phases)]
    kept = [
        kept_frames(len(r.frames), args.drop_rate, seed=seed) if args.drop_rate > 0 else None for r in phases
    ]
    figures_by_level = {}
    recognizer = {}
    for level in levels:
        net.set_level(level)

        def make():
            return GestureRecognizer(net, **settings)

        per_phase = [
            score_recognizer(make, r, args.allowance, frames, stamps=args.fill_gaps)
            for r, frames in zip(phases, kept)
        ]
        figures = per_phase[0] if args.phases == 1 else _mean_figures(per_phase, "per_phase")
        recognizer = recognizer_settings(make())
        figures_by_level[str(level)] = figures
        phase_note = "" if args.phases == 1 else f" (mean of {args.phases} phases)"
        seed_note = "" if len(args.seed) == 1 else f" seed {seed}"
        print(f"level {level}{seed_note}{phase_note}: {_figures_line(figures)}", flush=True)
    return recognizer, figures_by_level


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tnn-bench gesture-stream", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", default=None, help="gesture model file (default: shipped models/gesture.pt)"
    )
    parser.add_argument("--seconds", type=float, default=90.0, help="stream length (scene time)")
    parser.add_argument(
        "--seed",
        type=int,
        nargs="+",
        default=[11],
        help="sim_camera seed(s) (scene + gesture script); with several, each stream is scored and "
        "the mean over seeds reported as well",
    )
    parser.add_argument("--fps", type=float, default=15.0)
    parser.add_argument("--size", type=int, nargs=2, default=(320, 240), metavar=("W", "H"))
    parser.add_argument(
        "--levels", type=int, nargs="*", default=None, help="levels to score (default: lowest and full)"
    )
    parser.add_argument("--stride", type=int, default=None, help="recognizer stride (default: its own)")
    parser.add_argument("--smoothing", type=int, default=None, help="recognizer smoothing (default: its own)")
    parser.add_argument(
        "--min-confidence",
        type=float,
        default=None,
        help="announcement threshold (default: the model card's recognizer.min_confidence, else 0.5)",
    )
    parser.add_argument(
        "--event-gate",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="one announcement per gesture (GestureRecognizer event_gate), as the node does",
    )
    parser.add_argument(
        "--streaming",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run the net frame by frame (default: when it is temporal='valid', as the node does)",
    )
    parser.add_argument(
        "--allowance",
        type=float,
        default=DEFAULT_ALLOWANCE_S,
        help="seconds after a gesture's end its announcement may still come",
    )
    parser.add_argument(
        "--drop-rate",
        type=float,
        default=0.0,
        help="drop each frame after the first with this probability, as a node under load (seeded)",
    )
    parser.add_argument(
        "--fill-gaps",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="pass the camera stamps so the recognizer fills the slots of dropped frames, as the node does",
    )
    parser.add_argument(
        "--phases",
        type=int,
        default=1,
        help="score the stream started 0 .. N-1 frames later and report the mean (stride phases)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 0.0 <= args.drop_rate < 1.0:
        print(f"--drop-rate must be in [0, 1), got {args.drop_rate}", file=sys.stderr)
        return 2
    if not 1 <= args.phases <= 64:
        print(f"--phases must be in [1, 64], got {args.phases}", file=sys.stderr)
        return 2
    if len(set(args.seed)) != len(args.seed):
        print(f"--seed values must differ, got {args.seed}", file=sys.stderr)
        return 2
    import torch

    from ..models import gesture_card_settings, load_gesture

    torch.set_num_threads(args.threads)
    net = load_gesture(args.model)
    levels = args.levels if args.levels else sorted({0, net.num_levels - 1})
    if any(not 0 <= k < net.num_levels for k in levels):
        print(f"levels must be in [0, {net.num_levels - 1}], got {levels}", file=sys.stderr)
        return 2
    settings = {k: v for k, v in (("stride", args.stride), ("smoothing", args.smoothing)) if v is not None}
    if args.min_confidence is not None and not 0.0 <= args.min_confidence <= 1.0:
        print(f"--min-confidence must be in [0, 1], got {args.min_confidence}", file=sys.stderr)
        return 2
    settings.update(gesture_card_settings(args.model))
    if args.min_confidence is not None:
        settings["min_confidence"] = args.min_confidence
    settings["event_gate"] = args.event_gate
    settings["streaming"] = args.streaming
    per_seed: dict[int, dict] = {}
    for seed in args.seed:
        scored = _score_seed(net, args, seed, levels, settings)
        if scored is None:
            return 2
        recognizer, per_seed[seed] = scored
    results = {
        "model": args.model or "shipped",
        "seconds": args.seconds,
        "seed": args.seed[0] if len(args.seed) == 1 else list(args.seed),
        "fps": args.fps,
        "size": list(args.size),
        "allowance_s": args.allowance,
        "drop_rate": args.drop_rate,
        "fill_gaps": args.fill_gaps,
        "phases": args.phases,
        "recognizer": recognizer,
        "levels": {},
    }
    for level in levels:
        key = str(level)
        if len(args.seed) == 1:
            results["levels"][key] = per_seed[args.seed[0]][key]
            continue
        runs = [{**per_seed[seed][key], "seed": seed} for seed in args.seed]
        figures = _mean_figures(runs, "per_seed")
        figures.pop("seed", None)  # the mean of the seeds' numbers is not a seed
        results["levels"][key] = figures
        print(f"level {level} (mean of {len(args.seed)} seeds): {_figures_line(figures)}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
