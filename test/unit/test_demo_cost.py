"""Demo summary cost fields (cpu_s, cpu_ms_per_frame, energy_j + energy_source, cpu_saving_factor)."""

import json
import math

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer

from tnn_ros.bag.common import typestore_with
from tnn_ros.bag.synthetic import BAG_START_NS
from tnn_ros.demo.analysis import compare, cpu_seconds, load_run, summarize

S = 1_000_000_000
TYPES = [
    "sensor_msgs/msg/BatteryState",
    "std_msgs/msg/Float32",
    "std_msgs/msg/Float64",
    "std_msgs/msg/String",
    "diagnostic_msgs/msg/DiagnosticArray",
]


def _bag(path, cpu_ms, sources, meter_j=None, seconds=4):
    """A run: battery at 10 Hz (12 V x 0.5 A = 6 W), 10 frames/s with the given cpu_ms each,
    resource-monitor diagnostics at 1 Hz naming ``sources[k]`` as energy_source, an optional meter."""
    store = typestore_with(TYPES)
    T = store.types
    Header, Time = T["std_msgs/msg/Header"], T["builtin_interfaces/msg/Time"]
    events = []
    nan = math.nan
    for k in range(seconds * 10 + 1):
        ns = BAG_START_NS + k * S // 10
        header = Header(stamp=Time(sec=ns // S, nanosec=ns % S), frame_id="b")
        events.append(
            (
                ns,
                "/tnn/battery",
                T["sensor_msgs/msg/BatteryState"](
                    header=header,
                    voltage=12.0,
                    temperature=nan,
                    current=-0.5,
                    charge=nan,
                    capacity=nan,
                    design_capacity=nan,
                    percentage=0.6,
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
        if meter_j is not None:
            events.append((ns, "/tnn/energy_j", T["std_msgs/msg/Float64"](data=meter_j * k / 10), TYPES[2]))
        if k % 10 == 0:
            source = sources[min(k // 10, len(sources) - 1)]
            values = [
                T["diagnostic_msgs/msg/KeyValue"](key="mission_time_s", value=f"{k / 10:.1f}"),
                T["diagnostic_msgs/msg/KeyValue"](key="energy_source", value=source),
            ]
            status = T["diagnostic_msgs/msg/DiagnosticStatus"](
                level=0, name="/tnn/resource_monitor", message="", hardware_id="", values=values
            )
            events.append(
                (
                    ns,
                    "/diagnostics",
                    T["diagnostic_msgs/msg/DiagnosticArray"](header=header, status=[status]),
                    TYPES[4],
                )
            )
        if k < seconds * 10:
            payload = {
                "stamp_ns": ns + 1000,
                "frame_id": "c",
                "level": 7,
                "utilization": 1.0,
                "latency_ms": 30.0,
                "image_size": [64, 48],
                "detections": [],
                "cpu_ms": cpu_ms,
                "queue_ms": 2.0,
            }
            events.append(
                (
                    ns + 5_000_000,
                    "/tnn/detections/json",
                    T["std_msgs/msg/String"](data=json.dumps(payload)),
                    TYPES[3],
                )
            )
    events.sort(key=lambda e: e[0])
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        connections = {}
        for ns, topic, msg, type_name in events:
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, type_name, typestore=store)
            writer.write(connections[topic], ns, store.serialize_cdr(msg, type_name))
    return path


def test_cpu_seconds_count_only_finite_measurements():
    frames = [{"cpu_ms": 10.0}, {"cpu_ms": None}, {}, {"cpu_ms": float("nan")}, {"cpu_ms": 30.0}]
    assert cpu_seconds(frames) == (pytest.approx(0.04), 2)
    assert cpu_seconds([{}]) == (None, 0)


def test_summary_cost_fields_and_saving_factor_from_measured_cpu(tmp_path):
    full = summarize(load_run(_bag(tmp_path / "full", 40.0, ["sim-from-measured-cpu"])))
    throttled = summarize(load_run(_bag(tmp_path / "thr", 16.0, ["sim-from-measured-cpu"])))
    # 40 frames x 40 ms = 1.6 CPU-s; 40 x 16 ms = 0.64 CPU-s
    assert full["cpu_s"] == pytest.approx(1.6) and throttled["cpu_s"] == pytest.approx(0.64)
    assert full["cpu_ms_per_frame"] == pytest.approx(40.0)
    assert throttled["mean_queue_ms"] == pytest.approx(2.0)
    assert full["energy_source"] == "sim-from-measured-cpu"
    assert full["energy_j"] == pytest.approx(24.0, rel=1e-3)  # 6 W x 4 s of battery samples
    comparison = compare(throttled, full)
    assert comparison["cpu_saving_factor"] == pytest.approx(2.5)


def test_a_meter_for_the_whole_run_is_the_energy_source(tmp_path):
    run = summarize(load_run(_bag(tmp_path / "rapl", 10.0, ["rapl"], meter_j=5.0)))
    assert run["energy_source"] == "rapl"
    assert run["energy_j"] == pytest.approx(20.0)  # 5 J/s x 4 s from the counter
    assert run["energy_sim_j"] == pytest.approx(24.0, rel=1e-3)


def test_a_meter_lost_mid_run_falls_back_to_the_sim(tmp_path):
    run = summarize(
        load_run(_bag(tmp_path / "lost", 10.0, ["rapl", "rapl", "sim-from-measured-cpu"], meter_j=5.0))
    )
    assert run["energy_source"] == "sim-from-measured-cpu"
    assert run["energy_j"] == pytest.approx(24.0, rel=1e-3)
    other = {"energy_j": 10.0, "energy_source": "rapl", "cpu_s": 1.0}
    gains = compare(other, run)
    assert gains["energy_saved_fraction"] is None and gains["energy_saving_factor"] is None
