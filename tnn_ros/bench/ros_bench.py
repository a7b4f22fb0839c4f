"""`tnn-bench ros`: what ROS adds on top of the model, and how fast a setpoint takes effect.

In one run, against a perception node started in ANOTHER process (as on a robot):

* for the full and the lowest level, the end-to-end latency (image published here ->
  ``detections/json`` received here) next to the model latency the node measured for the very same
  frame (matched by ``stamp_ns``); their difference is the ROS overhead (serialization, DDS over
  loopback, decode, JSON, scheduling). Frames go one at a time so nothing queues.
* setpoint reaction: publish a new ``utilization_setpoint``, then frames one at a time, and count the
  frames processed before ``detections/json`` reports the new utilization (0 = the first frame after
  the setpoint arrived already ran at it).

Prints a markdown table and writes JSON. DDS stays on loopback in a private domain.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

LEVELS = (("full", 1.0), ("lowest", 0.0))


def _bench_environment() -> dict:
    """Loopback-only discovery and a private domain id, for this process and the node it starts."""
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.pop("ROS_STATIC_PEERS", None)
    os.environ.setdefault("ROS_DOMAIN_ID", str(101 + os.getpid() % 100))
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def summarize(values: list[float]) -> dict[str, float]:
    """Median, p90, mean, min, max and count of a list of milliseconds."""
    if not values:
        return {
            "n": 0,
            "median": float("nan"),
            "p90": float("nan"),
            "mean": float("nan"),
            "min": float("nan"),
            "max": float("nan"),
        }
    return {
        "n": len(values),
        "median": statistics.median(values),
        "p90": _percentile(values, 90),
        "mean": statistics.fmean(values),
        "min": min(values),
        "max": max(values),
    }


def _test_image(width: int, height: int, seed: int) -> np.ndarray:
    """A synthetic scene of the simulated camera (objects the detector knows)."""
    from tnn_ros.sim.stream import SimFrameSource

    return SimFrameSource(width, height, seed=seed).next_frame().rgb


class _BenchClient:
    """Publishes images and setpoints to the node under test and waits for its answers."""

    def __init__(self, namespace: str) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image
        from std_msgs.msg import Float32, String

        self._rclpy = rclpy
        self.Image, self.Float32 = Image, Float32
        self.context = rclpy.context.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("tnn_ros_bench", namespace=namespace, context=self.context)
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.image_pub = self.node.create_publisher(Image, "image", reliable)
        self.setpoint_pub = self.node.create_publisher(Float32, "utilization_setpoint", reliable)
        self._answers: dict[int, tuple[float, dict]] = {}
        self._cond = threading.Condition()
        self.node.create_subscription(String, "detections/json", self._on_detections, reliable)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()
        self._stamp = 1_000_000_000

    def _spin(self) -> None:
        while not self._stop.is_set() and self.context.ok():
            self.executor.spin_once(timeout_sec=0.05)

    def _on_detections(self, msg) -> None:
        received = time.perf_counter()
        payload = json.loads(msg.data)
        with self._cond:
            self._answers[payload["stamp_ns"]] = (received, payload)
            self._cond.notify_all()

    def wait_for_node(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if (
                self.image_pub.get_subscription_count() > 0
                and self.setpoint_pub.get_subscription_count() > 0
                and self.node.count_publishers(f"{self.node.get_namespace()}/detections/json") > 0
            ):
                return True
            time.sleep(0.1)
        return False

    def send_setpoint(self, utilization: float) -> None:
        self.setpoint_pub.publish(self.Float32(data=float(utilization)))

    def round_trip(
        self, height: int, width: int, step: int, data: bytes, timeout_s: float
    ) -> tuple[float, dict] | None:
        """Publish one frame, wait for its ``detections/json``; (end-to-end ms, payload) or None."""
        self._stamp += 1_000_000
        stamp_ns = self._stamp
        msg = self.Image(height=height, width=width, encoding="rgb8", step=step)
        msg.data = data
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
        msg.header.frame_id = "bench"
        with self._cond:
            sent = time.perf_counter()
            self.image_pub.publish(msg)
            if not self._cond.wait_for(lambda: stamp_ns in self._answers, timeout=timeout_s):
                return None
            received, payload = self._answers.pop(stamp_ns)
        return (received - sent) * 1e3, payload

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        self._rclpy.try_shutdown(context=self.context)


def _start_node(namespace: str, env: dict, args: argparse.Namespace) -> subprocess.Popen:
    params = {
        "mode": "auto",
        "stale_timeout_s": 600.0,
        "safe_utilization": 1.0,
        "num_threads": args.num_threads,
        "gesture.enabled": not args.no_gesture,
        "image_reliability": "reliable",
    }
    if args.detector_model:
        params["detector_model"] = args.detector_model
    if args.gesture_model:
        params["gesture_model"] = args.gesture_model
    command = [
        sys.executable,
        "-m",
        "tnn_ros.nodes.perception",
        "--ros-args",
        "-r",
        f"__ns:={namespace}",
        "--log-level",
        "warn",
    ]
    for name, value in params.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        command += ["-p", f"{name}:={text}"]
    return subprocess.Popen(command, env=env)


def _model_only_ms(args: argparse.Namespace, rgb: np.ndarray, frames: int) -> dict[str, dict]:
    """In-process model latency per level, run before the node starts (no CPU contention)."""
    from tnn_ros.perception.loading import load_models, torch_threads

    torch_threads(args.num_threads)
    pipeline = load_models(
        args.detector_model, args.gesture_model, stride=4, with_gesture=not args.no_gesture
    )  # warmed up by the loaders
    out = {}

    def measure() -> None:
        torch_threads(args.num_threads)  # per thread once set: set it where the model runs
        for name, utilization in LEVELS:
            for _ in range(5):  # settle, as the node's measurement does
                pipeline.process(rgb, utilization, 0.3)
            times = [pipeline.process(rgb, utilization, 0.3).latency_ms for _ in range(frames)]
            out[name] = summarize(times)

    # In a worker thread like the node's: on a loaded machine torch's OpenMP pool behaves differently
    # when driven from the main thread, and the comparison must be like for like.
    worker = threading.Thread(target=measure, name="model_only")
    worker.start()
    worker.join()
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the whole benchmark; returns the JSON-able result."""
    env = _bench_environment()
    frames = 20 if args.quick else args.frames
    trials = 4 if args.quick else args.setpoint_trials
    rgb = _test_image(args.width, args.height, args.seed)
    step, data = args.width * 3, rgb.tobytes()
    print(f"[ros bench] model-only latency in this process ({frames} frames per level)...", flush=True)
    model_only = _model_only_ms(args, rgb, frames)

    namespace = f"/tnn_bench_{os.getpid()}"
    node = _start_node(namespace, env, args)
    client = _BenchClient(namespace)
    result: dict[str, Any] = {
        "benchmark": "ros",
        "image_size": [args.width, args.height],
        "encoding": "rgb8",
        "num_threads": args.num_threads,
        "gesture_enabled": not args.no_gesture,
        "domain_id": int(env["ROS_DOMAIN_ID"]),
        "levels": {},
        "setpoint_reaction": {},
    }
    try:
        print("[ros bench] starting the perception node in another process...", flush=True)
        if not client.wait_for_node(args.startup_timeout):
            raise RuntimeError(f"perception node did not come up in {args.startup_timeout}s")
        for name, utilization in LEVELS:
            client.send_setpoint(utilization)
            time.sleep(0.05)
            for _ in range(5):  # settle: the level switch and the first frames are not measured
                client.round_trip(args.height, args.width, step, data, args.frame_timeout)
            end_to_end, in_node, overhead, levels_seen = [], [], [], set()
            for index in range(frames):
                answer = client.round_trip(args.height, args.width, step, data, args.frame_timeout)
                if answer is None:
                    continue
                e2e_ms, payload = answer
                end_to_end.append(e2e_ms)
                in_node.append(payload["latency_ms"])
                overhead.append(e2e_ms - payload["latency_ms"])
                levels_seen.add(payload["level"])
                if (index + 1) % 10 == 0:
                    print(f"[ros bench] {name}: {index + 1}/{frames} frames", flush=True)
            result["levels"][name] = {
                "utilization_requested": utilization,
                "levels_seen": sorted(levels_seen),
                "frames_lost": frames - len(end_to_end),
                "model_only_ms": model_only[name],
                "model_in_node_ms": summarize(in_node),
                "end_to_end_ms": summarize(end_to_end),
                "ros_overhead_ms": summarize(overhead),
            }
        result["setpoint_reaction"] = _setpoint_reaction(client, args, step, data, trials)
    finally:
        client.close()
        node.terminate()
        try:
            node.wait(timeout=10)
        except subprocess.TimeoutExpired:
            node.kill()
    overhead_median = result["levels"]["full"]["ros_overhead_ms"]["median"]
    result["targets"] = {
        "overhead_median_ms_max": 3.0,
        "overhead_met": bool(max(lv["ros_overhead_ms"]["median"] for lv in result["levels"].values()) <= 3.0),
        "setpoint_first_frame_met": result["setpoint_reaction"]["max_stale_frames"] == 0,
        "overhead_full_median_ms": overhead_median,
    }
    return result


def _setpoint_reaction(
    client: _BenchClient, args: argparse.Namespace, step: int, data: bytes, trials: int
) -> dict[str, Any]:
    """Frames that still ran at the old utilization after a new setpoint was published."""
    targets = [0.0 if trial % 2 == 0 else 1.0 for trial in range(trials)]
    stale_counts = []
    client.send_setpoint(1.0)
    time.sleep(0.05)
    client.round_trip(args.height, args.width, step, data, args.frame_timeout)
    for target in targets:
        client.send_setpoint(target)
        # Give the setpoint time to arrive: the target is "applied on the first frame processed
        # after it arrives", and two topics have no ordering between them.
        time.sleep(args.setpoint_gap_ms / 1e3)
        stale = 0
        for _ in range(20):
            answer = client.round_trip(args.height, args.width, step, data, args.frame_timeout)
            if answer is None:
                continue
            expected = 1.0 if target == 1.0 else None
            applied = answer[1]["utilization"]
            reached = applied == expected if expected is not None else applied < 1.0
            if reached:
                break
            stale += 1
        stale_counts.append(stale)
    return {
        "trials": trials,
        "gap_ms": args.setpoint_gap_ms,
        "stale_frames": stale_counts,
        "max_stale_frames": max(stale_counts) if stale_counts else -1,
    }


def markdown(result: dict[str, Any]) -> str:
    """The result as a markdown table."""
    width, height = result["image_size"]
    lines = [
        f"ROS benchmark, {width}x{height} rgb8, {result['num_threads']} torch threads, gesture "
        f"{'on' if result['gesture_enabled'] else 'off'} (medians, p90 in brackets, ms)",
        "",
        "| level | model only (bench process) | model in node | end to end | ROS overhead |",
        "|---|---|---|---|---|",
    ]
    for name, level in result["levels"].items():
        cells = [
            f"{level[key]['median']:.2f} ({level[key]['p90']:.2f})"
            for key in ("model_only_ms", "model_in_node_ms", "end_to_end_ms", "ros_overhead_ms")
        ]
        lines.append(f"| {name} (levels {level['levels_seen']}) | " + " | ".join(cells) + " |")
    reaction = result["setpoint_reaction"]
    lines += [
        "",
        f"Setpoint reaction: frames at the old utilization after a new setpoint "
        f"({reaction['gap_ms']} ms gap): {reaction['stale_frames']} "
        f"(max {reaction['max_stale_frames']}; target 0)",
        f"Targets: overhead median <= 3 ms: {result['targets']['overhead_met']}; "
        f"setpoint on the first frame: {result['targets']['setpoint_first_frame_met']}",
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of `tnn-bench ros`."""
    parser = argparse.ArgumentParser(prog="tnn-bench ros", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the result here")
    parser.add_argument("--quick", action="store_true", help="20 frames per level, 4 setpoint trials")
    parser.add_argument("--frames", type=int, default=100, help="measured frames per level")
    parser.add_argument("--setpoint-trials", type=int, default=10)
    parser.add_argument(
        "--setpoint-gap-ms",
        type=float,
        default=5.0,
        help="wait between publishing a setpoint and the next frame",
    )
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-threads", type=int, default=2)
    parser.add_argument("--no-gesture", action="store_true", help="detector only")
    parser.add_argument("--detector-model", default="", help="default: the shipped model")
    parser.add_argument("--gesture-model", default="", help="default: the shipped model")
    parser.add_argument("--startup-timeout", type=float, default=120.0)
    parser.add_argument("--frame-timeout", type=float, default=5.0)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of `tnn-bench ros`; returns the process exit code."""
    args = build_parser().parse_args(argv)
    if args.frames < 1 or args.setpoint_trials < 1 or args.width < 1 or args.height < 1:
        print("tnn-bench ros: --frames, --setpoint-trials, --width, --height must be >= 1", file=sys.stderr)
        return 2
    result = run(args)
    print(markdown(result))
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
        print(f"[ros bench] wrote {args.json}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
