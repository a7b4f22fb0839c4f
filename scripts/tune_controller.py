r"""Tune the learned controller's reward weights on the *training* seed's traces (replay suite).

For each weight setting: train with ``tnn-train controller`` (same traces, same flags otherwise),
then run only the learned policy on every suite mission built from the tuning traces, and print the
mean utility per setting (and per mission). Held-out seeds are never touched here: evaluate the
chosen file afterwards with ``tnn-bench control --seed N --learned-model FILE``.

    python scripts/tune_controller.py --traces /tmp/t/idle_seed1.npz /tmp/t/contention_seed1.npz \\
        --out /tmp/tune --grid energy=0,0.05 battery=0.25,1 thermal=0.25,1 miss=0,0.5
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

FLAGS = {
    "miss": "--miss-penalty",
    "energy": "--energy-weight",
    "battery": "--battery-weight",
    "thermal": "--thermal-weight",
    "alpha": "--alpha",
}


def parse_grid(items: list[str]) -> dict[str, list[str]]:
    grid = {}
    for item in items:
        name, _, values = item.partition("=")
        if name not in FLAGS or not values:
            raise SystemExit(f"--grid: expected NAME=v1,v2 with NAME in {sorted(FLAGS)}, got {item!r}")
        grid[name] = values.split(",")
    return grid


def evaluate(model: Path, idle, loaded, missions, profile) -> dict[str, float]:
    from tnn_ros.bench.control_bench import simulate

    return {
        bench.name: simulate(bench, idle, loaded, "learned", profile, str(model))[0]["utility"]
        for bench in missions
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--traces", nargs=2, required=True, metavar=("IDLE", "CONTENTION"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--grid", nargs="*", default=[], help="NAME=v1,v2 ... (miss, energy, battery, thermal, alpha)"
    )
    parser.add_argument("--contexts-per-frame", type=int, default=8)
    parser.add_argument(
        "--baselines", default="", help="also run these policies once, e.g. static_L2,static_L3,auto"
    )
    args = parser.parse_args(argv)

    from tnn_ros.bench.control_bench import build_missions, simulate
    from tnn_ros.control.latency import LatencyProfile
    from tnn_ros.eval.traces import Trace
    from tnn_ros.paths import find_package_file
    from tnn_ros.train.controller import main as train

    idle, loaded = Trace.load(args.traces[0]), Trace.load(args.traces[1])
    missions = build_missions(idle)
    profile = LatencyProfile.from_card(find_package_file("models", "detector.card.json"))
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for policy in [p for p in args.baselines.split(",") if p]:
        per = {b.name: simulate(b, idle, loaded, policy, profile)[0]["utility"] for b in missions}
        results.append({"setting": policy, "mean": float(np.mean(list(per.values()))), "missions": per})
        print(
            f"{policy:40s} mean {results[-1]['mean']:.4f}  " + " ".join(f"{v:.3f}" for v in per.values()),
            flush=True,
        )
    grid = parse_grid(args.grid)
    names = list(grid)
    for values in itertools.product(*(grid[n] for n in names)) if names else [()]:
        setting = dict(zip(names, values))
        label = ",".join(f"{k}={v}" for k, v in setting.items()) or "defaults"
        model = args.out / (label.replace("=", "").replace(",", "_") + ".npz")
        flags = [x for k, v in setting.items() for x in (FLAGS[k], v)]
        started = time.monotonic()
        with open(args.out / "train.log", "a") as log:
            stdout, sys.stdout = sys.stdout, log
            try:
                code = train(
                    [
                        "--traces",
                        *args.traces,
                        "-o",
                        str(model),
                        "--contexts-per-frame",
                        str(args.contexts_per_frame),
                        *flags,
                    ]
                )
            finally:
                sys.stdout = stdout
        if code:
            print(f"{label}: training failed ({code})")
            continue
        per = evaluate(model, idle, loaded, missions, profile)
        results.append(
            {
                "setting": label,
                "model": str(model),
                "mean": float(np.mean(list(per.values()))),
                "missions": per,
            }
        )
        print(
            f"{label:40s} mean {results[-1]['mean']:.4f}  "
            + " ".join(f"{v:.3f}" for v in per.values())
            + f"  ({time.monotonic() - started:.0f} s)",
            flush=True,
        )
    (args.out / "tune.json").write_text(json.dumps(results, indent=1) + "\n")
    best = max((r for r in results if "model" in r), key=lambda r: r["mean"], default=None)
    if best:
        print(f"best: {best['setting']} mean {best['mean']:.4f} ({best['model']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
