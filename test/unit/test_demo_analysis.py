"""The demo's bag analysis (summary.json figures, phases, timeline) on hand-made run bags, no ROS."""

import json
import math

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer

from tnn_ros.bag.common import typestore_with
from tnn_ros.bag.synthetic import BAG_START_NS, ResourceScenario, write_replay_bag
from tnn_ros.demo.analysis import (
    Phase,
    compare,
    detection_map50,
    energy_joules,
    load_run,
    mission_phases,
    summarize,
)
from tnn_ros.demo.report import write_report
from tnn_ros.resources.mission import Mission

S = 1_000_000_000
TYPES = [
    "sensor_msgs/msg/BatteryState",
    "sensor_msgs/msg/Temperature",
    "std_msgs/msg/Float32",
    "std_msgs/msg/String",
]


def _run_bag(path, frames=20, fps=10.0, namespace="/tnn", power_w=6.0, hits=None):
    """A recorded run: resources at 10 Hz (``power_w``, 12 V), deadline 40 ms, frames with known outputs.

    Frames 0..9: perfect detections; frames 10..19: no detections. The first ``hits`` frames (default
    half) have latency 20 ms (hit), the others 50 ms (miss). Gestures: correct on even frames, wrong
    on odd ones. Ground truth has one object per frame.
    """
    hits = frames // 2 if hits is None else hits
    store = typestore_with(TYPES)
    T = store.types
    Battery, Temperature = T["sensor_msgs/msg/BatteryState"], T["sensor_msgs/msg/Temperature"]
    Float32, String, Header, Time = (
        T["std_msgs/msg/Float32"],
        T["std_msgs/msg/String"],
        T["std_msgs/msg/Header"],
        T["builtin_interfaces/msg/Time"],
    )
    events = []
    nan = float("nan")
    for k in range(int(frames / fps * 10) + 1):
        ns = BAG_START_NS + k * S // 10
        header = Header(stamp=Time(sec=ns // S, nanosec=ns % S), frame_id="b")
        events.append(
            (
                ns,
                "battery",
                Battery(
                    header=header,
                    voltage=12.0,
                    temperature=nan,
                    current=-power_w / 12.0,
                    charge=nan,
                    capacity=nan,
                    design_capacity=nan,
                    percentage=0.6 - 0.01 * k,
                    power_supply_status=2,
                    power_supply_health=1,
                    power_supply_technology=0,
                    present=True,
                    cell_voltage=np.zeros(0, np.float32),
                    cell_temperature=np.zeros(0, np.float32),
                    location="",
                    serial_number="",
                ),
                TYPES[0],
            )
        )
        thermal = Temperature(header=header, temperature=40.0 + k, variance=0.0)
        events.append((ns, "thermal", thermal, TYPES[1]))
        events.append((ns, "deadline_ms", Float32(data=40.0), TYPES[2]))
        events.append((ns, "utilization_setpoint", Float32(data=0.5), TYPES[2]))
    for i in range(frames):
        stamp = BAG_START_NS + int(i / fps * S) + 1000  # frames just after the first resource message
        box = [10.0 + i, 20.0, 60.0 + i, 80.0]
        gesture = "wave" if i < frames // 2 else "no_gesture"
        truth = {
            "stamp_ns": stamp,
            "frame_id": "camera",
            "seq": i,
            "gesture": gesture,
            "objects": [{"class_id": 1, "label": "ball", "box": box}],
        }
        detections = [{"class_id": 1, "label": "ball", "score": 0.9, "box": box}] if i < frames // 2 else []
        latency = 20.0 if i < hits else 50.0
        out = {
            "stamp_ns": stamp,
            "frame_id": "camera",
            "level": 3,
            "utilization": 0.5,
            "latency_ms": latency,
            "image_size": [320, 240],
            "detections": detections,
        }
        said = gesture if i % 2 == 0 else "swipe"
        events.append((stamp, "ground_truth/json", String(data=json.dumps(truth)), TYPES[3]))
        events.append((stamp + 30_000_000, "detections/json", String(data=json.dumps(out)), TYPES[3]))
        events.append(
            (
                stamp + 30_000_000,
                "gesture/json",
                String(
                    data=json.dumps(
                        {
                            "stamp_ns": stamp,
                            "label": said,
                            "class_id": 0,
                            "confidence": 0.9,
                            "probabilities": {},
                            "level": 3,
                            "utilization": 0.5,
                        }
                    )
                ),
                TYPES[3],
            )
        )
        events.append((stamp + 30_000_000, "utilization_applied", Float32(data=0.5), TYPES[2]))
    events.append((BAG_START_NS + 5 * S // 10, "detections/json", String(data="not json"), TYPES[3]))
    events.sort(key=lambda e: e[0])
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        connections = {}
        for ns, topic, msg, type_name in events:
            name = f"{namespace}/{topic}"
            if name not in connections:
                connections[name] = writer.add_connection(name, type_name, typestore=store)
            writer.write(connections[name], ns, store.serialize_cdr(msg, type_name))
    return path


def test_summary_figures_match_the_known_run(tmp_path):
    run = load_run(_run_bag(tmp_path / "run"))
    assert len(run.frames) == 20, "the malformed payload is skipped, the 20 good ones are kept"
    summary = summarize(run, [Phase("first_half", 0.0, 0.95), Phase("second_half", 0.95, 5.0)])
    assert summary["frames"] == 20 and summary["frames_published"] == 20
    assert summary["deadline_hit_rate"] == pytest.approx(0.5)
    assert summary["mean_utilization"] == pytest.approx(0.5)
    assert summary["gesture_accuracy"] == pytest.approx(0.5)
    # 6 W for the 2.0 s between the first and the last battery sample
    assert summary["energy_j"] == pytest.approx(12.0, rel=1e-3)
    assert summary["battery_start"] == pytest.approx(0.6) and summary["battery_end"] == pytest.approx(0.4)
    assert summary["max_temperature_c"] == pytest.approx(60.0)
    # half the frames have their object found, half have it missed: recall caps AP at 0.5
    assert summary["detection_map50"] == pytest.approx(0.5, abs=0.02)
    first, second = summary["phases"]["first_half"], summary["phases"]["second_half"]
    assert first["frames"] == 10 and first["deadline_hit_rate"] == 1.0
    assert first["detection_map50"] == pytest.approx(1.0)
    assert second["deadline_hit_rate"] == 0.0 and second["detection_map50"] == pytest.approx(0.0)
    assert summary["mean_end_to_end_ms"] == pytest.approx(30.0, abs=0.01)
    assert "deadline_hit_rate_controlled" not in summary, "no manual phase, nothing to leave out"


def test_controlled_hit_rate_leaves_out_the_manual_windows(tmp_path):
    run = load_run(_run_bag(tmp_path / "run", hits=5))  # frames 0-4 hit (t 0.0-0.4 s), 5-19 miss
    manual = Phase("manual_override", 0.5, 2.0, manual=True)  # frames 5..19 were hand-set
    summary = summarize(run, [manual])
    assert summary["deadline_hit_rate"] == pytest.approx(5 / 20)
    assert summary["deadline_hit_rate_controlled"] == pytest.approx(1.0)
    assert summary["phases"]["manual_override"]["deadline_hit_rate"] == pytest.approx(0.0)
    assert "deadline_hit_rate_controlled" not in summarize(run, [Phase("manual_override", 0.5, 2.0)])


def test_map50_rewards_overlap_above_half_only():
    truth = {1: {"objects": [{"class_id": 0, "box": [0, 0, 10, 10]}]}}

    def frame(box):
        return [{"stamp_ns": 1, "detections": [{"class_id": 0, "score": 0.8, "box": box}]}]

    assert detection_map50(frame([0, 0, 10, 10]), truth) == pytest.approx(1.0)
    assert detection_map50(frame([0, 0, 10, 6]), truth) == pytest.approx(1.0)  # IoU 0.6
    assert detection_map50(frame([0, 0, 10, 4]), truth) == pytest.approx(0.0)  # IoU 0.4
    assert detection_map50(frame([0, 0, 10, 10]), {}) is None  # nothing to match


def test_energy_integrates_voltage_times_current():
    battery = np.array([[0.0, 0.5, 12.0, -1.0], [1.0, 0.5, 12.0, -1.0], [3.0, 0.5, 10.0, -2.0]])
    assert energy_joules(battery) == pytest.approx(12.0 + 2 * (12.0 + 20.0) / 2)
    assert energy_joules(battery, 1.0, 10.0) == pytest.approx(32.0)
    assert energy_joules(battery[:1]) is None


def test_phases_come_from_the_mission():
    mission = Mission.from_dict(
        {
            "mission": {
                "duration_s": 60.0,
                "heat": [{"start_s": 12.0, "end_s": 26.0, "extra_w": 6.0}],
                "deadline_ms": [
                    {"t_s": 0.0, "value": 80.0},
                    {"t_s": 30.0, "value": 80.0},
                    {"t_s": 40.0, "value": 30.0},
                ],
                "manual": [{"start_s": 46.0, "end_s": 54.0, "utilization": 0.5}],
            }
        },
        duration_s=30.0,
    )
    phases = {p.name: (p.start_s, p.end_s) for p in mission_phases(mission)}
    assert phases == {
        "thermal_spike": (6.0, 13.0),
        "deadline_tightening": (15.0, 30.0),
        "manual_override": (23.0, 27.0),
    }
    assert [p.name for p in mission_phases(mission) if p.manual] == ["manual_override"]


def test_compare_reports_gains_against_the_baseline():
    gains = compare(
        {"energy_j": 60.0, "deadline_hit_rate": 0.9, "detection_map50": 0.7, "battery_end": 0.3},
        {"energy_j": 100.0, "deadline_hit_rate": 0.4, "detection_map50": 0.8, "battery_end": 0.2},
    )
    assert gains["energy_saved_fraction"] == pytest.approx(0.4)
    assert gains["deadline_hit_rate_delta"] == pytest.approx(0.5)
    assert gains["detection_map50_delta"] == pytest.approx(-0.1)
    assert gains["gesture_accuracy_delta"] is None


def test_report_and_analyze_cli_write_summary_and_timeline(tmp_path, capsys):
    from tnn_ros.demo.cli import main

    bag = _run_bag(tmp_path / "auto")  # 6 W, 10 of 20 frames in time
    baseline = _run_bag(tmp_path / "static", power_w=15.0, hits=2)  # 15 W, 2 of 20 in time
    summary = write_report(bag, tmp_path / "out", baseline_bag=baseline)
    assert (tmp_path / "out" / "timeline.png").stat().st_size > 10_000
    written = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert written["frames"] == 20 and written["baseline_static_full"]["frames"] == 20
    # by hand: 6 W vs 15 W over the same 2.0 s -> 12 J vs 30 J, 1 - 12/30 = 0.6 of the energy saved
    assert written["energy_j"] == pytest.approx(12.0, rel=1e-3)
    assert written["baseline_static_full"]["energy_j"] == pytest.approx(30.0, rel=1e-3)
    comparison = written["comparison"]
    assert comparison["energy_saved_fraction"] == pytest.approx(0.6, abs=1e-3)
    assert comparison["deadline_hit_rate_delta"] == pytest.approx(10 / 20 - 2 / 20)
    # same detections and gestures in both runs
    assert comparison["detection_map50_delta"] == pytest.approx(0.0)
    assert comparison["gesture_accuracy_delta"] == pytest.approx(0.0)
    assert summary["files"]["timeline"].endswith("timeline.png")

    assert main(["analyze", str(bag), "--output", str(tmp_path / "cli")]) == 0
    assert "deadline hit rate" in capsys.readouterr().out
    assert (tmp_path / "cli" / "summary.json").is_file()


def test_analysis_of_a_bag_without_a_run_is_a_clear_error(tmp_path, capsys):
    from tnn_ros.demo.cli import main

    bag = tmp_path / "chat"
    store = typestore_with(["std_msgs/msg/String"])
    with Writer(bag, version=9, storage_plugin=StoragePlugin.SQLITE3) as writer:
        conn = writer.add_connection("/chat", "std_msgs/msg/String", typestore=store)
        message = store.types["std_msgs/msg/String"](data="x")
        writer.write(conn, 1, store.serialize_cdr(message, "std_msgs/msg/String"))
    assert main(["analyze", str(bag)]) == 1
    assert "no tnn_ros run" in capsys.readouterr().err


def test_synthetic_replay_bag_is_deterministic_and_follows_the_scenario(tmp_path):
    scenario = ResourceScenario(
        temperature_c=[(0.0, 50.0), (1.0, 80.0)], deadline_ms=[(0.0, 100.0), (2.0, 30.0)]
    )
    kwargs = dict(duration_s=2.0, fps=5.0, width=64, height=48, scenario=scenario)
    first = load_run(write_replay_bag(tmp_path / "a", **kwargs))
    second = load_run(write_replay_bag(tmp_path / "b", **kwargs))
    assert len(first.truth) == 10 and first.truth.keys() == second.truth.keys()
    assert [t["objects"] for t in first.truth.values()] == [t["objects"] for t in second.truth.values()]
    assert first.temperature[0, 1] == pytest.approx(50.0)
    assert first.temperature[10, 1] == pytest.approx(80.0)  # t = 1.0 s at 10 Hz
    assert first.deadline[15, 1] == pytest.approx(47.5)  # halfway down the ramp at t = 1.5 s
    assert math.isclose(first.battery[0, 2] * -first.battery[0, 3], 8.0, rel_tol=1e-6)
