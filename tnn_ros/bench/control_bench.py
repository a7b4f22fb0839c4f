"""`tnn-bench control`: controller evaluation suite, missions x policies, from measured per-level traces.

Replay mode (the default) works in two steps:

1. **Record** (:func:`record_traces`, once, a few minutes): a seeded synthetic scene sequence (the
   sim camera's frames, with ground truth) is run through the shipped detector and gesture net at
   *every* level, levels interleaved per frame. Per frame and level it stores the measured wall
   latency and process CPU time, the detections and the gesture net's class probabilities. A second
   recording is made while another process really loads one core (``contention``).
2. **Simulate** (:class:`ReplaySim`, seconds per run): each policy drives a mission; a frame that
   starts at level k costs exactly what level k measured on that frame (the contention trace while
   the mission's contention window is on). The perception worker is one thread with a depth-1
   queue (newest frame wins, like the node); the controller runs the real ``tnn_ros.control`` policy
   objects at 10 Hz on the sim's battery / temperature / deadline / CPU load and the measured
   latencies; the sim battery and temperature are driven by the measured busy fraction (CPU
   seconds per second), and above ``throttle_c`` the chip throttles (latency and CPU time x
   ``throttle_factor``). An empty battery stops the robot.

Metrics per run: ``cpu_s`` (measured CPU seconds of the processed frames), ``energy_j`` (sim power
from the measured busy fraction, integrated), ``deadline_hit_rate`` (camera frames whose own result
arrived within the deadline, frame arrival to result, over *all* frames the camera published: a
frame dropped or skipped is a miss), ``map50`` (torchmetrics mAP@0.5 of the processed frames vs
ground truth), ``gesture_accuracy`` (replayed recognizer, see :func:`gesture_accuracy`),
``utility = map50 x deadline_hit_rate``, ``switches_per_min``.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from tnn_ros.control import Controller, ControllerConfig, LatencyProfile
from tnn_ros.eval.traces import Trace, fast_map50, frame_f1  # noqa: F401 (fast_map50: part of this API)
from tnn_ros.resources.mission import Mission
from tnn_ros.resources.sim import SimBackend, SimParams

NUM_LEVELS = 8
FPS = 15.0
TICK_S = 0.1  # controller rate_hz 10
SCORE_THRESHOLD = 0.3  # perception's default score_threshold
GESTURE_STRIDE, GESTURE_SMOOTHING = 4, 2  # config/perception.yaml
GESTURE_MIN_CONFIDENCE = 0.5  # GestureRecognizer's default; a gesture card may name its own
CONTROLLED = ("rule", "deadline", "auto", "learned")
POLICIES = tuple(f"static_L{k}" for k in range(NUM_LEVELS)) + ("frame_drop",) + CONTROLLED + ("oracle",)


def _say(text: str) -> None:
    print(text, flush=True)


# --- traces (the Trace format and detection matching live in tnn_ros.eval.traces) ------------------


def _cpu_hog() -> subprocess.Popen:
    """A second process that keeps one core busy (pure Python busy loop) until killed."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def record_traces(
    num_frames: int,
    seed: int = 0,
    threads: int = 1,
    contention: bool = False,
    width: int = 320,
    height: int = 240,
    progress: Callable[[str], None] = _say,
) -> Trace:
    """Run the shipped detector and gesture net on ``num_frames`` sim-camera frames at every level.

    ``contention`` runs the recording while a second process loads one core. The gesture net runs as
    the node runs it: a ``temporal="valid"`` net frame by frame (one stream per level, so every
    frame pays its slice at every level), a padded one on whole clips every ``GESTURE_STRIDE`` frames.
    """
    import torch

    from tnn_ros.models import gesture_card_settings, load_detector, load_gesture
    from tnn_ros.models.gesture import resize_frame
    from tnn_ros.models.gesture_recognizer import supports_streaming
    from tnn_ros.models.gesture_streaming import StreamingGestureNet
    from tnn_ros.sim.stream import SimFrameSource

    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    detector, gesture = load_detector(), load_gesture()
    detector.eval()
    gesture.eval()
    levels = min(detector.num_levels, gesture.num_levels)
    source = SimFrameSource(width, height, seed=seed, fps=FPS)
    classes = list(gesture.classes)
    latency = np.zeros((num_frames, levels))
    cpu = np.zeros((num_frames, levels))
    f1 = np.zeros((num_frames, levels))
    det_offsets, boxes_all, scores_all, labels_all = [0], [], [], []
    gt_offsets, gt_boxes_all, gt_labels_all = [0], [], []
    gesture_frames, gesture_probs, gesture_truth = [], [], []
    clip: deque[np.ndarray] = deque(maxlen=gesture.clip_length)
    since_run = GESTURE_STRIDE
    streams = [StreamingGestureNet(gesture) for _ in range(levels)] if supports_streaming(gesture) else None
    hog = _cpu_hog() if contention else None
    started = time.monotonic()
    try:
        if hog is not None:
            time.sleep(0.5)  # let the hog start spinning before measuring
        for i in range(num_frames):
            frame = source.frame_at(i)
            clip.append(resize_frame(frame.rgb, gesture.frame_size))
            since_run += 1
            run_gesture = len(clip) == gesture.clip_length and since_run >= GESTURE_STRIDE
            if run_gesture:
                since_run = 0
            probs = np.zeros((levels, len(classes)))
            results = {}
            # Rotate the level order per frame so drift and cache effects spread over all levels.
            for level in np.roll(np.arange(levels), i % levels):
                level = int(level)
                detector.set_level(level)
                gesture.set_level(level)
                wall, proc = time.perf_counter(), time.process_time()
                dets = detector.predict(frame.rgb, score_threshold=SCORE_THRESHOLD)
                if streams is not None:
                    logits = streams[level].push(clip[-1], level=level)
                    if run_gesture:
                        probs[level] = torch.softmax(logits, dim=0).numpy()
                elif run_gesture:
                    probs[level] = gesture.predict_clip(list(clip))
                latency[i, level] = (time.perf_counter() - wall) * 1e3
                cpu[i, level] = (time.process_time() - proc) * 1e3
                results[level] = dets
            for level in range(levels):
                dets = results[level]
                b = np.array([d.box for d in dets], np.float32).reshape(-1, 4)
                s = np.array([d.score for d in dets], np.float32)
                c = np.array([d.class_id for d in dets], np.int64)
                boxes_all.append(b)
                scores_all.append(s)
                labels_all.append(c)
                det_offsets.append(det_offsets[-1] + len(dets))
                f1[i, level] = frame_f1(b, c, frame.boxes, frame.class_ids)
            gt_boxes_all.append(np.asarray(frame.boxes, np.float32).reshape(-1, 4))
            gt_labels_all.append(np.asarray(frame.class_ids, np.int64))
            gt_offsets.append(gt_offsets[-1] + len(frame.class_ids))
            gesture_truth.append(classes.index(frame.gesture) if frame.gesture in classes else 0)
            if run_gesture:
                gesture_frames.append(i)
                gesture_probs.append(probs)
            if (i + 1) % 50 == 0 or i + 1 == num_frames:
                elapsed = time.monotonic() - started
                progress(
                    f"  recorded {i + 1}/{num_frames} frames x {levels} levels"
                    f"{' (with a core loaded)' if contention else ''}, {elapsed:.0f} s, "
                    f"full level median {np.median(latency[: i + 1, -1]):.1f} ms"
                )
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    return Trace(
        latency_ms=latency,
        cpu_ms=cpu,
        det_offsets=np.array(det_offsets, np.int64),
        det_boxes=np.concatenate(boxes_all) if boxes_all else np.zeros((0, 4), np.float32),
        det_scores=np.concatenate(scores_all) if scores_all else np.zeros(0, np.float32),
        det_labels=np.concatenate(labels_all) if labels_all else np.zeros(0, np.int64),
        gt_offsets=np.array(gt_offsets, np.int64),
        gt_boxes=np.concatenate(gt_boxes_all),
        gt_labels=np.concatenate(gt_labels_all),
        gesture_frames=np.array(gesture_frames, np.int64),
        gesture_probs=np.array(gesture_probs).reshape(-1, levels, len(classes)),
        gesture_truth=np.array(gesture_truth, np.int64),
        f1=f1,
        meta={
            "seed": seed,
            "fps": FPS,
            "threads": threads,
            "contention": contention,
            "size": [width, height],
            "classes": classes,
            "cores": os.cpu_count(),
            "loadavg_after": list(os.getloadavg()),
            "utilizations": [(k + 1) / levels for k in range(levels)],
            "recorded_s": round(time.monotonic() - started, 1),
            "gesture_mode": "streaming" if streams is not None else "clips",
            # the threshold the node announces this net's gestures with (its card's)
            "gesture_min_confidence": gesture_card_settings().get("min_confidence", GESTURE_MIN_CONFIDENCE),
        },
    )


# --- missions -------------------------------------------------------------------------------------


@dataclass
class BenchMission:
    """A mission for the suite: the resource scenario plus bench-only effects."""

    name: str
    mission: Mission
    contention: list[tuple[float, float]] = field(default_factory=list)  # windows with a core loaded
    throttle_c: float = 85.0
    throttle_factor: float = 2.0
    notes: str = ""

    def contended(self, t: float) -> bool:
        return any(t0 <= t < t1 for t0, t1 in self.contention)


def _steps(points: list[tuple[float, float]]) -> list[dict]:
    """Deadline keyframes that hold each value until the next step (piecewise-linear keyframes)."""
    frames = []
    for i, (t, value) in enumerate(points):
        if i:
            frames.append({"t_s": t - 1e-3, "value": points[i - 1][1]})
        frames.append({"t_s": t, "value": value})
    return frames


def build_missions(
    idle: Trace, quick: bool = False, demo_file: str | Path | None = None
) -> list[BenchMission]:
    """The five missions; deadlines of the synthetic ones are multiples of the measured latencies.

    ``ref`` is the p90 of the full level's frame latency in the idle trace, so the suite means the
    same on a fast and a slow machine.
    """
    from tnn_ros.resources.mission import find_mission_file

    scale = 0.5 if quick else 1.0
    ref = float(np.percentile(idle.latency_ms[:, -1], 90))
    busy = idle.cpu_ms.mean(axis=0) / 1e3 * FPS / max(idle.meta.get("cores") or 1, 1)
    demo = Mission.load(demo_file or find_mission_file(), duration_s=60.0 * scale)
    demo.manual_windows = []  # the bench compares policies; the operator's override window is left out
    missions = [BenchMission("demo", demo, notes="config/mission_demo.yaml without its manual window")]

    drain_s = 300.0 * scale
    drain = Mission.from_dict(
        {
            "mission": {
                "name": "battery_drain",
                "duration_s": drain_s,
                # capacity sized so that the middle level just lasts: the full level runs dry before the end
                "battery": {
                    "initial_fraction": 0.5,
                    "final_fraction": 0.02,
                    "nominal_utilization": float(busy[NUM_LEVELS // 2]),
                },
                "sim": {"idle_power_w": 0.5, "max_power_w": 15.0},
                "deadline_ms": [{"t_s": 0.0, "value": round(2.0 * ref, 2)}],
            }
        }
    )
    missions.append(
        BenchMission(
            "battery_drain", drain, notes="capacity = middle level's measured busy fraction x duration"
        )
    )

    period = 40.0 * scale
    heat = [
        {"start_s": t, "end_s": t + period / 2, "extra_w": 12.0}
        for t in np.arange(period / 4, 160.0 * scale, period)
    ]
    thermal = Mission.from_dict(
        {
            "mission": {
                "name": "thermal",
                "duration_s": 160.0 * scale,
                "sim": {
                    "ambient_c": 30.0,
                    "thermal_resistance_c_per_w": 4.0,
                    "thermal_time_constant_s": 6.0 * scale,
                    "idle_power_w": 1.0,
                    "max_power_w": 12.0,
                },
                "heat": heat,
                "deadline_ms": [{"t_s": 0.0, "value": round(1.5 * ref, 2)}],
            }
        }
    )
    missions.append(
        BenchMission("thermal", thermal, notes="heat on/off every half period; above 85 C latency and CPU x2")
    )

    d = 120.0 * scale
    factors = [(0.0, 3.0), (0.2, 1.2), (0.4, 0.7), (0.6, 0.45), (0.8, 1.5)]
    steps = Mission.from_dict(
        {
            "mission": {
                "name": "deadline_steps",
                "duration_s": d,
                "deadline_ms": _steps([(f * d, round(m * ref, 2)) for f, m in factors]),
            }
        }
    )
    missions.append(
        BenchMission("deadline_steps", steps, notes=f"deadline x {[m for _, m in factors]} of ref")
    )

    c = 90.0 * scale
    contention = Mission.from_dict(
        {
            "mission": {
                "name": "contention",
                "duration_s": c,
                "deadline_ms": [{"t_s": 0.0, "value": round(1.3 * ref, 2)}],
            }
        }
    )
    missions.append(
        BenchMission(
            "contention",
            contention,
            contention=[(c / 3, 2 * c / 3)],
            notes="a second process loads one core in the middle third "
            "(latencies from the trace recorded under that load)",
        )
    )
    for m in missions:
        m.notes = (m.notes + f"; ref latency {ref:.1f} ms").strip("; ")
    return missions


# --- replay simulation ----------------------------------------------------------------------------


@dataclass
class FrameLog:
    """What happened to one camera frame."""

    seq: int
    arrival: float
    level: int = -1  # -1: never processed
    latency_ms: float = math.nan  # arrival -> result
    cpu_ms: float = 0.0
    hit: bool = False


class LevelSource:
    """Chooses the level for a frame starting at time ``t``; ``tick`` runs at 10 Hz with resource readings."""

    name = "level"

    def tick(self, t: float, readings: dict[str, float | None]) -> None:
        pass

    def frame_done(
        self, t: float, level: int, latency_ms: float, cpu_ms: float, queue_ms: float = 0.0
    ) -> None:
        """A frame's result at ``t``: its service time ``latency_ms`` after waiting ``queue_ms``."""

    def level(self, t: float, seq: int) -> int | None:
        """The level, or None to skip this frame."""
        raise NotImplementedError


class StaticLevel(LevelSource):
    def __init__(self, level: int) -> None:
        self.fixed = level
        self.name = f"static_L{level}"

    def level(self, t: float, seq: int) -> int | None:
        return self.fixed


class FrameDrop(LevelSource):
    """Full level on a ``keep`` fraction of frames, evenly spread (topic_tools throttle at equal compute)."""

    name = "frame_drop"

    def __init__(self, keep: float, level: int = NUM_LEVELS - 1) -> None:
        self.keep = min(max(keep, 1e-3), 1.0)
        self.full = level

    def level(self, t: float, seq: int) -> int | None:
        return self.full if math.floor((seq + 1) * self.keep) > math.floor(seq * self.keep) else None


class ControllerSource(LevelSource):
    """A real :class:`tnn_ros.control.Controller` (rule, deadline, auto, learned) fed by the sim."""

    def __init__(
        self,
        strategy: str,
        profile: LatencyProfile,
        learned_model: str = "",
        accuracies: list[float] | None = None,
    ) -> None:
        from tnn_ros.throttle import LevelSchedule

        self.name = strategy
        config = ControllerConfig(strategy=strategy, learned_model=learned_model, stale_timeout_s=600.0)
        self.controller = Controller(config, copy.deepcopy(profile))
        self.schedule = LevelSchedule(NUM_LEVELS)
        self.setpoint = config.max_utilization
        self.fallback_reason = self.controller.fallback_reason

    def tick(self, t: float, readings: dict[str, float | None]) -> None:
        for name, value in readings.items():
            if value is not None:
                self.controller.update(name, value, t)
        self.setpoint = self.controller.step(t).setpoint

    def frame_done(
        self, t: float, level: int, latency_ms: float, cpu_ms: float, queue_ms: float = 0.0
    ) -> None:
        # the node's order: utilization_applied, cpu_ms, queue_ms, latency_ms (without queueing)
        self.controller.update("applied", self.schedule.utilization_of(level), t)
        self.controller.update("frame_cpu", cpu_ms, t)
        self.controller.update("queue", queue_ms, t)
        self.controller.update("latency", latency_ms, t)

    def level(self, t: float, seq: int) -> int | None:
        return self.schedule.level_for(self.setpoint)


class ReplaySim:
    """One mission under one level source, replayed from traces (see the module doc).

    :meth:`snapshot` / :meth:`restore` let the oracle try every level for a window and keep the best.
    """

    def __init__(self, bench: BenchMission, idle: Trace, loaded: Trace | None, source: LevelSource) -> None:
        self.bench, self.idle, self.loaded, self.source = bench, idle, loaded or idle, source
        self.sim = SimBackend(SimParams(), bench.mission)
        self.sim.start = self.sim.last = 0.0
        self.cores = max(int(idle.meta.get("cores") or 1), 1)
        self.frames: list[FrameLog] = []
        self.t_tick = 0.0  # next controller tick
        self.busy_until = 0.0
        self.pending: FrameLog | None = None
        self.cpu_in_tick = 0.0  # CPU ms consumed since the last tick
        self.energy_j = 0.0
        self.dead = False
        self.num_frames = int(math.floor(bench.mission.duration_s * FPS))
        self.next_seq = 0
        # (done_t, level, service_ms, cpu_ms, queue_ms) of the frame being processed
        self.inflight: tuple[float, int, float, float, float] | None = None
        self.bad_samples = 0  # NaN / inf / missing trace samples met (the frame is lost)

    # -- state copies for the oracle ------------------------------------------------------------------
    def snapshot(self) -> dict:
        # the pending frame, if any, is always the newest one (newest frame wins), so copying the
        # last frame's log is enough to undo everything a trial window changes
        return {
            "sim": copy.copy(self.sim),
            "frames": len(self.frames),
            "t_tick": self.t_tick,
            "busy_until": self.busy_until,
            "pending": self.pending is not None,
            "cpu_in_tick": self.cpu_in_tick,
            "energy_j": self.energy_j,
            "dead": self.dead,
            "next_seq": self.next_seq,
            "inflight": self.inflight,
            "last": copy.copy(self.frames[-1]) if self.frames else None,
        }

    def restore(self, state: dict) -> None:
        self.sim = copy.copy(state["sim"])
        del self.frames[state["frames"] :]
        if state["last"] is not None:
            self.frames[-1] = copy.copy(state["last"])
        for name in ("t_tick", "busy_until", "cpu_in_tick", "energy_j", "dead", "next_seq", "inflight"):
            setattr(self, name, state[name])
        self.pending = self.frames[-1] if state["pending"] else None

    # -- mechanics ------------------------------------------------------------------------------------
    def _trace_at(self, t: float) -> Trace:
        return self.loaded if self.bench.contended(t) else self.idle

    def _deadline(self, t: float) -> float:
        value = self.bench.mission.deadline_at(t)
        return math.inf if value is None else value

    def _tick(self) -> None:
        """Advance the sim over the tick that ends now; then run the controller on the new readings.

        The sim battery/thermal run at the measured busy fraction (CPU time of the frames started in
        the tick).
        """
        t = self.t_tick
        self._deliver(t)
        busy = min(self.cpu_in_tick / 1e3 / TICK_S / self.cores, 1.0)
        self.cpu_in_tick = 0.0
        self.sim.set_utilization(busy)
        if not self.dead and t > 0.0:
            power = self.sim.advance(TICK_S, self.bench.mission.extra_heat_w(t - TICK_S))
            self.energy_j += power * TICK_S
            self.dead = self.sim.energy_j <= 0.0
        contention = 1.0 / self.cores if self.bench.contended(t) else 0.0
        readings = {
            "battery": self.sim.battery_fraction,
            "thermal": self.sim.temperature_c,
            "deadline": self.bench.mission.deadline_at(t),
            "cpu_load": min(self.sim.params.base_cpu_load + busy + contention, 1.0),
        }
        self.source.tick(t, readings)
        self.t_tick = round(t + TICK_S, 9)

    def _deliver(self, t: float) -> None:
        """Hand the controller the result of the in-flight frame if it finished by ``t``."""
        if self.inflight is not None and self.inflight[0] <= t:
            done, level, service, cpu, queue = self.inflight
            self.inflight = None
            self.source.frame_done(done, level, service, cpu, queue)

    def _start(self, frame: FrameLog, t: float) -> None:
        """Start ``frame`` on the worker at time ``t`` at the source's level (or skip it)."""
        level = None if self.dead else self.source.level(t, frame.seq)
        if level is None:
            return
        trace = self._trace_at(t)
        index = frame.seq % trace.num_frames
        factor = self.bench.throttle_factor if self.sim.temperature_c > self.bench.throttle_c else 1.0
        service = float(trace.latency_ms[index, level]) * factor
        cpu = float(trace.cpu_ms[index, level]) * factor
        if not (math.isfinite(service) and service > 0.0 and math.isfinite(cpu) and cpu >= 0.0):
            # a missing or broken measurement: the frame is lost (a miss), the worker stays free
            if self.bad_samples == 0:
                _say(
                    f"  warning: unusable trace sample (frame {index}, level {level}: latency {service}, "
                    f"cpu {cpu}); such frames count as missed"
                )
            self.bad_samples += 1
            return
        done = t + service / 1e3
        frame.level, frame.cpu_ms = level, cpu
        frame.latency_ms = (done - frame.arrival) * 1e3
        frame.hit = frame.latency_ms <= self._deadline(frame.arrival)
        self.cpu_in_tick += cpu
        self.busy_until = done
        self.inflight = (done, level, service, cpu, (t - frame.arrival) * 1e3)

    def _advance_to(self, t: float) -> None:
        """Run ticks and worker starts up to time ``t`` in time order."""
        while True:
            next_start = self.busy_until if self.pending is not None else math.inf
            if self.t_tick <= t and self.t_tick <= next_start:
                self._tick()
            elif next_start <= t:
                frame, self.pending = self.pending, None
                self._deliver(next_start)
                self._start(frame, next_start)
            else:
                return

    def run_until(self, t_end: float) -> None:
        """Simulate camera frames arriving before ``t_end`` (mission seconds)."""
        while self.next_seq < self.num_frames:
            arrival = self.next_seq / FPS
            if arrival >= t_end:
                break
            self._advance_to(arrival)
            frame = FrameLog(self.next_seq, arrival)
            self.frames.append(frame)
            self.next_seq += 1
            if self.busy_until <= arrival:
                self._deliver(arrival)
                self._start(frame, arrival)
            else:
                self.pending = frame  # a waiting older frame is dropped: newest frame wins
        self._advance_to(min(t_end, self.bench.mission.duration_s))

    def run(self) -> list[FrameLog]:
        self.run_until(self.bench.mission.duration_s)
        return self.frames


def run_oracle(
    bench: BenchMission, idle: Trace, loaded: Trace | None, window_s: float = 1.0
) -> list[FrameLog]:
    """Best level per window in hindsight, window by window (greedy).

    Every level is tried on the window from the same state; the one with the highest sum of
    per-frame F1 x in-deadline is kept (fewer CPU seconds breaks ties) and the run continues from it.
    """
    source = StaticLevel(0)
    source.name = "oracle"
    sim = ReplaySim(bench, idle, loaded, source)
    t = 0.0
    while t < bench.mission.duration_s:
        end = min(t + window_s, bench.mission.duration_s)
        state = sim.snapshot()
        best: tuple[float, float, int] | None = None
        for level in range(idle.num_levels):
            sim.restore(state)
            source.fixed = level
            sim.run_until(end)
            window = sim.frames[state["frames"] - (1 if state["last"] else 0) :]
            value = sum(_frame_value(idle, loaded, bench, f) for f in window)
            cpu = sum(f.cpu_ms for f in window)
            if best is None or (value, -cpu) > (best[0], -best[1]):
                best = (value, cpu, level)
        sim.restore(state)
        source.fixed = best[2]
        sim.run_until(end)
        t = end
    sim.run_until(bench.mission.duration_s)
    return sim.frames


def _frame_value(idle: Trace, loaded: Trace | None, bench: BenchMission, frame: FrameLog) -> float:
    if frame.level < 0 or not frame.hit:
        return 0.0
    trace = (loaded or idle) if bench.contended(frame.arrival) else idle
    return float(trace.f1[frame.seq % trace.num_frames, frame.level])


# --- metrics --------------------------------------------------------------------------------------


def detection_map50(frames: list[FrameLog], trace_of: Callable[[FrameLog], Trace]) -> float | None:
    """mAP@0.5 over the processed frames' detections vs their ground truth (:func:`fast_map50`)."""
    selection = []
    for frame in frames:
        if frame.level >= 0:
            trace = trace_of(frame)
            selection.append((trace, frame.seq % trace.num_frames, frame.level))
    return fast_map50(selection)


def torchmetrics_map50(frames: list[FrameLog], trace_of: Callable[[FrameLog], Trace]) -> float | None:
    """The same figure computed by torchmetrics (pycocotools): the reference for :func:`fast_map50`."""
    import torch
    from torchmetrics.detection import MeanAveragePrecision

    predictions, targets = [], []
    for frame in frames:
        if frame.level < 0:
            continue
        trace = trace_of(frame)
        index = frame.seq % trace.num_frames
        boxes, scores, labels = trace.detections(index, frame.level)
        gt_boxes, gt_labels = trace.truth(index)
        predictions.append(
            {
                "boxes": torch.as_tensor(boxes).reshape(-1, 4),
                "scores": torch.as_tensor(scores),
                "labels": torch.as_tensor(labels),
            }
        )
        targets.append(
            {"boxes": torch.as_tensor(gt_boxes).reshape(-1, 4), "labels": torch.as_tensor(gt_labels)}
        )
    if not targets or not any(len(t["labels"]) for t in targets):
        return None
    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", iou_thresholds=[0.5])
    metric.update(predictions, targets)
    value = float(metric.compute()["map"])
    return value if value >= 0.0 else None


def gesture_accuracy(frames: list[FrameLog], trace_of: Callable[[FrameLog], Trace]) -> float | None:
    """Accuracy of the replayed gesture recognizer.

    On every processed frame where the recorded recognizer ran, take that level's recorded class
    probabilities, smooth over the last ``GESTURE_SMOOTHING`` runs,
    announce (``no_gesture`` below the recorded net's threshold, ``GESTURE_MIN_CONFIDENCE`` for traces
    recorded before the threshold was recorded) and compare with the frame's truth.

    Exact for the net (the clip is the same raw frames at any level); the run points are the recorded
    ones, so frames the worker skipped shift the real recognizer's runs slightly.
    """
    history: deque[np.ndarray] = deque(maxlen=GESTURE_SMOOTHING)
    correct = total = 0
    run_index: dict[int, dict[int, int]] = {}
    for frame in frames:
        if frame.level < 0:
            continue
        trace = trace_of(frame)
        lookup = run_index.setdefault(id(trace), {int(s): r for r, s in enumerate(trace.gesture_frames)})
        run = lookup.get(frame.seq % trace.num_frames)
        if run is None:
            continue
        history.append(trace.gesture_probs[run, frame.level])
        if len(history) < GESTURE_SMOOTHING:
            continue
        mean = np.mean(np.stack(history), axis=0)
        top = int(np.argmax(mean))
        if mean[top] < trace.meta.get("gesture_min_confidence", GESTURE_MIN_CONFIDENCE):
            top = 0  # no_gesture is class 0
        correct += int(top == int(trace.gesture_truth[frame.seq % trace.num_frames]))
        total += 1
    return correct / total if total else None


def run_metrics(
    frames: list[FrameLog],
    energy_j: float,
    duration_s: float,
    trace_of: Callable[[FrameLog], Trace],
    with_gesture: bool = True,
) -> dict:
    """The suite's metrics of one run (see the module doc)."""
    processed = [f for f in frames if f.level >= 0]
    hits = sum(f.hit for f in frames)
    hit_rate = hits / len(frames) if frames else 0.0
    map50 = detection_map50(frames, trace_of)
    switches = sum(a.level != b.level for a, b in zip(processed, processed[1:]))
    levels = (
        np.bincount([f.level for f in processed], minlength=NUM_LEVELS) if processed else np.zeros(NUM_LEVELS)
    )
    return {
        "cpu_s": round(sum(f.cpu_ms for f in processed) / 1e3, 3),
        "energy_j": round(energy_j, 2),
        "deadline_hit_rate": round(hit_rate, 4),
        "map50": None if map50 is None else round(map50, 4),
        "gesture_accuracy": _round(gesture_accuracy(frames, trace_of)) if with_gesture else None,
        "utility": round((map50 or 0.0) * hit_rate, 4),
        "switches_per_min": round(switches / (duration_s / 60.0), 2),
        "frames": len(frames),
        "processed": len(processed),
        "level_histogram": [int(v) for v in levels],
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


# --- the suite ------------------------------------------------------------------------------------


def simulate(
    bench: BenchMission,
    idle: Trace,
    loaded: Trace | None,
    policy: str,
    profile: LatencyProfile,
    learned_model: str = "",
    frame_drop_keep: float = 0.5,
) -> tuple[dict, list]:
    """Run one policy on one mission; returns (metrics, frame log)."""

    def trace_of(frame: FrameLog) -> Trace:
        return (loaded or idle) if bench.contended(frame.arrival) else idle

    notes = ""
    if policy == "oracle":
        frames = run_oracle(bench, idle, loaded)
        # energy of the chosen path: re-run it with the chosen levels fixed per frame
        energy = _energy_of(bench, idle, loaded, frames)
    else:
        if policy.startswith("static_L"):
            source: LevelSource = StaticLevel(int(policy[len("static_L") :]))
        elif policy == "frame_drop":
            source = FrameDrop(frame_drop_keep, level=idle.num_levels - 1)
            notes = f"full level on {source.keep:.3f} of the frames (asked {frame_drop_keep:.3f})"
        else:
            source = ControllerSource(policy, profile, learned_model)
            if source.fallback_reason:
                notes = source.fallback_reason
        sim = ReplaySim(bench, idle, loaded, source)
        frames = sim.run()
        energy = sim.energy_j
        if sim.bad_samples:
            lost = f"{sim.bad_samples} unusable trace sample(s) counted as missed"
            notes = f"{notes}; {lost}" if notes else lost
    # frame_drop changes which frames the gesture recognizer sees (a throttled camera topic), which
    # the recorded consecutive-frame clips cannot replay: not reported in replay mode.
    metrics = run_metrics(
        frames, energy, bench.mission.duration_s, trace_of, with_gesture=policy != "frame_drop"
    )
    if notes:
        metrics["notes"] = notes
    return {"policy": policy, **metrics}, frames


class _Replay(LevelSource):
    def __init__(self, levels: dict[int, int]) -> None:
        self.levels = levels

    def level(self, t: float, seq: int) -> int | None:
        return self.levels.get(seq)


def _energy_of(bench: BenchMission, idle: Trace, loaded: Trace | None, frames: list[FrameLog]) -> float:
    sim = ReplaySim(bench, idle, loaded, _Replay({f.seq: f.level for f in frames if f.level >= 0}))
    sim.run()
    return sim.energy_j


def run_suite(
    idle: Trace,
    loaded: Trace | None,
    missions: list[BenchMission],
    learned_model: str = "",
    policies: tuple[str, ...] = POLICIES,
    progress: Callable[[str], None] = _say,
) -> dict:
    """Every policy on every mission; frame_drop's kept fraction matches auto's CPU seconds."""
    from tnn_ros.paths import find_package_file

    profile = LatencyProfile.from_card(find_package_file("models", "detector.card.json"))
    result = {"missions": []}
    for bench in missions:
        started = time.monotonic()
        rows = {}
        for policy in [p for p in policies if p != "frame_drop"]:
            rows[policy], _ = simulate(bench, idle, loaded, policy, profile, learned_model)
        if "frame_drop" in policies:
            full = rows.get(f"static_L{NUM_LEVELS - 1}")
            target = rows.get("auto") or rows.get("learned")
            keep = (target["cpu_s"] / full["cpu_s"]) if full and target and full["cpu_s"] > 0 else 0.5
            rows["frame_drop"], _ = simulate(bench, idle, loaded, "frame_drop", profile, frame_drop_keep=keep)
            rows["frame_drop"]["matched_cpu_of"] = "auto"
        ordered = [rows[p] for p in policies if p in rows]
        entry = {
            "name": bench.name,
            "duration_s": bench.mission.duration_s,
            "notes": bench.notes,
            "deadline_ms": [list(k) for k in bench.mission.deadline_keyframes],
            "contention_windows_s": [list(w) for w in bench.contention],
            "policies": ordered,
        }
        result["missions"].append(entry)
        best = max(ordered, key=lambda r: r["utility"])
        progress(
            f"mission {bench.name}: {len(ordered)} policies in {time.monotonic() - started:.1f} s; "
            f"best utility {best['utility']:.3f} ({best['policy']})"
        )
    result["summary"] = summarize(result)
    return result


def summarize(result: dict) -> dict:
    """Mean utility / energy per policy over the missions, and the issue's comparisons."""
    per_policy: dict[str, dict[str, list[float]]] = {}
    for mission in result["missions"]:
        for row in mission["policies"]:
            entry = per_policy.setdefault(
                row["policy"], {"utility": [], "energy_j": [], "cpu_s": [], "deadline_hit_rate": []}
            )
            for key in entry:
                if row.get(key) is not None:  # live runs may lack a figure (failed run, no cpu_ms)
                    entry[key].append(row[key])
    means = {
        p: {k: (round(float(np.mean(v)), 4) if v else None) for k, v in d.items()}
        for p, d in per_policy.items()
        if d["utility"]
    }
    statics = {p: m for p, m in means.items() if p.startswith("static_L")}
    best_static = max(statics, key=lambda p: statics[p]["utility"]) if statics else None
    non_oracle = {p: m for p, m in means.items() if p != "oracle"}
    best_policy = max(non_oracle, key=lambda p: non_oracle[p]["utility"]) if non_oracle else None
    summary = {"mean_over_missions": means, "best_static": best_static, "best_non_oracle": best_policy}
    if "learned" in means and best_static:
        learned = means["learned"]["utility"]
        summary["learned_vs_best_static"] = round(learned - means[best_static]["utility"], 4)
        if "oracle" in means and means["oracle"]["utility"] > 0:
            summary["learned_fraction_of_oracle"] = round(learned / means["oracle"]["utility"], 4)
    return summary


def pareto_plot(result: dict, path: str | Path) -> None:
    """Energy vs utility, one point per policy (mean over missions), one panel per mission too."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    missions = result["missions"]
    panels = len(missions) + 1
    cols = 3
    rows = math.ceil(panels / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 4 * rows), squeeze=False)
    means = result["summary"]["mean_over_missions"]
    datasets = [("mean over missions", [{"policy": p, **m} for p, m in means.items()])]
    datasets += [(m["name"], m["policies"]) for m in missions]
    for ax, (title, rows_) in zip(axes.flat, datasets):
        for row in rows_:
            if row.get("energy_j") is None or row.get("utility") is None:
                continue
            name = row["policy"]
            marker = "o" if name.startswith("static") else ("*" if name in ("learned", "oracle") else "s")
            ax.scatter(row["energy_j"], row["utility"], marker=marker, s=60 if marker == "*" else 30)
            ax.annotate(
                name.replace("static_", ""),
                (row["energy_j"], row["utility"]),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
        ax.set_title(title)
        ax.set_xlabel("energy (J, sim from measured CPU)")
        ax.set_ylabel("utility (mAP@0.5 x deadline hit rate)")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(datasets) :]:
        ax.axis("off")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown_table(result: dict) -> str:
    lines = []
    for mission in result["missions"]:
        lines += [
            f"### {mission['name']} ({mission['duration_s']:.0f} s)",
            "",
            "| policy | cpu_s | energy_j | hit rate | mAP@0.5 | gesture | utility | switches/min |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in mission["policies"]:

            def f(key, fmt):
                return "n/a" if row.get(key) is None else format(row[key], fmt)

            lines.append(
                f"| {row['policy']} | {f('cpu_s', '.2f')} | {f('energy_j', '.1f')} | "
                f"{f('deadline_hit_rate', '.3f')} | {f('map50', '.3f')} | "
                f"{f('gesture_accuracy', '.3f')} | "
                f"{f('utility', '.3f')} | {f('switches_per_min', '.1f')} |"
            )
        lines.append("")
    summary = result["summary"]
    lines.append(
        "mean utility over missions: "
        + ", ".join(f"{p} {m['utility']:.3f}" for p, m in summary["mean_over_missions"].items())
    )
    return "\n".join(lines)


# --- live mode ------------------------------------------------------------------------------------

LIVE_POLICIES = ("static_L0", "static_L7", "auto", "learned")
LIVE_STRATEGIES = ("rule", "deadline", "auto", "learned")  # any of them via --policies


def paired_queue_ms(frame_times: list[float], queue_ms: np.ndarray, within_s: float = 0.05) -> np.ndarray:
    """The queueing delay of each frame: the ``queue_ms`` sample (rows of t, ms) nearest in time.

    Perception publishes a frame's ``queue_ms`` right after its detections; a frame with no finite
    sample within ``within_s`` gets NaN (unknown: its latency counts without queueing).
    """
    out = np.full(len(frame_times), np.nan)
    if len(queue_ms) == 0:
        return out
    times = queue_ms[:, 0]
    for i, t in enumerate(frame_times):
        nearest = int(np.argmin(np.abs(times - t)))
        if abs(times[nearest] - t) <= within_s and math.isfinite(queue_ms[nearest, 1]):
            out[i] = float(queue_ms[nearest, 1])
    return out


def live_metrics(bag: Path, duration_s: float) -> dict:
    """The suite's metrics from one recorded live run (the demo's bag analysis).

    ``deadline_hit_rate`` counts, over every frame the camera published, the frames whose result
    reported a latency (plus its queueing delay, on ``queue_paired`` frames) within the deadline in
    force; ``energy_j`` is the resource monitor's battery (voltage x current); ``cpu_s`` is the sum
    of per-frame ``cpu_ms`` where perception publishes it.
    """
    from tnn_ros.demo.analysis import (
        _value_at,
        energy_joules,
        load_run,
    )
    from tnn_ros.demo.analysis import (
        detection_map50 as bag_map50,
    )
    from tnn_ros.demo.analysis import (
        gesture_accuracy as bag_gesture_accuracy,
    )

    run = load_run(bag)
    in_window = {stamp for stamp, t in run.truth.items() if 0.0 <= t.get("t", -1.0) <= duration_s}
    published = max(len(in_window), 1)
    # Results count for the frames published in the window only: a frame published just before it
    # but answered inside it would otherwise be a hit without a published frame (hit rate > 1).
    frames = [
        f
        for f in run.frames
        if 0.0 <= f["t"] <= duration_s and (not in_window or int(f.get("stamp_ns", -1)) in in_window)
    ]
    # the frame's queueing delay (arrival -> start) counts, as in replay
    queue = paired_queue_ms([f["t"] for f in frames], run.queue_ms)
    hits = 0
    for frame, queue_ms in zip(frames, queue):
        deadline = _value_at(run.deadline, frame["t"])
        latency = float(frame.get("latency_ms", math.nan)) + (0.0 if math.isnan(queue_ms) else queue_ms)
        hits += int(math.isfinite(latency) and (not math.isfinite(deadline) or latency <= deadline))
    queued = int(np.sum(~np.isnan(queue)))
    map50 = bag_map50(frames, run.truth)
    cpu = [float(f["cpu_ms"]) for f in frames if isinstance(f.get("cpu_ms"), (int, float))]
    levels = [int(f.get("level", -1)) for f in frames]
    hit_rate = hits / published
    energy = energy_joules(run.battery, 0.0, duration_s)
    return {
        "cpu_s": round(sum(cpu) / 1e3, 3) if cpu else None,
        "energy_j": None if energy is None else round(energy, 2),
        "deadline_hit_rate": round(hit_rate, 4),
        "map50": None if map50 is None else round(map50, 4),
        "gesture_accuracy": _round(bag_gesture_accuracy(run.gestures, run.truth)),
        "utility": round((map50 or 0.0) * hit_rate, 4),
        "switches_per_min": round(sum(a != b for a, b in zip(levels, levels[1:])) / (duration_s / 60.0), 2),
        "frames": published,
        "processed": len(frames),
        "queue_paired": queued,
    }


def run_live(args, policies: tuple[str, ...], out: Path) -> dict:
    """Each policy live over DDS with the real nodes (tnn-demo's runner), bounded.

    Missions: the demo mission, and ``contention`` (the demo mission with a second process loading
    one core for the middle third).
    """
    import rclpy
    from rclpy.context import Context
    from rclpy.signals import SignalHandlerOptions

    from tnn_ros.demo.runner import DemoOptions, DemoRunner, RunSpec

    duration = 20.0 if args.quick else 60.0

    class LiveRunner(DemoRunner):
        contention: tuple[float, float] | None = None

        def _recorder_command(self, spec, bag):
            # the suite reads detections/json; the vision_msgs copy is left out (the recorder's type
            # store did not know vision_msgs/Detection2D here and exited)
            command = super()._recorder_command(spec, bag)
            at = command.index("--exclude") + 1
            command[at] += r"|/detections$"
            return command

        def _mission_loop(self, spec, bag, monitor, processes, status):
            if self.contention is None:
                return super()._mission_loop(spec, bag, monitor, processes, status)
            stop = threading.Event()

            def load_core() -> None:  # the hog runs while the mission time is inside the window
                hog = None
                try:
                    while not stop.is_set():
                        t = monitor.mission_time() or 0.0
                        inside = self.contention[0] <= t < self.contention[1]
                        if inside and hog is None:
                            hog = _cpu_hog()
                        elif not inside and hog is not None:
                            hog.kill()
                            hog.wait()
                            hog = None
                        stop.wait(0.05)
                finally:
                    if hog is not None:
                        hog.kill()
                        hog.wait()

            watcher = threading.Thread(target=load_core, daemon=True)
            watcher.start()
            try:
                return super()._mission_loop(spec, bag, monitor, processes, status)
            finally:
                stop.set()
                watcher.join(timeout=5.0)

    # the mission clock starts at perception's first measured frame: the seconds DDS takes to match the
    # camera and perception at start-up are not the controller's misses (frames after it still count)
    options = DemoOptions(
        duration_s=duration, output=out.parent / "control_live", baseline=False, mission_start="first_frame"
    )
    runner = LiveRunner(options)
    os.environ.update({k: runner.env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")})
    context = Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    result = {"missions": []}
    try:
        for name, window in (("demo", None), ("contention", (duration / 3, 2 * duration / 3))):
            runner.contention = window
            rows = []
            for policy in policies:
                strategy, fixed = policy, None
                if policy.startswith("static_L"):
                    strategy, fixed = "manual", (int(policy[len("static_L") :]) + 1) / NUM_LEVELS
                spec = RunSpec(
                    f"{name}_{policy}",
                    strategy,
                    manual_windows=False,
                    record_images=False,
                    fixed_utilization=fixed,
                )
                started = time.monotonic()
                outcome = runner.run_once(spec, context)
                if not outcome.completed:
                    rows.append({"policy": policy, "error": outcome.reason.splitlines()[0]})
                    _say(f"live {name} {policy}: failed: {outcome.reason}")
                    continue
                rows.append({"policy": policy, **live_metrics(outcome.bag, duration)})
                _say(
                    f"live {name} {policy}: utility {rows[-1]['utility']:.3f} "
                    f"({time.monotonic() - started:.0f} s)"
                )
            result["missions"].append(
                {
                    "name": name,
                    "duration_s": duration,
                    "contention_windows_s": [list(window)] if window else [],
                    "policies": rows,
                }
            )
    finally:
        if context.ok():
            rclpy.shutdown(context=context)
    return result


def default_learned_model() -> str:
    try:
        from tnn_ros.paths import find_package_file

        return str(find_package_file("models", "controller.pt"))
    except FileNotFoundError:
        return ""


def load_or_record(
    path: Path | None, num_frames: int, seed: int, threads: int, contention: bool, rerecord: bool
) -> Trace:
    if path is not None and path.is_file() and not rerecord:
        trace = Trace.load(path)
        if (
            trace.num_frames >= num_frames
            and trace.meta.get("seed") == seed
            and bool(trace.meta.get("contention")) == contention
        ):
            _say(f"traces: {path} ({trace.num_frames} frames, recorded {trace.meta.get('recorded_s')} s)")
            return trace
    _say(
        f"recording {'contention' if contention else 'idle'} traces: {num_frames} frames x 8 levels "
        f"(seed {seed}, {threads} threads)"
    )
    trace = record_traces(num_frames, seed=seed, threads=threads, contention=contention)
    if path is not None:
        trace.save(path)
        _say(f"wrote {path}")
    return trace


def learned_training_seeds(model: str) -> list[int]:
    """Scene seeds of the traces a controller file was trained on (from its card; [] if unknown)."""
    if not model:
        return []
    from tnn_ros.control.learned import card_path_of

    try:
        card = json.loads(card_path_of(model).read_text())
        sources = card.get("training", {}).get("sources", [])
        seeds = {s.get("recorded", {}).get("seed") for s in sources if isinstance(s, dict)}
    except (OSError, ValueError, AttributeError):
        return []
    return sorted(s for s in seeds if isinstance(s, int))


MEANED = (
    "cpu_s",
    "energy_j",
    "deadline_hit_rate",
    "map50",
    "gesture_accuracy",
    "utility",
    "switches_per_min",
)


def merge_seeds(runs: list[dict]) -> dict:
    """One result whose missions hold each policy's mean over the seeds' runs (same missions/policies).

    A figure missing in some seed (None) is the mean of the seeds that have it; ``per_seed`` keeps
    every run as it was, so nothing is lost.
    """
    missions = []
    for index, mission in enumerate(runs[0]["missions"]):
        rows = []
        for position, row in enumerate(mission["policies"]):
            same = [run["missions"][index]["policies"][position] for run in runs]
            merged = {"policy": row["policy"]}
            for key in MEANED:
                values = [r[key] for r in same if r.get(key) is not None]
                merged[key] = round(float(np.mean(values)), 4) if values else None
            merged["per_seed_utility"] = [r["utility"] for r in same]
            merged["level_histogram"] = [int(v) for v in np.sum([r["level_histogram"] for r in same], axis=0)]
            rows.append(merged)
        missions.append({**{k: v for k, v in mission.items() if k != "policies"}, "policies": rows})
    result = {"missions": missions, "per_seed": runs}
    result["summary"] = summarize(result)
    result["summary"]["best_non_oracle_per_seed"] = {
        str(run["seed"]): run["summary"]["best_non_oracle"] for run in runs
    }
    return result


def _utilities(summary: dict) -> str:
    means = summary["mean_over_missions"]
    keys = [k for k in ("learned", "auto", summary.get("best_static"), "oracle") if k in means]
    return ", ".join(f"{k} {means[k]['utility']:.3f}" for k in keys)


def main(argv: list[str] | None = None) -> int:
    """`tnn-bench control --json PATH [--quick] [--mode replay|live]`."""
    parser = argparse.ArgumentParser(prog="tnn-bench control", description=__doc__.split("\n")[0])
    parser.add_argument("--json", required=True, help="write the results here")
    parser.add_argument("--quick", action="store_true", help="shorter missions and traces (about 2 minutes)")
    parser.add_argument("--mode", choices=("replay", "live"), default="replay")
    parser.add_argument("--plot", default=None, help="Pareto plot PNG (default: next to --json)")
    parser.add_argument("--markdown", default=None, help="also write the tables here")
    parser.add_argument(
        "--traces", default=None, help="trace directory (default: next to --json); existing traces are reused"
    )
    parser.add_argument("--rerecord", action="store_true", help="record the traces again")
    parser.add_argument("--frames", type=int, default=None, help="frames per trace (default 300, quick 120)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads while recording (1: two threads thrash on a loaded 2-core machine)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        nargs="+",
        default=[0],
        help="scene sequence seed(s) of the evaluation traces; with several, every mission runs on each "
        "seed's traces and `missions` holds the means over the seeds (`per_seed` each one)",
    )
    parser.add_argument(
        "--learned-model", default=None, help="controller file (default: shipped models/controller.pt)"
    )
    parser.add_argument("--policies", default=None, help="comma-separated subset of " + ",".join(POLICIES))
    args = parser.parse_args(argv)
    known = (
        POLICIES
        if args.mode == "replay"
        else LIVE_POLICIES + LIVE_STRATEGIES + tuple(f"static_L{k}" for k in range(NUM_LEVELS))
    )
    default = POLICIES if args.mode == "replay" else LIVE_POLICIES
    policies = default if not args.policies else tuple(p.strip() for p in args.policies.split(","))
    unknown = [p for p in policies if p not in known]
    if unknown:
        parser.error(
            f"unknown policies {unknown} for --mode {args.mode}; known: {', '.join(dict.fromkeys(known))}"
        )
    out = Path(args.json)
    if args.mode == "live":
        result = run_live(args, policies, out)
        result["mode"] = "live"
        result["summary"] = summarize(result)
        return _write(result, out, args)
    traces_dir = Path(args.traces) if args.traces else out.parent / "control_traces"
    frames = args.frames or (120 if args.quick else 300)
    learned = args.learned_model if args.learned_model is not None else default_learned_model()
    _say(f"learned controller: {learned or 'none (falls back to auto)'}")
    seeds = list(dict.fromkeys(args.seed))
    overlap = sorted(set(seeds) & set(learned_training_seeds(learned)))
    if overlap:
        _say(
            f"warning: the learned controller was trained on seed(s) {overlap} of these traces: "
            "its figures there are not held out"
        )
    runs = []
    for seed in seeds:
        idle = load_or_record(
            traces_dir / f"idle_seed{seed}.npz", frames, seed, args.threads, False, args.rerecord
        )
        loaded = load_or_record(
            traces_dir / f"contention_seed{seed}.npz", frames, seed, args.threads, True, args.rerecord
        )
        missions = build_missions(idle, quick=args.quick)
        started = time.monotonic()
        if len(seeds) > 1:
            _say(f"seed {seed}:")
        run = run_suite(idle, loaded, missions, learned_model=learned, policies=policies)
        run["seed"] = seed
        run["conditions"] = {
            "trace_frames": idle.num_frames,
            "threads": idle.meta.get("threads"),
            "cores": idle.meta.get("cores"),
            "loadavg_while_recording": idle.meta.get("loadavg_after"),
            "contention_loadavg": loaded.meta.get("loadavg_after"),
            "full_level_median_ms": {
                "idle": round(float(np.median(idle.latency_ms[:, -1])), 2),
                "contention": round(float(np.median(loaded.latency_ms[:, -1])), 2),
            },
            "lowest_level_median_ms": {
                "idle": round(float(np.median(idle.latency_ms[:, 0])), 2),
                "contention": round(float(np.median(loaded.latency_ms[:, 0])), 2),
            },
            "learned_model": learned,
            "learned_trained_on_this_seed": seed in overlap,
            "simulate_s": round(time.monotonic() - started, 1),
        }
        runs.append(run)
    if len(runs) == 1:
        result = runs[0]
        result.pop("seed")
    else:
        result = merge_seeds(runs)
        for run in runs:
            best = run["summary"]["best_non_oracle"]
            _say(f"seed {run['seed']}: best non-oracle {best}, " + _utilities(run["summary"]))
    result["mode"] = "replay"
    result["seeds"] = seeds
    result["learned_trained_on_seeds"] = learned_training_seeds(learned)
    return _write(result, out, args)


def _write(result: dict, out: Path, args: argparse.Namespace) -> int:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    plot = Path(args.plot) if args.plot else out.with_suffix(".png")
    pareto_plot(result, plot)
    table = markdown_table(result)
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    _say(f"wrote {out} and {plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
