"""Analysis of a recorded tnn_ros run, from the bag alone (no ROS needed).

``load_run`` reads the topics of one perception/controller/resource run out of a rosbag2 bag with
rosbags; ``summarize`` turns it into the figures of ``summary.json`` (deadline hit rate, mean
utilization, energy, detection mAP@0.5 against the simulated ground truth, gesture accuracy per
frame and per gesture event), over
the whole run and per mission phase. Topics are found by name suffix, so any namespace works.

Times in a :class:`RunSeries` are seconds since the first resource (battery) message, which is when
the simulated mission starts.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tnn_ros.bag.common import BagError, normalize_type_name, open_reader, typestore_with

# Topic suffix -> what it is. The namespace in front (default /tnn) does not matter.
TOPIC_SUFFIXES = {
    "battery": "/battery",
    "thermal": "/thermal",
    "deadline": "/deadline_ms",
    "cpu_load": "/cpu_load",
    "setpoint": "/utilization_setpoint",
    "applied": "/utilization_applied",
    "latency": "/latency_ms",
    "cpu_ms": "/cpu_ms",
    "queue_ms": "/queue_ms",
    "energy_meter": "/energy_j",
    "detections": "/detections/json",
    "gesture": "/gesture/json",
    "truth": "/ground_truth/json",
    "reason": "/controller/reason",
    "diagnostics": "/diagnostics",
}
NO_GESTURE_LABELS = ("no_gesture",)


@dataclass
class Phase:
    """A named stretch of the mission timeline, ``[start_s, end_s)`` seconds from mission start."""

    name: str
    start_s: float
    end_s: float
    manual: bool = False  # an operator's override window: the controller does not decide there


@dataclass
class RunSeries:
    """Time series of one run, seconds since mission start (``t0_ns`` in bag time)."""

    bag: str
    t0_ns: int
    duration_s: float
    battery: np.ndarray = field(default_factory=lambda: np.empty((0, 4)))  # t, fraction, volts, amps
    temperature: np.ndarray = field(default_factory=lambda: np.empty((0, 2)))  # t, deg C
    deadline: np.ndarray = field(default_factory=lambda: np.empty((0, 2)))  # t, ms
    cpu_load: np.ndarray = field(default_factory=lambda: np.empty((0, 2)))
    setpoint: np.ndarray = field(default_factory=lambda: np.empty((0, 2)))
    applied: np.ndarray = field(default_factory=lambda: np.empty((0, 2)))
    latency: np.ndarray = field(default_factory=lambda: np.empty((0, 2)))
    cpu_ms: np.ndarray = field(default_factory=lambda: np.empty((0, 2)))  # t, measured CPU ms/frame
    queue_ms: np.ndarray = field(default_factory=lambda: np.empty((0, 2)))
    energy_meter: np.ndarray = field(default_factory=lambda: np.empty((0, 2)))  # t, J since meter start
    energy_sources: list[tuple[float, str]] = field(default_factory=list)  # resource monitor says
    frames: list[dict] = field(default_factory=list)  # detections/json payloads + "t" (receive time)
    gestures: list[dict] = field(default_factory=list)  # gesture/json payloads + "t"
    truth: dict[int, dict] = field(default_factory=dict)  # stamp_ns -> ground_truth/json payload + "t"
    reasons: list[tuple[float, str]] = field(default_factory=list)


def _pick_topics(topics: list[str], namespace: str | None) -> dict[str, str]:
    """Map each kind in TOPIC_SUFFIXES to the bag topic carrying it (preferring ``namespace``)."""
    chosen = {}
    for kind, suffix in TOPIC_SUFFIXES.items():
        matches = sorted(t for t in topics if t.endswith(suffix))
        if namespace is not None and kind != "diagnostics":  # /diagnostics is absolute
            exact = f"{namespace.rstrip('/')}{suffix}"
            matches = [exact] if exact in topics else []
        # /a/controller/reason also ends with /reason-like suffixes of other kinds: take the shortest
        if matches:
            chosen[kind] = min(matches, key=len)
    return chosen


def load_run(bag: str | Path, namespace: str | None = None) -> RunSeries:
    """Read one run's resource, control and perception topics from ``bag``.

    Raises:
        BagError: the bag cannot be read, or it holds none of the topics of a run.

    """
    reader = open_reader(bag)
    try:
        topics = _pick_topics([c.topic for c in reader.connections], namespace)
        if "detections" not in topics and "battery" not in topics:
            raise BagError(f"{bag}: no tnn_ros run in this bag (no */detections/json or */battery topic)")
        kind_of = {topic: kind for kind, topic in topics.items()}
        connections = [c for c in reader.connections if c.topic in kind_of]
        store = typestore_with(sorted({c.msgtype for c in connections}))
        # bags from other tools may spell types the legacy way (std_msgs/String)
        type_of = {c.msgtype: normalize_type_name(c.msgtype) for c in connections}
        rows: dict[str, list] = {kind: [] for kind in TOPIC_SUFFIXES}
        for connection, stamp_ns, data in reader.messages(connections=connections):
            kind = kind_of[connection.topic]
            try:
                msg = store.deserialize_cdr(data, type_of[connection.msgtype])
                rows[kind].append((stamp_ns, _decode(kind, msg)))
            except (ValueError, KeyError, TypeError):  # a bad payload is skipped, not fatal
                continue
        start_ns, end_ns = reader.start_time, reader.end_time
    finally:
        reader.close()

    t0_ns = _mission_start_ns(rows["diagnostics"])
    if t0_ns is None:
        t0_ns = rows["battery"][0][0] if rows["battery"] else start_ns
    run = RunSeries(bag=str(bag), t0_ns=t0_ns, duration_s=max(0.0, (end_ns - t0_ns) / 1e9))

    def series(kind: str, width: int) -> np.ndarray:
        values = [((ns - t0_ns) / 1e9, *value) for ns, value in rows[kind]]
        return np.asarray(values, dtype=float).reshape(-1, width)

    run.battery = series("battery", 4)
    for kind, attr in (
        ("thermal", "temperature"),
        ("deadline", "deadline"),
        ("cpu_load", "cpu_load"),
        ("setpoint", "setpoint"),
        ("applied", "applied"),
        ("latency", "latency"),
        ("cpu_ms", "cpu_ms"),
        ("queue_ms", "queue_ms"),
        ("energy_meter", "energy_meter"),
    ):
        setattr(run, attr, series(kind, 2))
    run.energy_sources = [
        ((stamp_ns - t0_ns) / 1e9, source)
        for _ns, (stamp_ns, _mission_s, source) in rows["diagnostics"]
        if source
    ]
    for ns, payload in rows["detections"]:
        run.frames.append({**payload, "t": (ns - t0_ns) / 1e9})
    for ns, payload in rows["gesture"]:
        run.gestures.append({**payload, "t": (ns - t0_ns) / 1e9})
    run.truth = {
        int(payload["stamp_ns"]): {**payload, "t": (ns - t0_ns) / 1e9} for ns, payload in rows["truth"]
    }
    run.reasons = [((ns - t0_ns) / 1e9, text) for ns, text in rows["reason"]]
    return run


def _mission_start_ns(diagnostics: list[tuple[int, object]]) -> int | None:
    """When the sim's mission started, from the resource monitor's ``mission_time_s`` diagnostics.

    The first resource messages can be published before the recorder has matched the publisher, so
    the first *recorded* battery message is up to a second late; the diagnostics say the mission
    time at a stamped instant. The median over all of them is robust to the 0.1 s rounding.
    """
    starts = [
        stamp_ns - int(mission_s * 1e9)
        for _ns, (stamp_ns, mission_s, _source) in diagnostics
        if mission_s is not None
    ]
    return int(np.median(starts)) if starts else None


def _decode(kind: str, msg: object) -> object:
    """The numbers (tuple) or payload (dict / str) a message of ``kind`` contributes."""
    if kind == "diagnostics":  # (stamp_ns, mission time or None, energy_source or None)
        stamp_ns = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
        mission_s, source = None, None
        for status in msg.status:
            for item in status.values:
                if item.key == "mission_time_s":
                    try:
                        mission_s = float(item.value)
                    except ValueError:  # "not started"
                        mission_s = None
                elif item.key == "energy_source":
                    source = str(item.value)
        return (stamp_ns, mission_s, source)
    if kind == "battery":
        return (float(msg.percentage), float(msg.voltage), float(msg.current))
    if kind == "thermal":
        return (float(msg.temperature),)
    if kind == "reason":
        return str(msg.data)
    if kind in ("detections", "gesture", "truth"):
        payload = json.loads(msg.data)
        if not isinstance(payload, dict) or "stamp_ns" not in payload:
            raise ValueError("payload without stamp_ns")
        return payload
    return (float(msg.data),)


def mission_phases(mission: object) -> list[Phase]:
    """Phases of a :class:`tnn_ros.resources.mission.Mission`.

    Thermal spikes (the heat events), the tightening deadline (from where it starts to fall until
    the end of the mission) and the manual-override windows. Phases may overlap.
    """
    phases = []
    for i, (t0, t1, _watts) in enumerate(mission.heat_events):
        phases.append(
            Phase("thermal_spike" if len(mission.heat_events) == 1 else f"thermal_spike_{i + 1}", t0, t1)
        )
    keys = mission.deadline_keyframes
    for (ta, va), (_tb, vb) in zip(keys, keys[1:]):
        if vb < va:
            phases.append(Phase("deadline_tightening", ta, mission.duration_s))
            break
    for i, (t0, t1, u) in enumerate(mission.manual_windows):
        name = "manual_override" if len(mission.manual_windows) == 1 else f"manual_override_{i + 1}"
        phases.append(Phase(name, t0, t1, manual=True))
    return phases


def _value_at(series: np.ndarray, t: float) -> float:
    """Latest value of a (t, value) series at time ``t`` (NaN before the first sample)."""
    if len(series) == 0:
        return math.nan
    index = int(np.searchsorted(series[:, 0], t, side="right")) - 1
    return float(series[index, 1]) if index >= 0 else math.nan


def detection_map50(frames: list[dict], truth: dict[int, dict]) -> float | None:
    """COCO-style mAP at IoU 0.5 over frames that have ground truth (torchmetrics); None if none do."""
    import torch
    from torchmetrics.detection import MeanAveragePrecision

    predictions, targets = [], []
    for frame in frames:
        gt = truth.get(int(frame["stamp_ns"]))
        if gt is None:
            continue
        dets = frame.get("detections", [])
        predictions.append(
            {
                "boxes": torch.tensor([d["box"] for d in dets], dtype=torch.float32).reshape(-1, 4),
                "scores": torch.tensor([d["score"] for d in dets], dtype=torch.float32),
                "labels": torch.tensor([d["class_id"] for d in dets], dtype=torch.int64),
            }
        )
        objects = gt.get("objects", [])
        targets.append(
            {
                "boxes": torch.tensor([o["box"] for o in objects], dtype=torch.float32).reshape(-1, 4),
                "labels": torch.tensor([o["class_id"] for o in objects], dtype=torch.int64),
            }
        )
    if not targets or not any(len(t["labels"]) for t in targets):
        return None
    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", iou_thresholds=[0.5])
    metric.update(predictions, targets)
    value = float(metric.compute()["map"])
    return value if value >= 0.0 else None  # torchmetrics returns -1 when undefined


def gesture_accuracy(gestures: list[dict], truth: dict[int, dict]) -> float | None:
    """Fraction of emitted gesture labels equal to the ground-truth gesture of their frame."""
    matched = [
        (g["label"], truth[int(g["stamp_ns"])].get("gesture"))
        for g in gestures
        if int(g["stamp_ns"]) in truth
    ]
    if not matched:
        return None
    return sum(label == expected for label, expected in matched) / len(matched)


def gesture_event_accuracy(gestures: list[dict], truth: dict[int, dict]) -> float | None:
    """Levenshtein accuracy of the announced gesture events against the scripted gesture sequence.

    Frames are ordered by their camera stamp; the ground truth of every published frame gives the
    scripted gestures, the announcements (``gesture/json`` payloads) the recognized ones. Only the
    stretch between the first and the last announcement is scored (see
    :func:`tnn_ros.eval.gesture_events.score_stream`). None when no scripted gesture falls in it.
    """
    from tnn_ros.eval.gesture_events import score_stream

    frames = sorted((int(stamp), payload.get("gesture")) for stamp, payload in truth.items())
    announced = sorted((int(g["stamp_ns"]), g["label"]) for g in gestures if "label" in g)
    if not frames or not announced:
        return None
    scores = score_stream(
        [s / 1e9 for s, _ in frames],
        [label or "no_gesture" for _, label in frames],
        [s / 1e9 for s, _ in announced],
        [label for _, label in announced],
    )
    return scores.levenshtein_accuracy


def energy_joules(battery: np.ndarray, start_s: float = -math.inf, end_s: float = math.inf) -> float | None:
    """Integral of voltage x |current| over the battery samples in ``[start_s, end_s)``."""
    rows = battery[(battery[:, 0] >= start_s) & (battery[:, 0] < end_s)] if len(battery) else battery
    if len(rows) < 2:
        return None
    power = rows[:, 2] * np.abs(rows[:, 3])
    if not np.all(np.isfinite(power)):
        finite = np.isfinite(power)
        if finite.sum() < 2:
            return None
        rows, power = rows[finite], power[finite]
    return float(np.trapezoid(power, rows[:, 0]))


METER_SOURCES = ("rapl", "jtop", "battery")


def cpu_seconds(frames: list[dict]) -> tuple[float | None, int]:
    """Measured CPU-seconds of perception over ``frames`` (their ``cpu_ms``) and how many had it.

    Frames without a finite ``cpu_ms`` (older bags, unknown) are left out and not guessed.
    """
    values = [f.get("cpu_ms") for f in frames]
    known = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v) and v >= 0]
    return (sum(known) / 1e3 if known else None), len(known)


def run_energy(
    run: RunSeries, start_s: float = -math.inf, end_s: float = math.inf
) -> tuple[float | None, str]:
    """Energy of the run in ``[start_s, end_s)`` and its source.

    A real meter (``energy_j`` topic; the resource monitor's ``energy_source`` rapl / jtop / battery
    for the whole run) wins; a meter lost mid-run does not count (its total would be partial).
    Otherwise the sim battery's integral, whose source the resource monitor named
    (``sim-from-measured-cpu``, or ``sim-from-utilization`` before any cpu_ms arrived).
    """
    sources = [source for t, source in run.energy_sources if start_s <= t < end_s] or [
        source for _t, source in run.energy_sources
    ]
    meter = run.energy_meter
    if sources and all(source in METER_SOURCES for source in sources) and len(set(sources)) == 1:
        rows = meter[(meter[:, 0] >= start_s) & (meter[:, 0] < end_s)] if len(meter) else meter
        rows = rows[np.isfinite(rows[:, 1])] if len(rows) else rows
        if len(rows) >= 2:
            return float(rows[-1, 1] - rows[0, 1]), sources[0]
    sim_sources = [source for source in sources if source.startswith("sim")]
    # a run where cpu_ms arrived after start counts as measured from then on: name the final drive
    source = sim_sources[-1] if sim_sources else "sim-battery"
    return energy_joules(run.battery, start_s, end_s), source


def _cost_figures(frames: list[dict]) -> dict:
    cpu_s, counted = cpu_seconds(frames)
    queues = [
        float(f["queue_ms"])
        for f in frames
        if isinstance(f.get("queue_ms"), (int, float)) and math.isfinite(f["queue_ms"])
    ]
    return {
        "cpu_s": _round(cpu_s),
        "cpu_ms_per_frame": _round(cpu_s * 1e3 / counted, 3) if cpu_s is not None and counted else None,
        "mean_queue_ms": _round(float(np.mean(queues)), 2) if queues else None,
    }


def _deadline_hits(run: RunSeries, frames: list[dict]) -> list[bool]:
    """Per frame with a known deadline: whether its latency was within the deadline in force."""
    hits = []
    for frame in frames:
        deadline = _value_at(run.deadline, frame["t"])
        if math.isfinite(deadline):
            hits.append(float(frame["latency_ms"]) <= deadline)
    return hits


def _frame_figures(run: RunSeries, frames: list[dict], gestures: list[dict]) -> dict:
    hits = _deadline_hits(run, frames)
    latencies, e2e = [], []
    for frame in frames:
        latencies.append(float(frame["latency_ms"]))
        truth = run.truth.get(int(frame["stamp_ns"]))
        if truth is not None and "t" in truth:  # camera publish -> result, both as recorded
            e2e.append((frame["t"] - truth["t"]) * 1000.0)
    utilizations = [float(f["utilization"]) for f in frames]
    return {
        "frames": len(frames),
        "deadline_hit_rate": _round(float(np.mean(hits))) if hits else None,
        "mean_utilization": _round(float(np.mean(utilizations))) if utilizations else None,
        "mean_latency_ms": _round(float(np.mean(latencies)), 2) if latencies else None,
        "p95_latency_ms": _round(float(np.percentile(latencies, 95)), 2) if latencies else None,
        "mean_end_to_end_ms": _round(float(np.mean(e2e)), 2) if e2e else None,
        "detection_map50": _round(detection_map50(frames, run.truth)),
        "gesture_accuracy": _round(gesture_accuracy(gestures, run.truth)),
        **_cost_figures(frames),
        "gesture_event_accuracy": _round(gesture_event_accuracy(gestures, run.truth)),
    }


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), digits)


def summarize(run: RunSeries, phases: list[Phase] = ()) -> dict:
    """The ``summary.json`` figures of one run, overall and per phase.

    ``deadline_hit_rate``: fraction of processed frames whose inference latency (``latency_ms`` in
    ``detections/json``) was within the deadline in force when the result arrived. ``cpu_s``: the
    perception worker's measured CPU-seconds (sum of the frames' ``cpu_ms``). ``energy_j`` with
    ``energy_source``: see :func:`run_energy`; ``energy_sim_j`` is the sim battery's integral whatever
    the source. ``deadline_hit_rate_controlled``: the hit rate over the frames outside the operator's
    manual-override phases (where the controller, not a hand-set utilization, chose the level); None
    when no phase is manual.
    """
    figures = _frame_figures(run, run.frames, run.gestures)
    manual = [phase for phase in phases if phase.manual]
    if manual:
        controlled = [f for f in run.frames if not any(p.start_s <= f["t"] < p.end_s for p in manual)]
        hits = _deadline_hits(run, controlled)
        figures["deadline_hit_rate_controlled"] = _round(float(np.mean(hits))) if hits else None
    battery = run.battery
    energy, source = run_energy(run)
    figures.update(
        {
            "duration_s": _round(run.duration_s, 2),
            "frames_published": len(run.truth),
            "energy_j": _round(energy, 2),
            "energy_source": source,
            "energy_sim_j": _round(energy_joules(battery), 2),
            "battery_start": _round(float(battery[0, 1])) if len(battery) else None,
            "battery_end": _round(float(battery[-1, 1])) if len(battery) else None,
            "max_temperature_c": (
                _round(float(np.nanmax(run.temperature[:, 1])), 2) if len(run.temperature) else None
            ),
            "mean_setpoint": _round(float(np.mean(run.setpoint[:, 1]))) if len(run.setpoint) else None,
        }
    )
    figures["phases"] = {}
    for phase in phases:
        frames = [f for f in run.frames if phase.start_s <= f["t"] < phase.end_s]
        gestures = [g for g in run.gestures if phase.start_s <= g["t"] < phase.end_s]
        entry = {"start_s": _round(phase.start_s, 2), "end_s": _round(phase.end_s, 2)}
        entry.update(_frame_figures(run, frames, gestures))
        entry["energy_j"] = _round(run_energy(run, phase.start_s, phase.end_s)[0], 2)
        figures["phases"][phase.name] = entry
    return figures


def compare(auto: dict, baseline: dict) -> dict:
    """Side-by-side gains of the throttled run over the static full-utilization baseline."""

    def ratio(a: float | None, b: float | None) -> float | None:
        return _round(1.0 - a / b) if a is not None and b else None

    def delta(a: float | None, b: float | None) -> float | None:
        return _round(a - b) if a is not None and b is not None else None

    def factor(full: float | None, throttled: float | None) -> float | None:
        return _round(full / throttled, 3) if full is not None and throttled else None

    # energies from different sources (a meter lost in one run) are not compared
    same_source = auto.get("energy_source") == baseline.get("energy_source")
    energy, energy_base = (auto.get("energy_j"), baseline.get("energy_j")) if same_source else (None, None)
    return {
        # static full CPU-seconds / throttled CPU-seconds (measured in the perception worker)
        "cpu_saving_factor": factor(baseline.get("cpu_s"), auto.get("cpu_s")),
        "cpu_ms_per_frame_factor": factor(baseline.get("cpu_ms_per_frame"), auto.get("cpu_ms_per_frame")),
        "energy_saved_fraction": ratio(energy, energy_base),
        "energy_saving_factor": factor(energy_base, energy),
        "deadline_hit_rate_delta": delta(auto.get("deadline_hit_rate"), baseline.get("deadline_hit_rate")),
        "detection_map50_delta": delta(auto.get("detection_map50"), baseline.get("detection_map50")),
        "gesture_accuracy_delta": delta(auto.get("gesture_accuracy"), baseline.get("gesture_accuracy")),
        "gesture_event_accuracy_delta": delta(
            auto.get("gesture_event_accuracy"), baseline.get("gesture_event_accuracy")
        ),
        "battery_left_delta": delta(auto.get("battery_end"), baseline.get("battery_end")),
    }
