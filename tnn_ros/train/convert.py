r"""`tnn-train convert`: make a torchvision detector / video net throttleable and write model + card.

Example (the weights file comes from torchvision's download URL, fetched on a machine online)::

    tnn-train convert --arch ssdlite320_mobilenet_v3_large \\
        --weights ssdlite320_mobilenet_v3_large_coco-a79551df.pth -o models/ssdlite_throttled.pt

Exit codes: 0 written; 2 bad input (unknown arch, missing / mismatching weights, bad frames), with
one line on stderr and nothing written.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

DEFAULT_EVAL_COUNT = 16


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file (recorded in cards: which exact weights were used)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def add_level_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by convert and adapt for measuring the per-level card."""
    parser.add_argument(
        "--eval-frames",
        default=None,
        metavar="DIR|VIDEO|BAG",
        help="held-out frames for the agreement columns (default: seeded synthetic scenes / clips)",
    )
    parser.add_argument("--eval-topic", default=None, help="image topic of --eval-frames when it is a bag")
    parser.add_argument(
        "--eval-count",
        type=int,
        default=DEFAULT_EVAL_COUNT,
        help=f"held-out frames (detection) or clips (video) (default {DEFAULT_EVAL_COUNT})",
    )
    parser.add_argument("--latency-repeats", type=int, default=3, help="timing rounds per level (default 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")


def held_out_inputs(model, source: str | None, topic: str | None, count: int, seed: int) -> tuple[list, dict]:
    """Held-out inputs in the model's forward format and what the card says about them.

    Detection: (3, H, W) floats in [0, 1]; video: normalised (3, T, H, W) clips of consecutive frames.
    Without ``source``: seeded synthetic scenes (320x240) or synthetic gesture clips.
    """
    detection = model.architecture["task"] == "detection"
    if source is not None:
        from ..data.frames import open_frames

        frames_source = open_frames(source, topic)
        per_item = 1 if detection else model.clip_length
        frames = list(frames_source.frames(limit=count * per_item))
        if len(frames) < per_item:
            from ..data.frames import FrameSourceError

            raise FrameSourceError(f"{source}: {len(frames)} frames, need at least {per_item}")
        info = {**frames_source.describe(), "frames_used": len(frames)}
        if detection:
            return [model.preprocess(f)[0] for f in frames], info
        clips = [frames[i : i + per_item] for i in range(0, len(frames) - per_item + 1, per_item)]
        return [model.preprocess(model.frames_to_clip(c))[0] for c in clips], info
    if detection:
        from ..data.scenes import SyntheticDetectionDataset

        dataset = SyntheticDetectionDataset(count, 320, 240, seed=seed)
        images = [
            torch.from_numpy(dataset.scene(i)[0]).permute(2, 0, 1).float() / 255.0 for i in range(count)
        ]
        return images, {"kind": "synthetic scenes", "count": count, "seed": seed, "size": [320, 240]}
    from ..data.gestures import SyntheticGestureDataset

    dataset = SyntheticGestureDataset(
        count, seed=seed, clip_length=model.clip_length, frame_size=model.frame_size
    )
    clips = [model.preprocess(dataset[i][0][None])[0] for i in range(count)]
    return clips, {"kind": "synthetic gesture clips", "count": count, "seed": seed}


def measure_levels(model, original, held_out: list, repeats: int, threads: int) -> tuple[list[dict], str]:
    """Per-level MACs, params, latency (median ms, this machine) and agreement with ``original``."""
    from ..eval.agreement import agreement_per_level
    from ..eval.latency import measure_latency
    from ..throttle import count_level_costs

    model.eval()
    example = model.example_input()
    with model.proposals_at_cap() if hasattr(model, "proposals_at_cap") else contextlib.nullcontext():
        costs = count_level_costs(model, example)
    with torch.no_grad():
        timing = measure_latency(model, example, repeats=max(1, repeats), warmup=1)
    agreement, metric = agreement_per_level(model, original, held_out)
    full_macs = costs[-1].macs
    levels = [
        {
            "level": c.level,
            "utilization": model.utilization_of(c.level),
            "macs": c.macs,
            "params": c.params,
            "mac_ratio": round(c.macs / full_macs, 4),
            "latency_ms": round(ms, 3),
            "agreement": None if np.isnan(a) else round(a, 4),
        }
        for c, ms, a in zip(costs, timing["median_ms"], agreement)
    ]
    return levels, metric + f"; latency: median of {repeats} runs, {threads} thread(s), batch 1"


def _parse(argv):
    from ..models.converted import ARCHITECTURES

    parser = argparse.ArgumentParser(
        prog="tnn-train convert", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--arch", required=True, help=f"one of: {', '.join(ARCHITECTURES)}")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--weights", default=None, help="torchvision weights file (.pth state dict)")
    source.add_argument(
        "--random-init",
        action="store_true",
        help="random weights (tests, dry runs): BN layers get trained-like statistics",
    )
    parser.add_argument(
        "-o", "--output", required=True, help="converted model file (.pt); the card goes beside it"
    )
    parser.add_argument("--num-levels", type=int, default=8)
    parser.add_argument(
        "--min-width-fraction",
        type=float,
        default=0.25,
        help="share of each block's hidden channels kept at level 0 (default 0.25)",
    )
    parser.add_argument(
        "--depth-fraction",
        type=float,
        default=0.5,
        help="share of the skippable residual blocks dropped at level 0 (default 0.5)",
    )
    parser.add_argument("--channel-multiple", type=int, default=8)
    parser.add_argument("--clip-length", type=int, default=None, help="video: frames per clip (default 16)")
    parser.add_argument(
        "--frame-size",
        type=int,
        nargs=2,
        default=None,
        metavar=("W", "H"),
        help="video: frame size (default 112 112)",
    )
    parser.add_argument(
        "--classes",
        default=None,
        help="comma-separated class names of a model trained on other classes than the "
        "pretrained weights (detection: the first is the background)",
    )
    parser.add_argument("--seed", type=int, default=0)
    add_level_options(parser)
    return parser.parse_args(argv)


def fail(message: str) -> int:
    """Print the one-line error of a bad input and return exit code 2."""
    print(f"tnn-train: error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Entry point of `tnn-train convert`."""
    from ..data.frames import FrameSourceError
    from ..models.converted import ARCHITECTURES, WeightsError, convert, default_weights_path, weights_hint
    from ..models.io import save_model
    from ..throttle.convert import ConvertOptions

    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parse(argv)
    if args.arch not in ARCHITECTURES:
        return fail(f"unknown architecture {args.arch!r}; supported: {', '.join(ARCHITECTURES)}")
    if not args.output.endswith(".pt"):
        return fail(f"--output must end in .pt, got {args.output!r}")
    weights = args.weights
    if weights is None and not args.random_init:
        default = default_weights_path(args.arch)
        if not default.is_file():
            return fail(f"no weights for {args.arch}: {weights_hint(args.arch)}; or pass --random-init")
        weights = str(default)
    if weights is not None and not Path(weights).is_file():
        return fail(f"{weights}: weights file not found; {weights_hint(args.arch)}")
    torch.set_num_threads(max(1, args.threads))
    torch.set_flush_denormal(True)
    overrides = {}
    if args.clip_length is not None:
        overrides["clip_length"] = args.clip_length
    if args.frame_size is not None:
        overrides["frame_size"] = list(args.frame_size)
    try:
        options = ConvertOptions(
            args.num_levels, args.min_width_fraction, args.channel_multiple, args.depth_fraction
        )
        options.check()
        start = time.perf_counter()
        origin = f"weights {weights}" if weights else "random init"
        print(f"converting {args.arch} ({origin}) ...", flush=True)
        classes = None if args.classes is None else [c.strip() for c in args.classes.split(",")]
        model, original, meta = convert(
            args.arch, weights, options, seed=args.seed, architecture=overrides, classes=classes
        )
        held_out, held_info = held_out_inputs(
            model, args.eval_frames, args.eval_topic, args.eval_count, seed=args.seed + 1000
        )
    except (WeightsError, FrameSourceError, ValueError) as exc:
        return fail(str(exc))
    card = build_card(model, original, meta, args, weights, held_out, held_info, argv)
    card["conversion_seconds"] = round(time.perf_counter() - start, 1)
    weights_path, card_file = save_model(model, args.output, card)
    print_levels(card)
    print(f"wrote {weights_path} and {card_file}")
    return 0


def build_card(
    model, original, meta: dict, args, weights: str | None, held_out: list, held_info: dict, argv: list[str]
) -> dict:
    """The converted model's card: source, equivalence, per-level MACs / latency / agreement."""
    import torchvision

    from ..eval.agreement import equivalence_report

    example = model.example_input()
    check_inputs = [held_out[0][None]] if held_out else [torch.rand(example.shape)]
    equivalence = equivalence_report(model, original, check_inputs)
    levels, metric = measure_levels(model, original, held_out, args.latency_repeats, args.threads)
    source = {
        "arch": args.arch,
        "torchvision": torchvision.__version__,
        "categories_from": meta["enum"],
        "weights_url": meta["url"],
    }
    if weights is not None:
        source.update(weights=str(weights), weights_sha256=sha256_file(weights))
    else:
        source.update(
            weights=f"random init (seed {args.seed}, BatchNorm calibrated on random inputs)",
            weights_sha256=None,
        )
    card = {
        "name": Path(args.output).stem,
        "task": model.architecture["task"],
        "architecture": model.architecture,
        "classes": model.classes,
        "num_levels": model.num_levels,
        "source": source,
        **{k: float(v) for k, v in equivalence.items()},
        "equivalence_inputs": [list(x.shape) for x in check_inputs],
        "levels": levels,
        "agreement_metric": metric,
        "held_out": held_info,
        "latency_threads": args.threads,
        "conversion": {"command": "tnn-train convert " + shlex.join(argv)},
    }
    if model.architecture["task"] == "detection":
        card["input_size"] = list(model.input_size)
        if getattr(model, "proposals", None):
            card["proposals_per_level"] = model.proposals
    else:
        card["clip_length"] = model.clip_length
        card["frame_size"] = list(model.frame_size)
    return card


def print_levels(card: dict, header: str | None = None) -> None:
    """The card's per-level table on stdout."""
    print(
        header
        or (
            f"full level vs original: max abs diff {card['full_level_max_abs_diff']:.3g} (float32; "
            f"float32 noise floor {card['fp32_noise_floor']:.3g}), "
            f"{card['full_level_max_abs_diff_fp64']:.3g} (float64)"
        )
    )
    print(f"agreement: {card['agreement_metric']}")
    print("level      u     MMACs  ratio  latency ms  agreement")
    for row in card["levels"]:
        agreement = "n/a" if row["agreement"] is None else f"{row['agreement']:.3f}"
        print(
            f"{row['level']:5d}  {row['utilization']:.3f}  {row['macs'] / 1e6:8.1f}  {row['mac_ratio']:.3f}"
            f"  {row['latency_ms']:10.2f}  {agreement:>9s}"
        )


if __name__ == "__main__":
    sys.exit(main())
