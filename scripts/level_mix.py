#!/usr/bin/env python3
r"""Which mix of detector levels gives a mission N x less measured CPU for the least mAP@0.5 loss.

Per-level CPU is the median measured ``cpu_ms`` per frame of each level in a throttled run's bag
(and of a static-full run's bag for the full level); per-level accuracy is a model card's mAP@0.5.
A mix's mAP is approximated by the frame-weighted mean of its levels' card mAP. The best mix at a
CPU budget is a linear program with one constraint, so its optimum uses at most two levels: all
pairs are tried.

    python scripts/level_mix.py --auto-bag demo_output/bag_auto \
        --full-bag demo_output/bag_static_full --card models/detector.card.json
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import math

import numpy as np

from tnn_ros.demo.analysis import load_run


def per_level_cpu(frames: list[dict]) -> dict[int, list[float]]:
    """Measured cpu_ms of each frame, grouped by the level that ran it (unknown costs left out)."""
    cpu = collections.defaultdict(list)
    for frame in frames:
        value = frame.get("cpu_ms")
        if isinstance(value, (int, float)) and math.isfinite(value) and isinstance(frame.get("level"), int):
            cpu[frame["level"]].append(float(value))
    return cpu


def best_mix(cost: dict[int, float], accuracy: dict[int, float], budget: float) -> tuple[float, dict]:
    """Highest frame-weighted accuracy of a level mix whose mean cost is <= budget: (accuracy, shares)."""
    best = (-1.0, {})
    for i, j in itertools.combinations_with_replacement(sorted(cost), 2):
        lo, hi = sorted((i, j), key=lambda lv: cost[lv])
        if cost[lo] > budget:
            continue
        if cost[hi] <= budget:
            share = 1.0 if accuracy[hi] >= accuracy[lo] else 0.0
        else:
            share = (budget - cost[lo]) / (cost[hi] - cost[lo])
        value = (1 - share) * accuracy[lo] + share * accuracy[hi]
        if value > best[0]:
            best = (value, {lo: 1 - share, hi: share} if lo != hi else {lo: 1.0})
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--auto-bag", required=True, help="bag of the throttled run")
    parser.add_argument("--full-bag", required=True, help="bag of the static full-level run")
    parser.add_argument("--card", nargs="+", default=["models/detector.card.json"])
    parser.add_argument("--factor", type=float, nargs="+", default=[2.0, 2.18], help="CPU saving factors")
    args = parser.parse_args()

    auto = load_run(args.auto_bag)
    cpu = per_level_cpu(auto.frames)
    full_cpu = per_level_cpu(load_run(args.full_bag).frames)
    full_level = max(full_cpu)
    full = float(np.median(full_cpu[full_level]))
    cost = {lv: float(np.median(values)) for lv, values in cpu.items()}
    frames = sum(len(v) for v in cpu.values())
    print(f"static full (L{full_level}): median cpu_ms {full:.2f} over {len(full_cpu[full_level])} frames")
    print("level  frames  share  cpu_ms(median)")
    for lv in sorted(cpu):
        print(f"L{lv}   {len(cpu[lv]):6d}  {len(cpu[lv]) / frames:.3f}  {cost[lv]:7.2f}")
    used_cost = sum(len(cpu[lv]) * cost[lv] for lv in cpu) / frames
    for card_file in args.card:
        with open(card_file) as handle:
            card = json.load(handle)
        accuracy = {row["level"]: row["accuracy"] for row in card["levels"]}
        top = accuracy[full_level]
        print(f"\n{card_file}: full-level mAP@0.5 {top:.4f}")
        used = sum(len(cpu[lv]) * accuracy[lv] for lv in cpu) / frames
        print(
            f"  the run's own mix: {used_cost:.2f} ms/frame ({full / used_cost:.2f}x less CPU), "
            f"card mAP {used:.4f} ({100 * (used - top):+.2f} points)"
        )
        for factor in args.factor:
            value, shares = best_mix(cost, accuracy, full / factor)
            mix = " + ".join(f"{share:.3f} x L{lv}" for lv, share in sorted(shares.items()))
            print(
                f"  best mix for {factor:g}x less CPU (<= {full / factor:.2f} ms/frame): {mix}: "
                f"mAP {value:.4f} ({100 * (value - top):+.2f} points)"
            )


if __name__ == "__main__":
    main()
