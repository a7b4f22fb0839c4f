"""``tnn-bag``: record, play and inspect rosbag2 bags without a ROS install (rclpy + rosbags).

Examples::

    tnn-bag record -o run1 --storage mcap /tnn/image /tnn/detections/json
    tnn-bag record -o run1 --all --duration 60
    tnn-bag play run1 --rate 2 --topics /tnn/image
    tnn-bag info run1
    tnn-bag play someone_elses_recording.mcap      # a single storage file, no metadata.yaml needed

Errors (missing or damaged bag, unknown storage, bad arguments) print one line and exit with 1.
Ctrl-C (SIGINT) or SIGTERM stops recording/playback cleanly; the bag written so far stays valid.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from tnn_ros.bag.common import STORAGES, BagError, format_bytes, open_reader, storage_of


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0.0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0.0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Argument parser of ``tnn-bag`` (sub-commands record, play, info)."""
    parser = argparse.ArgumentParser(prog="tnn-bag", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    rec = commands.add_parser("record", help="record topics into a new bag")
    rec.add_argument(
        "topics", nargs="*", help="topics to record (absolute or relative to the node namespace)"
    )
    rec.add_argument("-o", "--output", required=True, help="bag directory to create (must not exist)")
    rec.add_argument(
        "-s", "--storage", choices=STORAGES, default="mcap", help="storage plugin (default mcap)"
    )
    rec.add_argument(
        "-a", "--all", action="store_true", help="record every topic in the graph (not hidden ones)"
    )
    rec.add_argument("-x", "--exclude", default=None, help="regular expression of topics not to record")
    rec.add_argument(
        "-d", "--duration", type=_positive_float, default=None, help="stop after this many seconds"
    )
    rec.add_argument("--quiet", action="store_true", help="no progress line")

    ply = commands.add_parser("play", help="publish a bag's messages at their recorded timing")
    ply.add_argument("bag", help="bag directory, or a single .mcap / .db3 file")
    ply.add_argument("-r", "--rate", type=_positive_float, default=1.0, help="speed factor (default 1.0)")
    ply.add_argument("-l", "--loop", action="store_true", help="play again from the start when done")
    ply.add_argument("--topics", nargs="+", default=None, help="play only these topics")
    ply.add_argument(
        "--start-offset", type=_non_negative_float, default=0.0, help="skip the first S seconds of the bag"
    )
    ply.add_argument(
        "--delay",
        type=_non_negative_float,
        default=0.5,
        help="seconds to wait after creating publishers so subscribers match (default 0.5)",
    )
    ply.add_argument(
        "--wait-for-subscribers",
        type=int,
        default=0,
        metavar="N",
        help="before playing, wait (up to 30 s) until every topic has N subscribers",
    )
    ply.add_argument("--remap", nargs="+", default=[], metavar="FROM:=TO", help="publish topic FROM as TO")
    ply.add_argument("--quiet", action="store_true", help="no progress line")

    inf = commands.add_parser("info", help="print a bag's topics, types and message counts")
    inf.add_argument("bag", help="bag directory, or a single .mcap / .db3 file")
    return parser


def _install_stop_handlers(stop_event: threading.Event) -> None:
    """Make SIGINT/SIGTERM only set ``stop_event``: the loops then close the bag, never mid-write."""

    def handler(signum: int, _frame: object) -> None:
        stop_event.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def _init_rclpy():
    """Initialise rclpy without its own signal handlers (ours close the bag first)."""
    import rclpy
    from rclpy.context import Context
    from rclpy.signals import SignalHandlerOptions

    context = Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    return context


def _parse_remaps(items: list[str]) -> dict[str, str]:
    remap = {}
    for item in items:
        source, sep, target = item.partition(":=")
        if not sep or not source or not target:
            raise BagError(f"bad remap {item!r}: expected FROM:=TO")
        remap[source] = target
    return remap


def info(bag: str | Path) -> str:
    """A short, human-readable description of a bag (like ``ros2 bag info``)."""
    reader = open_reader(bag)
    try:
        path = Path(bag)
        storage = storage_of(path)
        files = [path] if path.is_file() else [f for f in path.iterdir() if f.is_file()]
        size = sum(f.stat().st_size for f in files)
        lines = [
            f"bag:       {Path(bag)}",
            f"storage:   {storage}  ({format_bytes(size)})",
            f"duration:  {reader.duration / 1e9:.3f} s",
            f"messages:  {reader.message_count}",
            "topics:",
        ]
        for connection in sorted(reader.connections, key=lambda c: c.topic):
            lines.append(f"  {connection.topic}  [{connection.msgtype}]  {connection.msgcount} msgs")
        return "\n".join(lines)
    finally:
        reader.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``tnn-bag``; returns the process exit code."""
    args = build_parser().parse_args(argv)
    stop_event = threading.Event()
    try:
        if args.command == "info":
            print(info(args.bag))
            return 0
        if args.command == "record":
            from tnn_ros.bag.recorder import record

            if not args.topics and not args.all:
                raise BagError("nothing to record: name topics or use --all")
            if Path(args.output).exists():
                raise BagError(f"{args.output} exists already; choose a new output directory")
            _install_stop_handlers(stop_event)
            context = _init_rclpy()
            summary = record(
                args.output,
                args.topics,
                storage=args.storage,
                all_topics=args.all,
                exclude=args.exclude,
                duration=args.duration,
                context=context,
                stop_event=stop_event,
                progress=not args.quiet,
            )
            context.try_shutdown()
            print(
                f"wrote {summary.path} ({summary.storage}): {summary.messages} messages on "
                f"{len(summary.per_topic)} topics, {format_bytes(summary.bytes)}"
            )
            if summary.error:
                print(f"tnn-bag: error: {summary.error}; recording stopped, bag closed", file=sys.stderr)
                return 1
            return 0
        if args.command == "play":
            from tnn_ros.bag.player import play

            remap = _parse_remaps(args.remap)
            open_reader(args.bag).close()  # fail with the one-line reason before starting ROS
            _install_stop_handlers(stop_event)
            context = _init_rclpy()
            summary = play(
                args.bag,
                rate=args.rate,
                loop=args.loop,
                topics=args.topics,
                start_offset=args.start_offset,
                delay=args.delay,
                context=context,
                stop_event=stop_event,
                progress=not args.quiet,
                remap=remap,
                wait_for_subscribers=args.wait_for_subscribers,
            )
            context.try_shutdown()
            for topic, reason in summary.skipped_topics.items():
                print(f"skipped {topic}: {reason}", file=sys.stderr)
            return 0
    except BagError as exc:
        print(f"tnn-bag: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - a one-line reason instead of a traceback wall
        if os.environ.get("TNN_DEBUG"):
            raise
        print(f"tnn-bag: error: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
