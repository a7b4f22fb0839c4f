"""The end-to-end demo: scripted mission runs (throttled, then static full utilization) and a report.

One run = the bag recorder (``tnn-bag record --all``), the sim camera, the perception node and
``bringup`` (resource monitor with the ``sim`` backend driven by the mission, controller) as child processes,
plus this process's :class:`DemoMonitor` for the live status line and the manual-override windows.
The two runs go one after the other (the machine may have only two cores). The report
(``summary.json``, ``timeline.png``) is computed from the recorded bags only.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from tnn_ros import topics
from tnn_ros.bag.common import StatusLine

# debug_image is only rendered while someone subscribes: recording it would cost the perception
# node the drawing work, so the demo never subscribes to it.
NEVER_RECORD = r"debug_image"
RECORDER_NODE = "tnn_bag_recorder"


@dataclass
class DemoOptions:
    """What ``tnn-demo`` runs (all from the command line)."""

    duration_s: float = 60.0
    output: Path = Path("demo_output")
    mission: str = "mission_demo.yaml"
    namespace: str = "/tnn"
    storage: str = "mcap"
    baseline: bool = True
    baseline_images: bool = False  # the static run's camera frames are not needed for the report
    params_file: str | None = None
    # first_frame: the mission clock starts once perception measured its first frame, so the frames
    # the camera publishes before DDS matched perception's subscription are not counted as misses
    mission_start: str = "first_frame"
    startup_timeout_s: float = 180.0
    extra_bringup_args: list[str] = field(default_factory=list)
    bringup_module: str = "tnn_ros.nodes.bringup"


@dataclass
class RunSpec:
    """One mission run: its label, the controller strategy, and whether manual windows apply."""

    label: str
    strategy: str
    manual_windows: bool
    record_images: bool
    fixed_utilization: float | None = None  # static run: manual strategy at this utilization


@dataclass
class RunResult:
    """How a run ended."""

    spec: RunSpec
    bag: Path
    completed: bool
    reason: str = ""


class DemoError(RuntimeError):
    """The demo cannot go on; the message says why (and where the logs are)."""


def demo_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for every process the demo starts: loopback-only DDS and one domain id.

    An existing ``ROS_DOMAIN_ID`` is kept; otherwise a random id in 1..100 is chosen so that the
    demo does not talk to other ROS programs on this machine.
    """
    env = dict(os.environ if base is None else base)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env.pop("ROS_STATIC_PEERS", None)
    if not env.get("ROS_DOMAIN_ID"):
        env["ROS_DOMAIN_ID"] = str(random.SystemRandom().randint(1, 100))
    env["PYTHONUNBUFFERED"] = "1"
    return env


class DemoRunner:
    """Runs the mission once per :class:`RunSpec` and writes the report; see the module docstring."""

    def __init__(
        self, options: DemoOptions, stop_event: threading.Event | None = None, out: TextIO | None = None
    ) -> None:
        from tnn_ros.resources.mission import Mission, find_mission_file

        if not options.duration_s > 0:
            raise DemoError(f"--duration must be > 0, got {options.duration_s}")
        if options.mission_start not in ("immediate", "first_frame"):
            raise DemoError(f"mission_start must be immediate or first_frame, got {options.mission_start!r}")
        self.options = options
        self.stop_event = stop_event or threading.Event()
        self.out = out if out is not None else sys.stdout
        self.mission_path = find_mission_file(options.mission)
        self.mission = Mission.load(self.mission_path, duration_s=options.duration_s)
        self.env = demo_environment()
        self.logs = Path(options.output) / "logs"

    # -- output ----------------------------------------------------------------------------------

    def say(self, text: str, status: StatusLine | None = None) -> None:
        """Print an event line (ending an in-place status line first)."""
        if status is not None:
            status.finish()
        print(text, file=self.out, flush=True)

    # -- one run ---------------------------------------------------------------------------------

    def _params_file(self, spec: RunSpec) -> Path:
        """The parameter YAML for bringup: the user's file (if any) plus the mission and the run's strategy.

        Passing the mission this way uses only the resource_monitor's declared parameters.
        """
        import yaml

        params: dict = {}
        if self.options.params_file:
            loaded = yaml.safe_load(Path(self.options.params_file).read_text(encoding="utf-8"))
            if not isinstance(loaded, dict):
                raise DemoError(f"{self.options.params_file}: not a ROS parameter file")
            params = loaded

        def section(node: str) -> dict:
            return params.setdefault(f"/**/{node}", {}).setdefault("ros__parameters", {})

        section("resource_monitor").update(
            backend="sim",
            mission_file=str(self.mission_path),
            mission_duration_s=float(self.options.duration_s),
            mission_start=self.options.mission_start,
            rate_hz=5.0,
        )
        # torch's OpenMP threads spin and thrash when they outnumber the free cores: leave one core
        # to the camera, the recorder and the other nodes (unless the user's file says otherwise)
        section("perception").setdefault("num_threads", max(1, min(2, (os.cpu_count() or 2) - 1)))
        # the recorder must see the ground truth of frame 0: the camera holds it until matched
        section("sim_camera").setdefault("wait_for_subscribers", True)
        controller = section("controller")
        controller["strategy"] = spec.strategy
        if spec.fixed_utilization is not None:
            controller["manual_utilization"] = float(spec.fixed_utilization)
        path = self.logs / f"params_{spec.label}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
        return path

    def _node_command(self, module: str, config_name: str, params_file: Path) -> list[str]:
        """One node as its own process: the shipped config/<node>.yaml, then the run's file on top."""
        from tnn_ros.resources.mission import find_config_file

        return [
            sys.executable,
            "-m",
            module,
            "--ros-args",
            "-r",
            f"__ns:={self.options.namespace}",
            "--params-file",
            str(find_config_file(config_name)),
            "--params-file",
            str(params_file),
        ]

    def _camera_command(self, params_file: Path) -> list[str]:
        return self._node_command("tnn_ros.nodes.sim_camera", "sim_camera.yaml", params_file)

    def _perception_command(self, params_file: Path) -> list[str]:
        return self._node_command("tnn_ros.nodes.perception", "perception.yaml", params_file)

    def _bringup_command(self, spec: RunSpec, params_file: Path) -> list[str]:
        # The sim camera and perception run in processes of their own, as `ros2 launch` starts
        # them: any other node's Python work in the perception process takes the GIL from its
        # worker (camera rendering: multi-second frame latencies; the controller's 10 Hz tick: 94 %
        # of the frames whose wall time exceeded 1.6x their CPU time overlapped one, measured in a
        # demo bag, and those made the misses under the 30 ms deadline).
        return [
            sys.executable,
            "-m",
            self.options.bringup_module,
            "--no-sim-camera",
            "--no-perception",
            "--backend",
            "sim",
            "--strategy",
            spec.strategy,
            "--namespace",
            self.options.namespace,
            # bringup's own time limit is only a watchdog: the demo stops it at the mission's end
            "--duration",
            f"{self.options.duration_s + self.options.startup_timeout_s + 30.0:g}",
            "--params-file",
            str(params_file),
            *self.options.extra_bringup_args,
        ]

    def _recorder_command(self, spec: RunSpec, bag: Path) -> list[str]:
        exclude = NEVER_RECORD if spec.record_images else rf"{NEVER_RECORD}|/image$"
        return [
            sys.executable,
            "-m",
            "tnn_ros.bag.cli",
            "record",
            "-o",
            str(bag),
            "--all",
            "--storage",
            self.options.storage,
            "--exclude",
            exclude,
            "--quiet",
        ]

    def run_once(self, spec: RunSpec, context) -> RunResult:
        """Record one mission run; never leaves a child process behind."""
        from rclpy.executors import SingleThreadedExecutor

        from tnn_ros.demo.monitor import DemoMonitor
        from tnn_ros.demo.processes import ManagedProcess, wait_until

        bag = Path(self.options.output) / f"bag_{spec.label}"
        if bag.exists():
            shutil.rmtree(bag)  # a previous demo's bag in our own output folder
        monitor = DemoMonitor(self.options.namespace, context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(monitor)
        spinning = threading.Event()
        spinning.set()

        def spin() -> None:
            while spinning.is_set() and context.ok():
                executor.spin_once(timeout_sec=0.05)

        spinner = threading.Thread(target=spin, name="demo-monitor", daemon=True)
        spinner.start()
        recorder = camera = perception = bringup = None
        status = StatusLine(stream=self.out, period_s=1.0, tty_period_s=0.5)
        try:
            recorder = ManagedProcess(
                "recorder",
                self._recorder_command(spec, bag),
                self.env,
                self.logs / f"recorder_{spec.label}.log",
            )
            if not wait_until(
                lambda: RECORDER_NODE in monitor.get_node_names(),
                60.0,
                abort=lambda: self.stop_event.is_set() or recorder.poll() is not None,
            ):
                return RunResult(spec, bag, False, self._why("recorder", recorder))
            params_file = self._params_file(spec)
            perception = ManagedProcess(
                "perception",
                self._perception_command(params_file),
                self.env,
                self.logs / f"perception_{spec.label}.log",
            )
            bringup = ManagedProcess(
                "bringup",
                self._bringup_command(spec, params_file),
                self.env,
                self.logs / f"bringup_{spec.label}.log",
            )
            self.say(
                f"[{spec.label}] starting nodes (models load and warm up; logs: {perception.log_path}, "
                f"{bringup.log_path})"
            )
            if not wait_until(
                lambda: monitor.first_resource_time is not None,
                self.options.startup_timeout_s,
                abort=lambda: self.stop_event.is_set() or bringup.poll() is not None,
            ):
                return RunResult(spec, bag, False, self._why("bringup", bringup, "no battery message"))
            # the static run's utilization is fixed before the first frame arrives
            if spec.fixed_utilization is not None:
                wait_until(monitor.controller_ready, 30.0, abort=self.stop_event.is_set)
                problem = monitor.set_controller_parameters(
                    {"strategy": "manual", "manual_utilization": float(spec.fixed_utilization)}
                )
                if problem:
                    self.say(f"[{spec.label}] warning: could not fix the utilization: {problem}")
            # The camera starts once the recorder records perception's results: perception runs in a
            # process of its own, and a frame processed before the recorder matched its publisher
            # would count as never processed if its ground truth was recorded.
            if not wait_until(
                lambda: monitor.subscribed_by(topics.DETECTIONS_JSON, RECORDER_NODE),
                self.options.startup_timeout_s,
                abort=lambda: self.stop_event.is_set() or perception.poll() is not None,
            ):
                return RunResult(
                    spec, bag, False, self._why("perception", perception, "recorder never saw its results")
                )
            camera = ManagedProcess(
                "sim_camera",
                self._camera_command(params_file),
                self.env,
                self.logs / f"sim_camera_{spec.label}.log",
            )
            if self.options.mission_start == "first_frame" and not wait_until(
                monitor.mission_started,
                self.options.startup_timeout_s,
                abort=lambda: (
                    self.stop_event.is_set()
                    or any(p.poll() is not None for p in (bringup, camera, perception))
                ),
            ):
                return RunResult(
                    spec,
                    bag,
                    False,
                    self._why(
                        "perception", perception, "mission did not start: perception measured no frame"
                    ),
                )
            return self._mission_loop(spec, bag, monitor, (recorder, camera, perception, bringup), status)
        finally:
            status.finish()
            # the recorder last: it catches their last words
            for process in (camera, perception, bringup, recorder):
                if process is not None:
                    code = process.stop()
                    if process is recorder and code not in (0, None):
                        self.say(f"[{spec.label}] recorder exited with {code}; see {recorder.log_path}")
            spinning.clear()
            spinner.join(timeout=5.0)
            executor.remove_node(monitor)
            executor.shutdown(timeout_sec=1.0)
            monitor.destroy_node()

    def _mission_loop(self, spec, bag, monitor, processes, status) -> RunResult:
        recorder, camera, perception, bringup = processes
        override: float | None = None
        saved_strategy = spec.strategy
        warned_no_frames = False
        while not self.stop_event.is_set():
            t = monitor.mission_time() or 0.0
            if not warned_no_frames and monitor.frames == 0 and t > min(10.0, self.options.duration_s / 3):
                warned_no_frames = True
                self.say(
                    f"[{spec.label}] warning: no detections yet; is perception configured? "
                    f"see {perception.log_path}",
                    status,
                )
            if t >= self.options.duration_s:
                return RunResult(spec, bag, True)
            if bringup.poll() == 0 and t >= 0.9 * self.options.duration_s:
                return RunResult(spec, bag, True)  # bringup's own --duration ran out first
            for process in processes:
                if process.poll() is not None:
                    return RunResult(spec, bag, False, self._why(process.name, process))
            if spec.manual_windows:
                wanted = self.mission.manual_utilization_at(t)
                if wanted != override:
                    if wanted is not None and override is None:
                        saved_strategy = monitor.get_controller_parameter("strategy") or spec.strategy
                    self._set_override(spec, monitor, t, wanted, saved_strategy, status)
                    override = wanted
            status.update(monitor.status_text(t, f"[{spec.label}] "))
            self.stop_event.wait(0.1)
        return RunResult(spec, bag, False, "interrupted")

    def _set_override(
        self, spec: RunSpec, monitor, t: float, wanted: float | None, saved_strategy: str, status: StatusLine
    ) -> None:
        """Enter (``wanted`` = u) or leave (None) a manual window through the controller's parameters."""
        if wanted is not None:
            values = {"strategy": "manual", "manual_utilization": float(wanted)}
            what = f"manual override: utilization {wanted:.2f} set by hand (strategy=manual)"
        else:
            values = {"strategy": saved_strategy}
            what = f"manual override ends: strategy={saved_strategy}"
        problem = monitor.set_controller_parameters(values)
        self.say(f"[{spec.label}] t={t:5.1f}s {what}" + (f" FAILED: {problem}" if problem else ""), status)

    @staticmethod
    def _why(name: str, process, what: str = "") -> str:
        code = process.poll()
        state = f"exited with {code}" if code is not None else (what or "did not start in time")
        tail = process.log_tail(8)
        return f"{name} {state} (log: {process.log_path})" + (f"\n{tail}" if tail else "")

    # -- whole demo ------------------------------------------------------------------------------

    def run(self) -> dict:
        """Run the throttled mission, then the static baseline, then write the report."""
        import rclpy
        from rclpy.context import Context
        from rclpy.signals import SignalHandlerOptions

        output = Path(self.options.output)
        output.mkdir(parents=True, exist_ok=True)
        specs = [RunSpec("auto", "auto", manual_windows=True, record_images=True)]
        if self.options.baseline:
            specs.append(
                RunSpec(
                    "static_full",
                    "manual",
                    manual_windows=False,
                    record_images=self.options.baseline_images,
                    fixed_utilization=1.0,
                )
            )
        self.say(
            f"tnn_ros demo: mission '{self.mission.name}' ({self.mission_path}), "
            f"{self.options.duration_s:g} s per run, {len(specs)} run(s) one after the other; "
            f"ROS_DOMAIN_ID={self.env['ROS_DOMAIN_ID']}, discovery LOCALHOST"
        )
        os.environ.update({k: self.env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")})
        context = Context()
        rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
        results = []
        try:
            for spec in specs:
                if self.stop_event.is_set():
                    break
                result = self.run_once(spec, context)
                results.append(result)
                if not result.completed:
                    self.say(f"[{spec.label}] stopped early: {result.reason}")
                    break
                self.say(f"[{spec.label}] done: bag {result.bag}")
        finally:
            if context.ok():
                rclpy.shutdown(context=context)
        usable = [r for r in results if (r.bag / "metadata.yaml").is_file()]
        if not usable:
            raise DemoError("no run produced a bag; see the logs in " + str(self.logs))
        self.say("analysing the recorded bags (summary.json, timeline.png) ...")
        return self.report(usable)

    def report(self, results: list[RunResult]) -> dict:
        """Analyze the bags, write summary.json and timeline.png, print where they are."""
        from tnn_ros.demo.report import write_report

        bags = {r.spec.label: r.bag for r in results}
        summary = write_report(
            bags.get("auto") or next(iter(bags.values())),
            Path(self.options.output),
            mission=self.mission,
            baseline_bag=bags.get("static_full"),
            namespace=self.options.namespace,
        )
        summary["runs_completed"] = {r.spec.label: r.completed for r in results}
        (Path(self.options.output) / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        return summary
