"""`tnn-bench soak`: the whole stack for N minutes at camera rate, watched for leaks, backlog and drift.

Starts sim_camera (``--fps``, default 30), perception (auto mode), resource_monitor (sim backend) and
controller (auto strategy) as separate processes over DDS on loopback, and moves the operating point
all the time: every ``--deadline-period-s`` the resource monitor's ``deadline_ms`` parameter alternates
between a loose and a tight deadline, so the controller keeps changing the level. The tight one is,
unless ``--deadlines-ms`` fixes both, ``--tight-fraction`` of the median latency measured before the
first switch: a fixed number (it was 40 ms) binds on a slow machine and not on a fast one. Every
``--sample-s`` it records, per node process, RSS, open file descriptors and threads (psutil), and for
the stack: end-to-end latency (image stamp -> ``detections/json`` received here) p50/p99 of that
window, frames published / answered / unanswered, the utilization applied and the backlog (how many
camera periods the newest answer lags behind the newest frame).

Summary (``--json PATH``): ``rss_growth_fraction`` (stack RSS, end vs. the end of ``--warmup-s``),
``p99_latency_drift_fraction`` (p99 of the last quarter vs. the first quarter after warm-up),
``dropped_frames`` (camera frames never answered; perception keeps only the newest frame, so a slower
model drops rather than queues), ``backlog_max`` (the largest lag of the newest answer behind the
newest frame at a sample instant, in periods of the camera's measured rate: about latency x fps while
nothing queues, growing without bound when something does), per-process growth of RSS / fds / threads,
perception's own drop counters from /diagnostics, plus a PNG of every series over time.
Targets for a 30-minute soak: RSS growth < 5 % after warm-up, no backlog, p99 within 20 %.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

NODES = ("sim_camera", "perception", "resource_monitor", "controller")
LOOSE_DEADLINE_MS = 200.0
FALLBACK_TIGHT_DEADLINE_MS = 40.0  # when no latency was measured before the first switch
TARGETS = {"rss_growth_fraction": 0.05, "p99_latency_drift_fraction": 0.20, "backlog_max": 2.0}


def _environment() -> dict[str, str]:
    """Loopback-only discovery and a private domain, for this process and the nodes it starts."""
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.pop("ROS_STATIC_PEERS", None)
    os.environ.setdefault("ROS_DOMAIN_ID", str(151 + os.getpid() % 80))
    return dict(os.environ, PYTHONUNBUFFERED="1")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tnn-bench soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="soak length (default 30)")
    parser.add_argument("--fps", type=float, default=30.0, help="camera rate (default 30)")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument(
        "--warmup-s",
        type=float,
        default=None,
        help="ignored for growth and drift (default: 20 %% of the run, 20..120 s)",
    )
    parser.add_argument("--sample-s", type=float, default=5.0, help="sampling window (default 5 s)")
    parser.add_argument(
        "--deadline-period-s",
        type=float,
        default=20.0,
        help="the deadline alternates loose/tight with this period (default 20 s)",
    )
    parser.add_argument(
        "--deadlines-ms",
        type=float,
        nargs=2,
        default=None,
        metavar=("LOOSE", "TIGHT"),
        help=f"loose and tight deadline (default {LOOSE_DEADLINE_MS:g} and --tight-fraction of the measured "
        "median latency)",
    )
    parser.add_argument(
        "--tight-fraction",
        type=float,
        default=0.6,
        help="without --deadlines-ms: the tight deadline as this fraction of the median end-to-end "
        "latency before the first switch (default 0.6, so the controller must go below that level)",
    )
    parser.add_argument("--namespace", default="soak")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="summary + series as JSON")
    parser.add_argument(
        "--png", type=Path, default=None, metavar="PATH", help="plot (default: next to --json, else soak.png)"
    )
    parser.add_argument("--log-dir", type=Path, default=None, help="node logs (default: a temp folder)")
    args = parser.parse_args(argv)
    if not args.minutes > 0:
        parser.error("--minutes must be > 0")
    if not 0 < args.fps <= 120:
        parser.error("--fps must be in (0, 120]")
    if not 0 < args.tight_fraction < 1:
        parser.error("--tight-fraction must be in (0, 1)")
    if args.deadlines_ms and not all(0 < value <= 60_000 for value in args.deadlines_ms):
        parser.error("--deadlines-ms must be in (0, 60000]")
    # tight None: measured before the first switch (tight_deadline_ms)
    args.loose_deadline_ms, args.tight_deadline_ms = args.deadlines_ms or (LOOSE_DEADLINE_MS, None)
    if args.warmup_s is None:
        args.warmup_s = min(120.0, max(20.0, 0.2 * args.minutes * 60.0))
    if args.warmup_s >= args.minutes * 60.0:
        parser.error("--warmup-s must be shorter than the run")
    return args


class StackObserver:
    """An rclpy node in this process: frames published, answers received, diagnostics, parameters."""

    def __init__(self, namespace: str) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image
        from std_msgs.msg import Float32, String

        self.context = rclpy.context.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("tnn_soak_observer", namespace=namespace, context=self.context)
        self.lock = threading.Lock()
        self.latencies_ms: list[float] = []
        self.published = 0
        self.answered = 0
        self.newest_frame_ns = 0
        self.newest_answer_ns = 0
        self.utilization = math.nan
        self.perception_diagnostics: dict[str, str] = {}
        # Reliable like the camera's publisher, so frames are counted even when this process lags.
        frames_qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE
        )
        self.node.create_subscription(Image, "image", self._on_image, frames_qos)
        self.node.create_subscription(String, "detections/json", self._on_detections, 50)
        self.node.create_subscription(Float32, "utilization_applied", self._on_utilization, 10)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, name="soak_observer", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.1)
            except Exception:  # context shut down while waiting: the soak is over
                return

    @staticmethod
    def _now_ns() -> int:
        return time.time_ns()

    def _on_image(self, msg) -> None:
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        with self.lock:
            self.published += 1
            self.newest_frame_ns = max(self.newest_frame_ns, stamp)

    def _on_detections(self, msg) -> None:
        received = self._now_ns()
        try:
            stamp = int(json.loads(msg.data)["stamp_ns"])
        except (ValueError, KeyError, TypeError):
            return
        with self.lock:
            self.answered += 1
            self.newest_answer_ns = max(self.newest_answer_ns, stamp)
            self.latencies_ms.append((received - stamp) / 1e6)

    def _on_utilization(self, msg) -> None:
        self.utilization = float(msg.data)

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if status.name.endswith(": perception"):
                self.perception_diagnostics = {kv.key: kv.value for kv in status.values}

    def take_window(self) -> dict[str, Any]:
        """Counters now and the latencies since the last call."""
        with self.lock:
            latencies, self.latencies_ms = self.latencies_ms, []
            return {
                "published": self.published,
                "answered": self.answered,
                "latencies_ms": latencies,
                "newest_frame_ns": self.newest_frame_ns,
                "newest_answer_ns": self.newest_answer_ns,
                "utilization": self.utilization,
            }

    def set_parameter(self, node_name: str, name: str, value: float, timeout_s: float = 5.0) -> bool:
        """Set a double parameter of another node through its parameter service."""
        from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
        from rcl_interfaces.srv import SetParameters

        client = self.node.create_client(SetParameters, f"{node_name}/set_parameters")
        try:
            if not client.wait_for_service(timeout_sec=timeout_s):
                return False
            request = SetParameters.Request(
                parameters=[
                    Parameter(
                        name=name,
                        value=ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=float(value)),
                    )
                ]
            )
            future = client.call_async(request)
            end = time.monotonic() + timeout_s
            while not future.done() and time.monotonic() < end:
                time.sleep(0.02)
            return future.done() and all(r.successful for r in future.result().results)
        finally:
            self.node.destroy_client(client)

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        self.context.try_shutdown()
        self._thread.join(timeout=2.0)


def process_stats(pid: int) -> dict[str, float]:
    """RSS (MiB), open fds and threads of one process and its children (the node is one process)."""
    import psutil

    try:
        process = psutil.Process(pid)
        family = [process, *process.children(recursive=True)]
        return {
            "rss_mb": sum(p.memory_info().rss for p in family) / 2**20,
            "fds": float(sum(p.num_fds() for p in family)),
            "threads": float(sum(p.num_threads() for p in family)),
        }
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return {"rss_mb": math.nan, "fds": math.nan, "threads": math.nan}


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else math.nan


def growth(series: list[float]) -> float:
    """(last - first) / first of a series (NaN when it cannot be computed)."""
    values = [v for v in series if math.isfinite(v)]
    if len(values) < 2 or values[0] == 0:
        return math.nan
    return (values[-1] - values[0]) / values[0]


def summarize(samples: list[dict[str, Any]], warmup_s: float, fps: float) -> dict[str, Any]:
    """The soak's verdict numbers from the per-window samples (pure: unit-testable)."""
    steady = [s for s in samples if s["t_s"] >= warmup_s] or samples[-1:]
    quarter = max(1, len(steady) // 4)
    first_latency = [v for s in steady[:quarter] for v in s["latencies_ms"]]
    last_latency = [v for s in steady[-quarter:] for v in s["latencies_ms"]]
    p99_first, p99_last = percentile(first_latency, 99), percentile(last_latency, 99)
    total_rss = [sum(s["processes"][n]["rss_mb"] for n in s["processes"]) for s in steady]
    per_process = {}
    for name in samples[-1]["processes"]:
        per_process[name] = {
            f"{key}_growth_fraction": growth([s["processes"][name][key] for s in steady])
            for key in ("rss_mb", "fds", "threads")
        }
        per_process[name].update(
            {f"{key}_end": samples[-1]["processes"][name][key] for key in ("rss_mb", "fds", "threads")}
        )
    all_latency = [v for s in steady for v in s["latencies_ms"]]
    last = samples[-1]
    summary = {
        "rss_growth_fraction": growth(total_rss),
        "p99_latency_drift_fraction": (p99_last - p99_first) / p99_first if p99_first > 0 else math.nan,
        "dropped_frames": int(last["published"] - last["answered"]),
        "backlog_max": max((s["backlog_frames"] for s in steady), default=math.nan),
        "frames_published": int(last["published"]),
        "frames_answered": int(last["answered"]),
        "answered_fraction": last["answered"] / last["published"] if last["published"] else math.nan,
        "latency_ms_p50": percentile(all_latency, 50),
        "latency_ms_p99": percentile(all_latency, 99),
        "latency_ms_p99_first_quarter": p99_first,
        "latency_ms_p99_last_quarter": p99_last,
        "utilization_values_seen": sorted(
            {round(s["utilization"], 3) for s in steady if math.isfinite(s["utilization"])}
        ),
        "processes": per_process,
        "camera_fps": fps,
        "camera_fps_measured": last["published"] / last["t_s"] if last["t_s"] > 0 else math.nan,
        "warmup_s": warmup_s,
    }
    summary["targets"] = TARGETS
    summary["meets_targets"] = bool(
        summary["rss_growth_fraction"] < TARGETS["rss_growth_fraction"]
        and abs(summary["p99_latency_drift_fraction"]) < TARGETS["p99_latency_drift_fraction"]
        and summary["backlog_max"] <= TARGETS["backlog_max"]
    )
    return summary


def plot(samples: list[dict[str, Any]], summary: dict[str, Any], path: Path) -> None:
    """RSS, fds/threads, latency p50/p99, utilization and unanswered frames over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s["t_s"] / 60.0 for s in samples]
    fig, axes = plt.subplots(4, 1, figsize=(9, 11), sharex=True)
    for name in samples[-1]["processes"]:
        axes[0].plot(t, [s["processes"][name]["rss_mb"] for s in samples], label=name)
        axes[1].plot(t, [s["processes"][name]["fds"] for s in samples], label=f"{name} fds")
        axes[1].plot(t, [s["processes"][name]["threads"] for s in samples], "--", label=f"{name} threads")
    axes[0].set_ylabel("RSS (MiB)")
    axes[0].legend(fontsize=7)
    axes[1].set_ylabel("fds / threads")
    axes[1].legend(fontsize=6, ncol=2)
    axes[2].plot(t, [s["latency_ms_p50"] for s in samples], label="p50")
    axes[2].plot(t, [s["latency_ms_p99"] for s in samples], label="p99")
    axes[2].set_ylabel("image -> detections (ms)")
    axes[2].legend(fontsize=7)
    axes[3].plot(t, [s["utilization"] for s in samples], label="utilization applied")
    axes[3].plot(t, [s["backlog_frames"] for s in samples], label="backlog (frames)")
    axes[3].set_ylabel("u / frames")
    axes[3].set_xlabel("minutes")
    axes[3].legend(fontsize=7)
    for ax in axes:
        ax.axvline(summary["warmup_s"] / 60.0, color="grey", lw=0.8, ls=":")
        ax.grid(alpha=0.3)
    fig.suptitle(
        f"soak: RSS growth {summary['rss_growth_fraction']:+.1%}, p99 drift "
        f"{summary['p99_latency_drift_fraction']:+.1%}, backlog max {summary['backlog_max']:.1f}, "
        f"unanswered {summary['dropped_frames']}/{summary['frames_published']}",
        fontsize=9,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def tight_deadline_ms(samples: list[dict[str, Any]], fraction: float) -> float:
    """``fraction`` of the median end-to-end latency of ``samples`` (the loose phase so far), in ms.

    Below the latency the stack had at the level it chose with no deadline binding, so the controller
    has to move whatever the machine's speed. 40 ms when nothing was measured.
    """
    latencies = [value for sample in samples for value in sample["latencies_ms"]]
    median = percentile(latencies, 50) if latencies else math.nan
    return round(fraction * median, 1) if math.isfinite(median) and median > 0 else FALLBACK_TIGHT_DEADLINE_MS


def start_stack(args: argparse.Namespace, env: dict[str, str], log_dir: Path) -> dict[str, Any]:
    """The four node processes, each with the shipped YAML + the soak's settings as ROS arguments."""
    from tnn_ros.demo.processes import ManagedProcess

    bin_dir = Path(sys.executable).parent
    settings = {
        "sim_camera": {"fps": float(args.fps), "width": args.width, "height": args.height},
        "perception": {"mode": "auto"},
        "resource_monitor": {"backend": "sim", "deadline_ms": float(args.loose_deadline_ms)},
        "controller": {"strategy": "auto"},
    }
    processes = {}
    for name in NODES:
        command = [str(bin_dir / name), "--ros-args", "-r", f"__ns:=/{args.namespace}"]
        for key, value in settings[name].items():
            command += ["-p", f"{key}:={value}"]
        processes[name] = ManagedProcess(name, command, env, log_dir / f"{name}.log")
    return processes


def run(args: argparse.Namespace) -> dict[str, Any]:
    env = _environment()
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="tnn_soak_"))
    processes = start_stack(args, env, log_dir)
    observer = StackObserver(args.namespace)
    samples: list[dict[str, Any]] = []
    try:
        start_deadline = time.monotonic() + 180.0
        while observer.take_window()["answered"] == 0:  # models load and warm up first
            dead = [n for n, p in processes.items() if p.poll() is not None]
            if dead or time.monotonic() > start_deadline:
                tails = "\n".join(f"--- {n}\n{processes[n].log_tail()}" for n in dead or processes)
                raise RuntimeError(f"the stack did not answer a frame (exited: {dead or 'none'}):\n{tails}")
            time.sleep(0.5)
        baseline = observer.take_window()  # frames sent while the models loaded are not the soak's
        print(
            f"soak: stack up (logs in {log_dir}); {args.minutes:g} min at {args.fps:g} fps, "
            f"warm-up {args.warmup_s:.0f} s",
            flush=True,
        )
        started = time.monotonic()
        duration_s = args.minutes * 60.0
        next_switch, tight = started + args.deadline_period_s, False
        tight_ms = args.tight_deadline_ms
        while (elapsed := time.monotonic() - started) < duration_s:
            time.sleep(min(args.sample_s, max(0.0, duration_s - elapsed)))
            now = time.monotonic()
            if now >= next_switch:
                tight = not tight
                if tight and tight_ms is None:
                    tight_ms = tight_deadline_ms(samples, args.tight_fraction)
                    print(f"soak: tight deadline {tight_ms:.1f} ms", flush=True)
                observer.set_parameter(
                    f"/{args.namespace}/resource_monitor",
                    "deadline_ms",
                    tight_ms if tight else args.loose_deadline_ms,
                )
                next_switch = now + args.deadline_period_s
            dead = [n for n, p in processes.items() if p.poll() is not None]
            if dead:
                raise RuntimeError(
                    f"{', '.join(dead)} exited during the soak:\n"
                    + "\n".join(processes[n].log_tail() for n in dead)
                )
            window = observer.take_window()
            lag_ns = max(0, window["newest_frame_ns"] - window["newest_answer_ns"])
            # the camera's real rate in this window (a loaded machine renders fewer than --fps frames)
            previous = samples[-1]["published"] if samples else 0
            frames = window["published"] - baseline["published"] - previous
            window_s = (now - started) - (samples[-1]["t_s"] if samples else 0.0)
            camera_fps = frames / window_s if window_s > 0 and frames > 0 else args.fps
            sample = {
                "t_s": now - started,
                "published": window["published"] - baseline["published"],
                "answered": window["answered"] - baseline["answered"],
                "latencies_ms": window["latencies_ms"],
                "latency_ms_p50": percentile(window["latencies_ms"], 50),
                "latency_ms_p99": percentile(window["latencies_ms"], 99),
                "backlog_frames": lag_ns / 1e9 * camera_fps,
                "camera_fps": camera_fps,
                "utilization": window["utilization"],
                "processes": {name: process_stats(p.pid) for name, p in processes.items()},
            }
            samples.append(sample)
            print(
                f"soak {sample['t_s'] / 60:5.1f} min: answered {sample['answered']}/{sample['published']}, "
                f"p50 {sample['latency_ms_p50']:.0f} ms, p99 {sample['latency_ms_p99']:.0f} ms, "
                f"u {sample['utilization']:.2f}, perception RSS "
                f"{sample['processes']['perception']['rss_mb']:.0f} MiB",
                flush=True,
            )
        if not samples:
            raise RuntimeError("no sample taken: make --minutes longer than --sample-s")
        summary = summarize(samples, args.warmup_s, args.fps)
        summary["perception_diagnostics"] = observer.perception_diagnostics
        summary["minutes"] = args.minutes
        summary["deadlines_ms"] = [args.loose_deadline_ms, tight_ms]  # tight None: never switched
        summary["exit_codes"] = {name: p.stop() for name, p in processes.items()}
        return {
            "summary": summary,
            "samples": [{k: v for k, v in s.items() if k != "latencies_ms"} for s in samples],
        }
    finally:
        observer.close()
        for process in processes.values():
            process.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = run(args)
    except RuntimeError as error:
        print(f"tnn-bench soak: {error}", file=sys.stderr)
        return 1
    summary = result["summary"]
    png = args.png or (args.json.with_suffix(".png") if args.json else Path("soak.png"))
    plot([{**s, "latencies_ms": []} for s in result["samples"]], summary, png)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, default=float))
    print(
        json.dumps(
            {
                k: summary[k]
                for k in (
                    "rss_growth_fraction",
                    "p99_latency_drift_fraction",
                    "dropped_frames",
                    "backlog_max",
                    "frames_published",
                    "frames_answered",
                    "latency_ms_p50",
                    "latency_ms_p99",
                    "meets_targets",
                )
            },
            indent=2,
        )
    )
    print(f"plot: {png}" + (f", json: {args.json}" if args.json else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
