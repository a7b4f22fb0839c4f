"""`tnn-bench throttle`: latency, MACs and accuracy of every level of a model, side by side."""

from __future__ import annotations

import copy
import os
import statistics
import time
from collections.abc import Sequence

import numpy as np
import torch

from ..eval.latency import measure_cpu_per_frame, measure_latency, measure_switch_us


def _detector_setup(args):
    import torchvision

    from ..data.scenes import SyntheticDetectionDataset
    from ..eval.accuracy import VAL_SEED_OFFSET, detector_map50
    from ..models import load_detector
    from ..sim.scenes import render_scene

    model = load_detector(args.path)
    width, height = model.input_size
    # A rendered scene (what the camera sends), preprocessed as perception does: not an all-zero input.
    example = model.preprocess(render_scene(np.random.default_rng(0), width, height)[0])
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
        return detector_map50(model, dataset)

    name = f"torchvision ssdlite320_mobilenet_v3_large (random weights, backbone+head) at {width}x{height}"
    seed = (args.seed or 0) + VAL_SEED_OFFSET
    metric = f"mAP@0.5 (torchmetrics) on {num_images} held-out synthetic scenes (seed {seed})"
    return model, example, run_reference, name, accuracy, metric


def _gesture_setup(args):
    import torchvision

    from ..eval.accuracy import gesture_top1_heldout
    from ..models import load_gesture

    model = load_gesture(args.path)
    # Random pixels through the net's own preprocessing (normalised, frame-major), not all zeros.
    shape = (1, model.clip_length, model.frame_size[1], model.frame_size[0], 3)
    example = model.preprocess(torch.from_numpy(np.random.default_rng(0).integers(0, 256, shape, np.uint8)))
    reference = torchvision.models.video.r3d_18(weights=None, num_classes=len(model.classes)).eval()
    num_clips = args.eval_images or (32 if args.quick else 200)

    def accuracy():
        previous, scores = model.level, []
        for level in range(model.num_levels):
            model.set_level(level)
            # the gesture trainer's own held-out seed unless --seed is given
            kwargs = {} if args.seed is None else {"seed": args.seed}
            scores.append(float(gesture_top1_heldout(model, num_clips, **kwargs)))
        model.set_level(previous)
        return scores

    shape = "x".join(str(v) for v in example.shape[1:])
    name = f"torchvision r3d_18 (random weights) at {shape}"
    seed = "the trainer's held-out seed" if args.seed is None else f"seed {args.seed}"
    metric = f"top-1 on {num_clips} held-out clips ({seed})"
    return model, example, lambda: reference(example), name, accuracy, metric


def _model_file_setup(args):
    """`tnn-bench throttle --model FILE.pt`: the bench's setup tuple for a model file.

    A converted file is measured against its torchvision original (random weights of the same
    layout, the whole network incl. post-processing, for the reference latency); its accuracy
    column is the agreement with its own full level on held-out frames (``--eval-images``, seed
    ``--seed``). A native model file goes to the bench's own detector / gesture setup.
    """
    from ..models.converted import build_converted, build_original, is_converted_card
    from ..models.io import load_model, read_card
    from ..train.convert import DEFAULT_EVAL_COUNT, held_out_inputs

    card = read_card(args.model)
    if not is_converted_card(card):
        args.path = args.model
        return (_gesture_setup if "clip_length" in card else _detector_setup)(args)
    model = load_model(args.model, build_converted)
    teacher = copy.deepcopy(model).eval()  # the full level, frozen: agreement's reference
    count = args.eval_images or (4 if args.quick else DEFAULT_EVAL_COUNT)
    seed = 1000 if args.seed is None else args.seed
    held_out, info = held_out_inputs(model, None, None, count, seed)
    example = model.example_input()
    arch = card["architecture"]["arch"]
    reference_net = build_original(arch)

    def run_reference():
        return reference_net(list(example) if example.dim() == 4 else example)

    def accuracy():
        from ..eval.agreement import agreement_per_level

        original = (lambda images: teacher(torch.stack(list(images)))) if example.dim() == 4 else teacher
        return [float("nan") if v != v else v for v in agreement_per_level(model, original, held_out)[0]]

    shape = "x".join(str(v) for v in example.shape[1:])
    name = f"torchvision {arch} (unconverted, random weights) at {shape}"
    metric = f"agreement with the model's own full level on {count} {info['kind']} (seed {seed}): " + (
        "mAP@0.5 vs its detections" if example.dim() == 4 else "top-1 agreement"
    )
    return model, example, run_reference, name, accuracy, metric


def _model_path(args) -> str:
    from ..models import shipped_model_path

    return args.path or (args.model if args.model.endswith(".pt") else shipped_model_path(args.model))


def _engines(model, args) -> tuple[dict, str]:
    """The models to time, by name: torch always (the comparison), onnxruntime when asked for.

    Returns ({name: EngineModel}, fallback reason or ""). The spinning variant of onnxruntime is not
    among them: it is timed in a block of its own (:func:`_spinning_block`).
    """
    from ..engines import create_engine

    engines = {"torch": create_engine(model, "torch")}
    if args.backend == "torch":
        return engines, ""
    ort = create_engine(
        model,
        "onnxruntime",
        model_path=_model_path(args),
        num_threads=args.threads,
        cache_dir=args.cache_dir,
        spinning=False,
        log=print,
    )
    if ort.backend != "onnxruntime":
        return engines, ort.engine_info().get("fallback_reason", "")
    engines["onnxruntime"] = ort
    return engines, ""


def _spinning_block(model, args, ort_model, example, repeats: int, costs, cpu_frames: int | None) -> dict:
    """``onnxruntime_spinning`` (the same graphs, busy-waiting workers) timed in a block of its own.

    Timed in the same rounds as the non-spinning onnxruntime engine (its comparison, to choose the
    default: docs/engines.md) but never beside torch: interleaved with torch, the spinning workers of
    its sessions took the cores from torch's rounds (torch clips 30-50x slower, which made
    ``full_over_torch_full`` meaningless). The engine is released at the end of the block, so its
    thread pools are gone before anything else is timed. Returns the entries of ``comparison``,
    ``frame`` (detector) and ``cpu_ms_per_frame_at_15hz`` (``cpu_frames`` not None) for it.
    """
    import gc

    from ..engines import create_engine

    spinning = create_engine(
        model,
        "onnxruntime",
        model_path=_model_path(args),
        num_threads=args.threads,
        cache_dir=args.cache_dir,
        spinning=True,
    )
    block = {}
    with torch.no_grad():
        timing = measure_latency(spinning, example, repeats=repeats, others={"onnxruntime": ort_model})
    ort_cpu = timing["others"]["onnxruntime"]["cpu_median_ms"]
    block["comparison"] = {
        "latency_ms_median": [round(v, 3) for v in timing["median_ms"]],
        "latency_ms_p90": [round(v, 3) for v in timing["p90_ms"]],
        "cpu_ms_median": [round(v, 3) for v in timing["cpu_median_ms"]],
        "timed_with": "onnxruntime (own block, without torch)",
        "onnxruntime_cpu_ms_median_same_block": [round(v, 3) for v in ort_cpu],
    }
    if args.model == "detector":
        frames = _frame_latency({"onnxruntime_spinning": spinning}, model, costs, max(5, repeats // 2))
        block["frame"] = frames["onnxruntime_spinning"]
    if cpu_frames is not None:
        extremes = (0, model.num_levels - 1)
        per_frame = _cpu_per_frame({"spinning": spinning}, example, extremes, cpu_frames)
        block["cpu_ms_per_frame"] = per_frame["spinning"]
    del spinning
    gc.collect()  # the sessions (and their spinning thread pools) go now, not at some later collection
    return block


def _profiles(engines: dict, model, example, repeats: int) -> dict:
    """Per-layer time of the lowest and the full level on every backend timed."""
    from .layer_profile import ort_layer_profile, torch_layer_profile

    lowest, full = 0, model.num_levels - 1
    module_names = frozenset(name for name, _ in model.named_modules())
    profile = {}
    for name in ("torch", "onnxruntime"):
        if name not in engines:
            continue
        if name == "torch":

            def run(level):
                return torch_layer_profile(model, example, level, repeats)
        else:

            def run(level, engine=engines[name].engine):
                return ort_layer_profile(engine, example, level, repeats, module_names)

        profile[name] = {"lowest": run(lowest), "full": run(full)}
    return profile


def _pre_post_ms(model, repeats: int) -> dict:
    """Detector pre/post-processing per frame (ms): resize + normalise, decode + NMS + box scaling."""
    from ..models.detector import decode
    from ..sim.scenes import render_scene

    width, height = model.input_size
    result = {}
    for camera in ((width, height), (2 * width, 2 * height)):
        image = render_scene(np.random.default_rng(1), *camera)[0]
        with torch.no_grad():
            previous = model.level
            model.set_level(model.num_levels - 1)
            heatmap, distances = model(model.preprocess(image))
            model.set_level(previous)
        timings = {"preprocess": [], "decode": []}
        for _ in range(repeats):
            start = time.perf_counter()
            model.preprocess(image)
            middle = time.perf_counter()
            decode(heatmap, distances, 0.3)
            timings["preprocess"].append((middle - start) * 1000)
            timings["decode"].append((time.perf_counter() - middle) * 1000)
        key = f"{camera[0]}x{camera[1]}"
        result[key] = {name: round(statistics.median(v), 4) for name, v in timings.items()}
    return result


def _frame_latency(engines: dict, model, costs, repeats: int) -> dict:
    """Whole detector frames per level and backend: preprocess + network + decode/NMS + box scaling.

    ``predict`` on a rendered camera frame at the network's input size, every level and backend
    interleaved in each round; process CPU ms (robust on a loaded machine) and the efficiency of the
    whole frame (the pre/post-processing every level pays counts against it).
    """
    from ..sim.scenes import render_scene

    image = render_scene(np.random.default_rng(2), *model.input_size)[0]
    levels = range(model.num_levels)
    samples = {name: {level: [] for level in levels} for name in engines}
    with torch.no_grad():
        for round_index in range(repeats + 1):
            for level in levels:
                for name, engine in engines.items():
                    engine.set_level(level)
                    start = time.process_time()
                    engine.predict(image)
                    if round_index:  # the first round warms up
                        samples[name][level].append((time.process_time() - start) * 1000)
    result = {}
    for name in engines:
        medians = [statistics.median(samples[name][level]) for level in levels]
        result[name] = {
            "cpu_ms_median": [round(v, 3) for v in medians],
            "cpu_efficiency": [
                round(medians[-1] / v * cost.macs / costs[-1].macs, 3) if v > 0 else float("nan")
                for v, cost in zip(medians, costs)
            ],
        }
    return result


def _cpu_per_frame(engines: dict, example, levels: Sequence[int], frames: int) -> dict:
    """Process CPU ms per frame at 15 frames/s: what a backend costs the shared robot CPU."""
    return {
        name: {str(level): round(measure_cpu_per_frame(m, example, level, frames), 3) for level in levels}
        for name, m in engines.items()
    }


def _machine_load(threads: int) -> dict:
    """Load average and cores, and whether ``threads`` threads per backend can expect their cores.

    With more runnable threads than cores, a multi-threaded forward waits at every parallel op for a
    preempted worker: torch's two-thread OpenMP pool measured 415-476 ms per gesture clip against
    11-22 ms on one thread, with no onnxruntime in the process (load average 7.5 on 2 cores,
    docs/engines.md). Ratios against such rounds say nothing about the backends.
    """
    cores = os.cpu_count() or 1
    load = os.getloadavg()[0]
    return {
        "load_average_1min": round(load, 2),
        "cores": cores,
        "oversubscribed": threads > 1 and load + threads > cores,
    }


def run_benchmark(args) -> dict:
    """Measure every level of the model named in ``args`` and return the JSON document."""
    from ..throttle import count_level_costs

    torch.set_num_threads(args.threads)
    machine = _machine_load(args.threads)
    if machine["oversubscribed"]:
        print(
            f"warning: load average {machine['load_average_1min']} on {machine['cores']} cores: "
            f"{args.threads}-thread timings will be dominated by preemption; --threads 1 gives fair ratios"
        )
    torch.set_flush_denormal(True)
    if args.model.endswith(".pt"):
        setup = _model_file_setup  # model files, converted ones included
    else:
        setup = _detector_setup if args.model == "detector" else _gesture_setup
    model, example, reference, reference_name, accuracy, metric = setup(args)
    model.eval()
    costs = count_level_costs(model, example[:1] if example.shape[0] > 1 else example)
    repeats = args.repeats or (15 if args.quick else 60)
    engines, fallback_reason = _engines(model, args)
    backend = "onnxruntime" if "onnxruntime" in engines else "torch"
    main_model = engines[backend]
    others = {name: m for name, m in engines.items() if name != backend}
    with torch.no_grad():
        timing = measure_latency(main_model, example, repeats=repeats, reference=reference, others=others)
    # frames of the CPU-per-frame-at-15-Hz measurement (None: not measured, --quick's default)
    cpu_frames = (args.cpu_frames or 30) if (not args.quick or args.cpu_frames) else None
    spinning = {}
    if backend == "onnxruntime":
        spinning = _spinning_block(model, args, main_model, example, repeats, costs, cpu_frames)
    switch_us = measure_switch_us(main_model)
    accuracies = accuracy()
    full_macs, full_ms = costs[-1].macs, timing["median_ms"][-1]
    levels = []
    full_cpu_ms = timing["cpu_median_ms"][-1]
    for cost, median, p90, cpu, acc in zip(
        costs, timing["median_ms"], timing["p90_ms"], timing["cpu_median_ms"], accuracies
    ):
        mac_ratio = cost.macs / full_macs
        speedup = full_ms / median
        cpu_speedup = full_cpu_ms / cpu if cpu > 0 else float("nan")
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
                "cpu_ms_median": round(cpu, 3),
                "cpu_efficiency": round(cpu_speedup * mac_ratio, 3),
                "accuracy": round(acc, 4),
            }
        )
    card = getattr(model, "card", {}) or {}
    profile_repeats = max(5, repeats // 2)
    profile = _profiles(engines, model, example, profile_repeats)
    if args.model == "detector":
        profile["pre_post_ms"] = _pre_post_ms(model, profile_repeats)
        whole_frames = _frame_latency(engines, model, costs, profile_repeats)
    comparison = {
        name: {
            "latency_ms_median": [round(v, 3) for v in result["median_ms"]],
            "latency_ms_p90": [round(v, 3) for v in result["p90_ms"]],
            "cpu_ms_median": [round(v, 3) for v in result["cpu_median_ms"]],
        }
        for name, result in timing.get("others", {}).items()
    }
    if spinning:
        comparison["onnxruntime_spinning"] = spinning["comparison"]
    own_ms = [row["latency_ms_median"] for row in levels]
    torch_ms = comparison.get("torch", {}).get("latency_ms_median") or own_ms
    lowest_over_full = levels[0]["latency_ms_median"] / levels[-1]["latency_ms_median"]
    summary = {
        "lowest_over_full": round(lowest_over_full, 3),
        "min_efficiency": min(row["efficiency"] for row in levels),
        "full_over_torch_full": round(levels[-1]["latency_ms_median"] / torch_ms[-1], 3),
        "switch_us_median": round(switch_us, 3),
        # The same ratios from process CPU time (robust when other processes load the machine).
        "cpu_lowest_over_full": round(levels[0]["cpu_ms_median"] / max(levels[-1]["cpu_ms_median"], 1e-9), 3),
        "cpu_min_efficiency": min(row["cpu_efficiency"] for row in levels),
    }
    summary["targets_met"] = {
        "lowest_over_full<=0.26": summary["lowest_over_full"] <= 0.26,
        "efficiency>=0.8_every_level": summary["min_efficiency"] >= 0.8,
        "full_no_slower_than_torch": summary["full_over_torch_full"] <= 1.0,
        "switch<=40us": summary["switch_us_median"] <= 40.0,
    }
    result = {
        "model": args.model,
        "backend": backend,
        "engine": main_model.engine_info(),
        "threads": args.threads,
        "machine": {**machine, "load_average_1min_after": round(os.getloadavg()[0], 2)},
        "repeats": repeats,
        "levels": levels,
        "accuracy_metric": metric,
        "accuracy_backend": "torch (onnxruntime outputs equal torch's within 1e-4 at every level: "
        "test/unit/test_engines.py)",
        "baseline_accuracy": card.get("baseline_accuracy"),
        "switch_us_median": round(switch_us, 3),
        "reference": {"name": reference_name, "latency_ms_median": round(timing["reference_median_ms"], 3)},
        "comparison": comparison,
        "profile": profile,
        "summary": summary,
    }
    if args.model == "detector":
        if "frame" in spinning:
            whole_frames["onnxruntime_spinning"] = {**spinning["frame"], "timed": "in its own block"}
        result["frame"] = whole_frames
        summary["frame_cpu_min_efficiency"] = min(whole_frames[backend]["cpu_efficiency"])
    if fallback_reason:
        result["fallback_reason"] = fallback_reason
    from ..models.gesture import ThrottleableGestureNet

    # per-frame (continual) vs clip cost, full and lowest level (--model gesture or a gesture file)
    if isinstance(model, ThrottleableGestureNet):
        from ..models.gesture_recognizer import supports_streaming
        from ..models.gesture_streaming import measure_streaming

        if backend == "onnxruntime" and supports_streaming(model):
            # the onnxruntime stream step vs onnxruntime clips, torch's stream and clips beside them
            from .streaming_bench import measure_streaming_backends

            result["streaming"] = measure_streaming_backends(model, main_model, repeats=repeats)
        else:
            result["streaming"] = measure_streaming(model, repeats=repeats)
    if cpu_frames is not None:
        extremes = (0, model.num_levels - 1)
        result["cpu_ms_per_frame_at_15hz"] = _cpu_per_frame(engines, example, extremes, cpu_frames)
        if "cpu_ms_per_frame" in spinning:
            result["cpu_ms_per_frame_at_15hz"]["onnxruntime_spinning"] = spinning["cpu_ms_per_frame"]
    return result


def markdown_table(result: dict) -> str:
    """The per-level results as a markdown table."""
    lines = [
        f"### {result['model']} on {result.get('backend', 'torch')}: {result['threads']} threads, "
        f"accuracy = {result['accuracy_metric']}",
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
    for name, other in result.get("comparison", {}).items():
        times = ", ".join(f"{v:.2f}" for v in other["latency_ms_median"])
        where = "own block (with onnxruntime)" if "timed_with" in other else "same rounds"
        lines.append(f"{where}, {name}: median ms per level {times}")
    for name, levels in result.get("profile", {}).items():
        if name == "pre_post_ms":
            lines.append(f"pre/post-processing ms: {levels}")
            continue
        for which, entry in levels.items():
            top = ", ".join(f"{layer} {ms:.2f}" for layer, ms in list(entry["layers_ms"].items())[:4])
            lines.append(
                f"profile {name} {which} (level {entry['level']}, {entry['forward_ms_median']} ms): {top}"
            )
            if "ops_ms" in entry:
                ops = ", ".join(f"{op} {ms:.2f}" for op, ms in list(entry["ops_ms"].items())[:6])
                lines.append(f"  by op type: {ops}")
    for name, entry in result.get("frame", {}).items():
        times = ", ".join(f"{v:.2f}" for v in entry["cpu_ms_median"])
        lines.append(f"whole frame (predict), {name}: CPU ms per level {times}")
    streaming = result.get("streaming", {})
    for name, section in (("", streaming), ("torch ", streaming.get("torch", {}))):
        for level, row in section.get("levels", {}).items():
            lines.append(
                f"streaming {name or streaming.get('backend', 'torch') + ' '}level {level}: per frame "
                f"{row['per_frame_ms_median']:.2f} ms vs clip {row['clip_ms_median']:.2f} ms, ratio "
                f"{row['ratio']:.3f} (CPU {row['cpu_ratio']}, MACs {row['mac_ratio']})"
            )
    if "summary" in result:
        lines.append(f"summary: {result['summary']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """`tnn-bench throttle --model {detector,gesture} --backend {torch,onnxruntime} --json PATH [--quick]`."""
    import argparse
    import json
    from pathlib import Path

    parser = argparse.ArgumentParser(prog="tnn-bench throttle", description=__doc__)
    parser.add_argument(
        "--model",
        default="detector",
        help="detector, gesture, or a model file FILE.pt (e.g. from tnn-train convert)",
    )
    parser.add_argument(
        "--backend",
        choices=("torch", "onnxruntime"),
        default="torch",
        help="backend of the levels table; torch is always timed beside it",
    )
    parser.add_argument(
        "--cache-dir",
        default=None,
        help="where the onnxruntime graphs are cached (default: beside the model file)",
    )
    parser.add_argument(
        "--cpu-frames",
        type=int,
        default=None,
        help="frames for the CPU-per-frame at 15 Hz measurement (default 30; off in --quick)",
    )
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
    if args.model not in ("detector", "gesture") and not args.model.endswith(".pt"):
        parser.error(f"--model must be detector, gesture or a .pt model file, got {args.model!r}")
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
