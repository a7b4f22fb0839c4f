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
DEFAULT_LABEL_COUNT = 200
SELECT_BY = {"latency": "latency_ms", "cpu": "cpu_ms", "macs": "macs"}  # --select-by -> card row key
COCO_EVAL_SIZE = (640, 480)  # labeled COCO images are resized to COCO's typical size first


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
    labels = parser.add_argument_group(
        "accuracy with labels",
        "when labels exist, every level's accuracy goes into the card beside its agreement",
    )
    labels.add_argument("--coco-json", default=None, metavar="ANN", help="detection: COCO instances JSON")
    labels.add_argument(
        "--coco-images", default=None, metavar="DIR", help="detection: the folder of its images"
    )
    labels.add_argument(
        "--jester-csv", default=None, metavar="CSV", help="video: Jester 'video_id;label' CSV"
    )
    labels.add_argument(
        "--jester-dir",
        default=None,
        metavar="DIR",
        help="video: Jester root (<DIR>/<video_id>/00001.jpg ...)",
    )
    labels.add_argument(
        "--label-count",
        type=int,
        default=DEFAULT_LABEL_COUNT,
        help=f"labeled images / clips used, the first ones (default {DEFAULT_LABEL_COUNT})",
    )


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return sorted(set(values), reverse=True)


def add_knob_options(parser: argparse.ArgumentParser) -> None:
    """Options that add input resolution / clip length as knobs, chosen as a latency-agreement Pareto set."""
    group = parser.add_argument_group(
        "further knobs",
        "Candidate levels = every width level x each resolution (detection) or clip length x frame "
        "stride (video); each is measured (latency on this machine, agreement with the original at "
        "full resolution / clip) and the Pareto-optimal ones, cheapest first, become the model's levels.",
    )
    group.add_argument(
        "--resolutions",
        type=_int_list,
        default=None,
        metavar="R,R,...",
        help="detection: input resolutions (shorter side the network sees, e.g. 320,256,224,192); "
        "the original's (320) is always added",
    )
    group.add_argument(
        "--clip-lengths",
        type=_int_list,
        default=None,
        metavar="L,L,...",
        help="video: frames the network processes (the newest of the clip, e.g. 16,8,4); "
        "the full clip is always added",
    )
    group.add_argument(
        "--frame-strides",
        type=_int_list,
        default=None,
        metavar="S,S,...",
        help="video: distance between the processed frames (default 1; e.g. 1,2)",
    )
    group.add_argument(
        "--select-by",
        choices=tuple(SELECT_BY),
        default="latency",
        help="cost axis of the Pareto set: measured wall-clock latency (default), the process CPU time "
        "of a forward (steadier on a machine other processes load) or counted MACs (reproducible)",
    )
    group.add_argument(
        "--max-levels",
        type=int,
        default=None,
        help="keep at most this many Pareto-optimal levels, spread evenly in cost (default: all)",
    )


def check_knob_options(task: str, args, full_clip: int | None = None) -> bool:
    """Whether knob options were given.

    ValueError (one line) for knobs of the other task or clip lengths above ``full_clip`` frames.
    """
    resolutions = getattr(args, "resolutions", None)
    clip_lengths, strides = getattr(args, "clip_lengths", None), getattr(args, "frame_strides", None)
    if task == "detection" and (clip_lengths or strides):
        raise ValueError("--clip-lengths / --frame-strides are for video nets; detectors take --resolutions")
    if task != "detection" and resolutions:
        raise ValueError("--resolutions is for detectors; video nets take --clip-lengths / --frame-strides")
    max_levels = getattr(args, "max_levels", None)
    if max_levels is not None and max_levels < 2:
        raise ValueError(f"--max-levels must be >= 2, got {max_levels}")
    if clip_lengths and full_clip is not None and max(clip_lengths) > full_clip:
        raise ValueError(f"clip length {max(clip_lengths)} exceeds the clip ({full_clip} frames)")
    return bool(resolutions or clip_lengths or strides)


def knob_candidates(model, args) -> list[dict] | None:
    """Candidate knob levels from the options (full configuration last), or None without knob options.

    ValueError (one line) for knobs of the other task or values the network cannot run.
    """
    detection = model.architecture["task"] == "detection"
    if not check_knob_options(model.architecture["task"], args, getattr(model, "clip_length", None)):
        return None
    resolutions = getattr(args, "resolutions", None)
    clip_lengths, strides = getattr(args, "clip_lengths", None), getattr(args, "frame_strides", None)
    full = model.knobs_of(model.num_levels - 1)
    candidates = []
    if detection:
        for resolution in sorted(set(resolutions) | {full["resolution"]}):
            if resolution > full["resolution"] or resolution < 32:
                raise ValueError(
                    f"resolution {resolution} not in [32, {full['resolution']}] (the original's input)"
                )
            candidates += [{"width_level": k, "resolution": resolution} for k in range(model.width_levels)]
    else:
        for length in sorted(set(clip_lengths or []) | {full["clip_length"]}):
            for stride in sorted(set(strides or [1]) | {1}):
                if (length - 1) * stride + 1 > full["clip_length"]:
                    continue  # does not fit into the clip (e.g. the full clip at stride 2)
                candidates += [
                    {"width_level": k, "clip_length": length, "frame_stride": stride}
                    for k in range(model.width_levels)
                ]
        if clip_lengths and max(clip_lengths) > full["clip_length"]:
            raise ValueError(
                f"clip length {max(clip_lengths)} exceeds the clip ({full['clip_length']} frames)"
            )
    candidates.remove(full)
    return candidates + [full]


def select_knob_levels(rows: list[dict], cost: str, max_levels: int | None) -> list[int]:
    """Positions of the rows that become the levels: the Pareto set of (``cost``, agreement), cheapest first.

    The last row is the full configuration (the original); it is always the top level, and only
    rows cheaper than it compete (a cheaper row that agrees as well as it is kept below it).
    """
    from ..throttle.convert import pareto_front, thin_front

    top = len(rows) - 1
    cheaper = [i for i in range(top) if rows[i][cost] < rows[top][cost]]
    front = [
        cheaper[i]
        for i in pareto_front([rows[i][cost] for i in cheaper], [_quality(rows[i]) for i in cheaper])
    ]
    chosen = front + [top]
    if max_levels is not None and len(chosen) > max_levels:
        chosen = [chosen[i] for i in thin_front([rows[i][cost] for i in chosen], max_levels)]
    return chosen


def _quality(row: dict) -> float:
    return float("nan") if row["agreement"] is None else row["agreement"]


def check_label_options(task: str, args) -> bool:
    """Whether labels were given; ValueError (one line) for a half-given pair or the other task's labels."""
    coco = (getattr(args, "coco_json", None), getattr(args, "coco_images", None))
    jester = (getattr(args, "jester_csv", None), getattr(args, "jester_dir", None))
    if any(coco) and not all(coco):
        raise ValueError("--coco-json and --coco-images go together")
    if any(jester) and not all(jester):
        raise ValueError("--jester-csv and --jester-dir go together")
    if task == "detection" and any(jester):
        raise ValueError("--jester-csv / --jester-dir are for video nets; detectors take --coco-json")
    if task != "detection" and any(coco):
        raise ValueError("--coco-json / --coco-images are for detectors; video nets take --jester-csv")
    if (any(coco) or any(jester)) and args.label_count < 1:
        raise ValueError(f"--label-count must be >= 1, got {args.label_count}")
    return any(coco) or any(jester)


def labeled_inputs(model, args) -> tuple[list, list, dict] | None:
    """Labeled inputs in the model's forward format, their labels in the model's ids and a description.

    Detection (COCO): (3, H, W) images at :data:`COCO_EVAL_SIZE` and {"boxes", "labels"} targets;
    categories are matched to the model's classes by name, annotations of other categories are
    dropped (and counted). Video (Jester layout): clips of ``clip_length`` frames spread over each
    video, and class ids; rows of labels the model does not know are skipped (and counted).
    None without label options; ValueError (one line) when the labels are unusable.
    """
    if not check_label_options(model.architecture["task"], args):
        return None
    count = args.label_count
    if model.architecture["task"] == "detection":
        from ..data.coco import CocoDetectionDataset

        dataset = CocoDetectionDataset(args.coco_images, args.coco_json, *COCO_EVAL_SIZE)
        index = {name: i for i, name in reversed(list(enumerate(model.classes)))}  # first id of a name
        known = {i: index[name] for i, name in enumerate(dataset.classes) if name in index}
        if not known:
            raise ValueError(
                f"{args.coco_json}: none of its categories ({', '.join(dataset.classes[:5])} ...) is a class "
                "of the model"
            )
        images, targets, dropped = [], [], 0
        for i in range(min(count, len(dataset))):
            image, target = dataset[i]
            keep = torch.tensor([int(c) in known for c in target["labels"]], dtype=torch.bool)
            dropped += int((~keep).sum())
            labels = torch.tensor([known[int(c)] for c in target["labels"][keep]], dtype=torch.int64)
            images.append(image)
            targets.append({"boxes": target["boxes"][keep], "labels": labels})
        info = {
            "kind": "COCO",
            "annotations": str(args.coco_json),
            "images_dir": str(args.coco_images),
            "images": len(images),
            "size": list(COCO_EVAL_SIZE),
            "boxes": sum(len(t["labels"]) for t in targets),
            "boxes_dropped_unknown_category": dropped,
            "categories_matched": sorted(dataset.classes[i] for i in known),
        }
        return images, targets, info
    from ..data.jester import JesterDataset, normalize_label, read_annotations

    if not Path(args.jester_csv).is_file():
        raise ValueError(f"{args.jester_csv}: Jester CSV not found")
    known = {normalize_label(name) for name in model.labels}
    rows = read_annotations(args.jester_csv)
    if not any(label in known for _, label in rows):
        raise ValueError(
            f"{args.jester_csv}: none of its {len(rows)} rows has a label of the model "
            f"({', '.join(model.labels[:3])}, ...); convert with --classes for a net trained on these labels"
        )
    try:
        dataset = JesterDataset(
            args.jester_dir,
            csv_path=args.jester_csv,
            clip_length=model.clip_length,
            frame_size=model.frame_size,
            classes=model.labels,
        )
    except FileNotFoundError as exc:
        raise ValueError(str(exc)) from None
    except ValueError as exc:  # its message lists every class: keep the first sentence
        raise ValueError(str(exc).split(" with labels outside")[0].rstrip(", ") + ")") from None
    # JesterDataset normalises names ("Swiping Left" -> "swiping_left") on both sides, in the
    # order of model.labels, so its class ids are the model's.
    clips, labels = [], []
    for i in range(min(count, len(dataset))):
        clip, label = dataset[i]
        clips.append(model.preprocess(clip[None])[0])
        labels.append(int(label))
    info = {
        "kind": "Jester",
        "csv": str(args.jester_csv),
        "root": str(args.jester_dir),
        "clips": len(clips),
        "rows_skipped_unknown_label": dataset.skipped_label,
        "rows_skipped_missing_video": dataset.skipped_missing,
    }
    return clips, labels, info


def add_accuracy(card: dict, model, labeled: tuple[list, list, dict] | None) -> None:
    """Each level's accuracy on ``labeled`` into the card's rows, with the metric and the data."""
    if labeled is None:
        return
    from ..eval.agreement import detection_map50, top1_accuracy

    inputs, labels, info = labeled
    if model.architecture["task"] == "detection":
        accuracy = detection_map50(model, inputs, labels)
        metric = f"mAP@0.5 (torchmetrics) against the COCO labels on {len(inputs)} images"
    else:
        accuracy = top1_accuracy(model, inputs, labels)
        metric = f"top-1 accuracy against the Jester labels on {len(inputs)} clips"
    for row, value in zip(card["levels"], accuracy):
        row["accuracy"] = None if value != value else round(value, 4)
    card["accuracy_metric"] = metric
    card["labeled"] = info


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
    """Per-level MACs, params, latency (median ms, this machine) and agreement with ``original``.

    Rows of a model with knob levels also name each level's knobs (width level, resolution or clip
    length and frame stride) and its share of the hidden channels.
    """
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
    if getattr(model, "knob_levels", None) is not None:
        for row, cpu_ms in zip(levels, timing["cpu_median_ms"]):
            row.update(knob_row(model, row["level"]), cpu_ms=round(cpu_ms, 3))
    return levels, metric + f"; latency: median of {repeats} runs, {threads} thread(s), batch 1"


def knob_row(model, level: int) -> dict:
    """The knobs of ``level`` for a card row: width level and fraction, resolution or clip."""
    knobs = model.knobs_of(level)
    low = float(model.architecture["min_width_fraction"])
    top = model.width_levels - 1
    knobs["width_fraction"] = round(low + (1.0 - low) * knobs["width_level"] / top, 4) if top else 1.0
    proposals = getattr(model, "proposals", None)
    if proposals:
        knobs["proposals"] = proposals[knobs["width_level"]]
    return knobs


def measure_knob_levels(
    model, original, held_out: list, candidates: list[dict], args
) -> tuple[list[dict], str, dict]:
    """Measure every candidate side by side, make the Pareto set the model's levels.

    Returns (the chosen levels' rows, re-numbered; the metric; the card's ``knobs`` record with every
    candidate's measurement and whether it was chosen).
    """
    cost = SELECT_BY[args.select_by]
    model.set_knob_levels(candidates)
    print(f"measuring {len(candidates)} candidate levels (width x knob) ...", flush=True)
    rows, metric = measure_levels(model, original, held_out, args.latency_repeats, args.threads)
    chosen = select_knob_levels(rows, cost, args.max_levels)
    front = set(select_knob_levels(rows, cost, None))
    table = [
        {
            **{k: v for k, v in row.items() if k not in ("level", "utilization")},
            "pareto": i in front,
            "chosen": i in chosen,
        }
        for i, row in enumerate(rows)
    ]
    model.set_knob_levels([candidates[i] for i in chosen])
    levels = []
    for level, i in enumerate(chosen):
        row = dict(rows[i])
        row.update(
            level=level,
            utilization=model.utilization_of(level),
            mac_ratio=round(row["macs"] / rows[-1]["macs"], 4),
        )
        levels.append(row)
    record = {
        "selected_by": f"Pareto set of ({cost}, agreement), measured side by side in one run; "
        "the full configuration (the original) is always the top level",
        "select_by": args.select_by,
        "max_levels": args.max_levels,
        "candidates": table,
    }
    if model.architecture["task"] == "detection":
        record["resolutions"] = sorted({c["resolution"] for c in candidates})
    else:
        record["clip_lengths"] = sorted({c["clip_length"] for c in candidates})
        record["frame_strides"] = sorted({c["frame_stride"] for c in candidates})
    return levels, metric, record


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
    add_knob_options(parser)
    return parser.parse_args(argv)


def fail(message: str) -> int:
    """Print the one-line error of a bad input and return exit code 2."""
    print(f"tnn-train: error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Entry point of `tnn-train convert`."""
    from ..data.frames import FrameSourceError
    from ..models.converted import (
        ARCHITECTURES,
        VIDEO_CLIP_LENGTH,
        WeightsError,
        convert,
        default_weights_path,
        weights_hint,
    )
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
        check_knob_options(ARCHITECTURES[args.arch].task, args, args.clip_length or VIDEO_CLIP_LENGTH)
        check_label_options(ARCHITECTURES[args.arch].task, args)
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
        candidates = knob_candidates(model, args)
        held_out, held_info = held_out_inputs(
            model, args.eval_frames, args.eval_topic, args.eval_count, seed=args.seed + 1000
        )
        labeled = labeled_inputs(model, args)
    except (WeightsError, FrameSourceError, ValueError) as exc:
        return fail(str(exc))
    card = build_card(model, original, meta, args, weights, held_out, held_info, argv, candidates)
    add_accuracy(card, model, labeled)
    card["conversion_seconds"] = round(time.perf_counter() - start, 1)
    weights_path, card_file = save_model(model, args.output, card)
    print_levels(card)
    print(f"wrote {weights_path} and {card_file}")
    return 0


def build_card(
    model,
    original,
    meta: dict,
    args,
    weights: str | None,
    held_out: list,
    held_info: dict,
    argv: list[str],
    candidates: list[dict] | None = None,
) -> dict:
    """The converted model's card: source, equivalence, per-level MACs / latency / agreement.

    With knob ``candidates`` the model's levels become their Pareto set (:func:`measure_knob_levels`).
    """
    import torchvision

    from ..eval.agreement import equivalence_report

    example = model.example_input()
    check_inputs = [held_out[0][None]] if held_out else [torch.rand(example.shape)]
    equivalence = equivalence_report(model, original, check_inputs)
    knobs = None
    if candidates:
        levels, metric, knobs = measure_knob_levels(model, original, held_out, candidates, args)
    else:
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
    if knobs is not None:
        card["knobs"] = knobs
    if model.architecture["task"] == "detection":
        card["input_size"] = list(model.input_size)
        if getattr(model, "proposals", None) and knobs is None:
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
    if "accuracy_metric" in card:
        print(f"accuracy: {card['accuracy_metric']}")
    knobs = "width_level" in card["levels"][0]
    accuracy = "accuracy" in card["levels"][0]
    cpu = "cpu_ms" in card["levels"][0]
    print(
        "level      u     MMACs  ratio  latency ms"
        + ("  cpu ms" if cpu else "")
        + "  agreement"
        + ("  accuracy" if accuracy else "")
        + ("  knobs" if knobs else "")
    )
    for row in card["levels"]:
        agreement = "n/a" if row["agreement"] is None else f"{row['agreement']:.3f}"
        line = (
            f"{row['level']:5d}  {row['utilization']:.3f}  {row['macs'] / 1e6:8.1f}  {row['mac_ratio']:.3f}"
            f"  {row['latency_ms']:10.2f}" + (f"  {row['cpu_ms']:6.1f}" if cpu else "") + f"  {agreement:>9s}"
        )
        if accuracy:
            line += f"  {'n/a' if row['accuracy'] is None else format(row['accuracy'], '.3f'):>8s}"
        print(line + (f"  {describe_knobs(row)}" if knobs else ""))


def describe_knobs(row: dict) -> str:
    """A card row's knobs in a few characters: ``w3 (0.57) @256`` or ``w3 (0.57) 8x2``."""
    text = f"w{row['width_level']} ({row['width_fraction']:.2f})"
    if "resolution" in row:
        return f"{text} @{row['resolution']}"
    return f"{text} {row['clip_length']}x{row['frame_stride']}"


if __name__ == "__main__":
    sys.exit(main())
