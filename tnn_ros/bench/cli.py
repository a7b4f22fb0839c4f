"""`tnn-bench`: benchmarks that print ratios measured side by side in one run."""

import argparse
import importlib
import sys

# Each subcommand lives in its own module; imported lazily so `tnn-bench ros` does not load torch
# models it does not need and `tnn-bench throttle` does not need rclpy.
SUBCOMMANDS = {
    "throttle": ("tnn_ros.bench.throttle_bench", "latency, MACs and accuracy of every level of a model"),
    "ros": ("tnn_ros.bench.ros_bench", "ROS overhead and setpoint reaction, end to end over DDS"),
    "soak": ("tnn_ros.bench.soak", "whole stack for N minutes: RSS, fds, threads, latency drift, backlog"),
    "control": ("tnn_ros.bench.control_bench", "controller suite: missions x policies from measured traces"),
    "gesture-stream": (
        "tnn_ros.eval.gesture_stream",
        "live gesture accuracy on the simulated stream, frame and event level (no ROS)",
    ),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="tnn-bench", description=__doc__)
    parser.add_argument(
        "benchmark",
        choices=sorted(SUBCOMMANDS),
        help="; ".join(f"{name}: {text}" for name, (_, text) in sorted(SUBCOMMANDS.items())),
    )
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    args = parser.parse_args(argv[:1])
    module = importlib.import_module(SUBCOMMANDS[args.benchmark][0])
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
