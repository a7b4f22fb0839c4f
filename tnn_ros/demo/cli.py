"""``tnn-demo`` (what ``make demo`` runs): the scripted mission end to end, then a report.

    python -m tnn_ros.demo.cli [--duration 60] [--output demo_output] [--no-baseline]
    python -m tnn_ros.demo.cli analyze demo_output/bag_auto [--baseline demo_output/bag_static_full]

The first form runs the simulated camera, perception, resource monitor (sim backend + mission) and
controller with the bag recorder, once throttled (strategy auto, with the mission's manual-override
windows) and once at static full utilization, then writes demo_output/{summary.json,timeline.png}
and the bags. ``analyze`` recomputes the report from any recorded run.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Parser for both forms (``run`` is the default sub-command)."""
    parser = argparse.ArgumentParser(prog="tnn-demo", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command")
    run = commands.add_parser("run", help="run the demo (default)")
    for target in (parser, run):
        target.add_argument(
            "--duration",
            type=_positive,
            default=60.0,
            help="seconds of mission per run (the mission is rescaled; default 60)",
        )
        target.add_argument(
            "--output",
            "-o",
            type=Path,
            default=Path("demo_output"),
            help="output folder (default demo_output)",
        )
        target.add_argument(
            "--mission",
            default="mission_demo.yaml",
            help="mission file (path or a name in config/; default mission_demo.yaml)",
        )
        target.add_argument("--namespace", default="/tnn", help="ROS namespace of the nodes (default /tnn)")
        target.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="bag storage")
        target.add_argument(
            "--no-baseline",
            action="store_true",
            help="skip the static full-utilization run (halves the time)",
        )
        target.add_argument(
            "--baseline-images",
            action="store_true",
            help="also record camera frames in the baseline run's bag",
        )
        target.add_argument("--params-file", default=None, help="ROS parameter YAML passed to bringup")
        target.add_argument(
            "--mission-start",
            choices=("first_frame", "immediate"),
            default="first_frame",
            help="start the mission clock at perception's first measured frame (default) or at the "
            "resource monitor's first tick (immediate: counts DDS start-up against the run)",
        )
        target.add_argument(
            "--startup-timeout",
            type=_positive,
            default=180.0,
            help="seconds to wait for the nodes to come up (default 180)",
        )

    analyze = commands.add_parser("analyze", help="recompute summary.json and timeline.png from bags")
    analyze.add_argument("bag", help="bag of a throttled run")
    analyze.add_argument("--baseline", default=None, help="bag of a static full-utilization run")
    analyze.add_argument("--mission", default=None, help="mission file, for the phases")
    analyze.add_argument("--duration", type=_positive, default=None, help="duration the mission ran with")
    analyze.add_argument("--namespace", default=None, help="namespace of the run's topics (default: any)")
    analyze.add_argument("--output", "-o", type=Path, default=None, help="output folder (default: the bag's)")
    return parser


def _analyze(args: argparse.Namespace) -> int:
    from tnn_ros.demo.report import print_summary, write_report

    mission = None
    if args.mission:
        from tnn_ros.resources.mission import Mission, find_mission_file

        mission = Mission.load(find_mission_file(args.mission), duration_s=args.duration)
    output = args.output or Path(args.bag).resolve().parent
    summary = write_report(
        args.bag, output, mission=mission, baseline_bag=args.baseline, namespace=args.namespace
    )
    print_summary(summary, sys.stdout)
    print(f"wrote {summary['files']['summary']} and {summary['files']['timeline']}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from tnn_ros.demo.report import print_summary
    from tnn_ros.demo.runner import DemoOptions, DemoRunner

    stop_event = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        if stop_event.is_set():  # second Ctrl-C: leave now; atexit kills the children
            raise KeyboardInterrupt
        print("\nstopping (Ctrl-C again to abort at once) ...", file=sys.stderr, flush=True)
        stop_event.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    options = DemoOptions(
        duration_s=args.duration,
        output=args.output,
        mission=args.mission,
        namespace=args.namespace,
        storage=args.storage,
        baseline=not args.no_baseline,
        baseline_images=args.baseline_images,
        params_file=args.params_file,
        mission_start=args.mission_start,
        startup_timeout_s=args.startup_timeout,
    )
    summary = DemoRunner(options, stop_event=stop_event).run()
    print()
    print_summary(summary, sys.stdout)
    output = Path(args.output)
    print(f"\nreport:   {summary['files']['summary']}\ntimeline: {summary['files']['timeline']}")
    for name in sorted(p.name for p in output.glob("bag_*")):
        print(f"bag:      {output / name}   (replay: tnn-bag play {output / name})")
    print(f"logs:     {output / 'logs'}")
    return 0 if all(summary.get("runs_completed", {}).values()) else 3


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``tnn-demo``; returns the exit code (0 ok, 1 error, 3 interrupted/partial)."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "analyze":
            return _analyze(args)
        return _run(args)
    except KeyboardInterrupt:
        print("tnn-demo: aborted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one readable reason; TNN_DEBUG=1 shows the traceback
        if os.environ.get("TNN_DEBUG"):
            raise
        print(f"tnn-demo: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
