"""Deterministic input bags for replay tests: simulated camera frames, ground truth, a resource trace.

The bag is written directly with rosbags (no ROS graph involved), so the same seed and scenario
always give the same messages. Topics (under ``namespace``, default ``/tnn``) are what the
sim camera and the resource monitor would publish: ``image``, ``ground_truth/json``, ``battery``,
``thermal``, ``deadline_ms``, ``cpu_load``. Replaying it feeds the perception and controller nodes
without the sim camera or the resource monitor running.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer

from tnn_ros.bag.common import typestore_with

BAG_START_NS = 1_700_000_000 * 1_000_000_000  # fixed epoch: stamps are the same on every run


@dataclass
class ResourceScenario:
    """A resource trace as piecewise-linear keyframes ``(t_s, value)`` (held outside the range)."""

    battery_fraction: list[tuple[float, float]] = field(default_factory=lambda: [(0.0, 0.8), (60.0, 0.7)])
    temperature_c: list[tuple[float, float]] = field(default_factory=lambda: [(0.0, 50.0)])
    deadline_ms: list[tuple[float, float]] = field(default_factory=lambda: [(0.0, 100.0)])
    cpu_load: list[tuple[float, float]] = field(default_factory=lambda: [(0.0, 0.3)])
    battery_voltage: float = 12.0
    power_w: float = 8.0

    @staticmethod
    def at(keys: list[tuple[float, float]], t: float) -> float:
        """Value of a keyframe list at ``t``."""
        times, values = zip(*keys)
        return float(np.interp(t, times, values))


def _stamp(store, ns: int):
    time_type = store.types["builtin_interfaces/msg/Time"]
    return time_type(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def write_replay_bag(
    path: str | Path,
    duration_s: float = 10.0,
    fps: float = 10.0,
    width: int = 320,
    height: int = 240,
    scenario: ResourceScenario | None = None,
    resource_rate_hz: float = 10.0,
    seed: int = 0,
    num_objects: int = 4,
    gestures: bool = True,
    namespace: str = "/tnn",
    storage: str = "mcap",
) -> Path:
    """Write the input bag; frames come from :class:`tnn_ros.sim.stream.SimFrameSource`.

    Returns the bag path. Raises ``ValueError`` on bad sizes/rates (from the frame source too).
    """
    from tnn_ros.sim.stream import SimFrameSource

    if not duration_s > 0 or not fps > 0 or not resource_rate_hz > 0:
        raise ValueError("duration_s, fps and resource_rate_hz must be > 0")
    scenario = scenario or ResourceScenario()
    ns = namespace.rstrip("/")
    names = [
        "sensor_msgs/msg/Image",
        "std_msgs/msg/String",
        "sensor_msgs/msg/BatteryState",
        "sensor_msgs/msg/Temperature",
        "std_msgs/msg/Float32",
    ]
    store = typestore_with(names)
    types = store.types
    Image, String, Float32 = types[names[0]], types[names[1]], types[names[4]]
    Battery, Temperature = types[names[2]], types[names[3]]
    Header = types["std_msgs/msg/Header"]

    source = SimFrameSource(width, height, seed=seed, fps=fps, num_objects=num_objects, gestures=gestures)
    events: list[tuple[int, str, object, str]] = []  # (stamp_ns, topic, message, type)
    for seq in range(int(round(duration_s * fps))):
        stamp_ns = BAG_START_NS + int(round(seq / fps * 1e9))
        frame = source.frame_at(seq)
        header = Header(stamp=_stamp(store, stamp_ns), frame_id="camera")
        image = Image(
            header=header,
            height=height,
            width=width,
            encoding="rgb8",
            is_bigendian=0,
            step=width * 3,
            data=np.ascontiguousarray(frame.rgb, dtype=np.uint8).reshape(-1),
        )
        events.append((stamp_ns, f"{ns}/image", image, names[0]))
        truth = String(data=json.dumps(frame.ground_truth(stamp_ns, "camera")))
        events.append((stamp_ns, f"{ns}/ground_truth/json", truth, names[1]))

    for k in range(int(round(duration_s * resource_rate_hz))):
        t = k / resource_rate_hz
        stamp_ns = BAG_START_NS + int(round(t * 1e9))
        header = Header(stamp=_stamp(store, stamp_ns), frame_id="battery")
        nan = float("nan")
        battery = Battery(
            header=header,
            voltage=scenario.battery_voltage,
            temperature=nan,
            current=-scenario.power_w / scenario.battery_voltage,  # ROS: negative while discharging
            charge=nan,
            capacity=nan,
            design_capacity=nan,
            percentage=ResourceScenario.at(scenario.battery_fraction, t),
            power_supply_status=2,
            power_supply_health=1,
            power_supply_technology=0,
            present=True,
            cell_voltage=np.zeros(0, dtype=np.float32),
            cell_temperature=np.zeros(0, dtype=np.float32),
            location="sim",
            serial_number="",
        )
        events.append((stamp_ns, f"{ns}/battery", battery, names[2]))
        thermal = Temperature(
            header=Header(stamp=_stamp(store, stamp_ns), frame_id="cpu"),
            temperature=ResourceScenario.at(scenario.temperature_c, t),
            variance=0.0,
        )
        events.append((stamp_ns, f"{ns}/thermal", thermal, names[3]))
        events.append(
            (
                stamp_ns,
                f"{ns}/deadline_ms",
                Float32(data=ResourceScenario.at(scenario.deadline_ms, t)),
                names[4],
            )
        )
        events.append(
            (stamp_ns, f"{ns}/cpu_load", Float32(data=ResourceScenario.at(scenario.cpu_load, t)), names[4])
        )

    events.sort(key=lambda e: e[0])
    path = Path(path)
    with Writer(path, version=Writer.VERSION_LATEST, storage_plugin=StoragePlugin[storage.upper()]) as writer:
        connections = {}
        for stamp_ns, topic, message, type_name in events:
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, type_name, typestore=store)
            writer.write(connections[topic], stamp_ns, store.serialize_cdr(message, type_name))
    return path
