#!/usr/bin/env python3
r"""Per-level mAP@0.5 of a detector on the sim camera's own scenes, one row per seed.

The model card's per-level accuracy comes from held-out training scenes; a robot's (or the demo
camera's) scenes can rank the levels differently. This renders the sim camera's frame stream
(``tnn_ros.sim.stream.SimFrameSource``, the frames and ground truth `sim_camera` publishes) for
each seed and scores every level with the demo's metric (``tnn_ros.demo.analysis.detection_map50``,
torchmetrics, detections above the perception node's default score threshold).

    python scripts/scene_map.py --seeds 0 1 --frames 450 [--model models/detector.pt]
"""

from __future__ import annotations

import argparse

import torch

from tnn_ros.demo.analysis import detection_map50
from tnn_ros.models import load_detector
from tnn_ros.sim.stream import SimFrameSource


def level_maps(detector, frames: list, score_threshold: float) -> list[float | None]:
    """mAP@0.5 of every level of ``detector`` on ``frames`` (StreamFrame objects)."""
    truth = {i: frame.ground_truth(i, "camera") for i, frame in enumerate(frames)}
    maps = []
    for level in range(detector.num_levels):
        detector.set_level(level)
        results = []
        with torch.inference_mode():
            for i, frame in enumerate(frames):
                detections = detector.predict(frame.rgb, score_threshold)
                results.append(
                    {
                        "stamp_ns": i,
                        "detections": [
                            {"box": list(d.box), "score": d.score, "class_id": d.class_id} for d in detections
                        ],
                    }
                )
        maps.append(detection_map50(results, truth))
    return maps


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help="detector file (default: the shipped one)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="sim camera seeds (demo: 0)")
    parser.add_argument("--frames", type=int, default=450, help="frames per seed (every --step-th rendered)")
    parser.add_argument("--step", type=int, default=2, help="render every n-th frame of the 15 fps stream")
    parser.add_argument("--size", type=int, nargs=2, default=[320, 240], metavar=("W", "H"))
    parser.add_argument("--score-threshold", type=float, default=0.3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    detector = load_detector(args.model).eval()
    for seed in args.seeds:
        source = SimFrameSource(args.size[0], args.size[1], seed=seed, fps=15.0, num_objects=4, gestures=True)
        frames = [source.frame_at(i * args.step) for i in range(args.frames)]
        maps = level_maps(detector, frames, args.score_threshold)
        cells = " ".join(
            f"L{level}:{m:.3f}" if m is not None else f"L{level}:-" for level, m in enumerate(maps)
        )
        print(f"seed {seed}: {cells}", flush=True)


if __name__ == "__main__":
    main()
