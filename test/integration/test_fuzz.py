"""Fuzz the running nodes (seeded, bounded): 10,000 malformed images, setpoints and resource messages.

Sent over DDS to a `bringup` process (all four nodes, no sim camera: the frames are ours). Checks:
the process and every node survive, each class of bad input shows up in /diagnostics under its
reason, perception's books balance (frames received = processed + dropped by reason), and real
frames are still answered afterwards.
"""

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import BatteryState, Image, Temperature
from std_msgs.msg import Float32, String

from ros_utils import RosHarness

pytestmark = pytest.mark.integration

NS = "fuzz_check"
SEED = 20261127
N_IMAGES, N_SETPOINTS, N_RESOURCES = 4000, 3000, 3000
W, H = 64, 48
BAD_FLOATS = (math.nan, math.inf, -math.inf, -1.0, 2.0, 1e30, -1e30)


def bad_image(rng: np.random.Generator) -> Image:
    """One malformed image: wrong sizes, step, encoding or data length (never a valid frame)."""
    kind = rng.integers(0, 7)
    good = bytes(W * H * 3)
    if kind == 0:
        cut = int(rng.integers(0, len(good)))
        return Image(height=H, width=W, encoding="rgb8", step=W * 3, data=good[:cut])
    if kind == 1:
        encoding = str(rng.choice(["", "yuv422", "rgb16", "16UC1", "x" * 40]))
        return Image(height=H, width=W, encoding=encoding, step=W * 3, data=good)
    if kind == 2:
        return Image(height=0, width=int(rng.integers(0, 5000)), encoding="rgb8", step=0, data=b"")
    if kind == 3:
        return Image(height=H, width=W, encoding="rgb8", step=int(rng.integers(0, W * 3)), data=good)
    if kind == 4:
        return Image(height=60000, width=60000, encoding="mono8", step=60000, data=bytes(16))
    if kind == 5:
        return Image(height=H, width=W, encoding="bgr8", step=W * 3 + 1000, data=good)
    return Image(
        height=int(rng.integers(1, 4)),
        width=int(rng.integers(1, 4)),
        encoding="rgba8",
        step=1,
        data=bytes(int(rng.integers(0, 8))),
    )


def real_image(stamp_s: int) -> Image:
    rgb = np.random.default_rng(stamp_s).integers(0, 256, (H * 2, W * 2, 3), dtype=np.uint8)
    msg = Image(height=H * 2, width=W * 2, encoding="rgb8", step=W * 6, data=rgb.tobytes())
    msg.header.stamp.sec = stamp_s
    return msg


def send_until(ros, predicate, send, timeout_s: float, period_s: float = 1.0) -> bool:
    """Call ``send()`` every ``period_s`` until ``predicate()`` holds or ``timeout_s`` passes."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        send()
        if ros.wait_for(predicate, min(period_s, max(0.0, end - time.monotonic()))):
            return True
    return predicate()


def latest_status(diagnostics: list, suffix: str) -> dict:
    for array in reversed(diagnostics):
        for status in array.status:
            if status.name.endswith(suffix):
                return {kv.key: kv.value for kv in status.values}
    return {}


def test_fuzz_running_nodes(ros_env, tmp_path):
    log_path = tmp_path / "bringup.log"
    bringup = Path(sys.executable).with_name("bringup")
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [str(bringup), "--backend", "sim", "--no-sim-camera", "--namespace", NS],
            env=ros_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        with RosHarness("fuzzer") as ros:
            diagnostics = ros.collect("/diagnostics", DiagnosticArray)
            answers = ros.collect(f"/{NS}/detections/json", String)
            reliable = QoSProfile(
                history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE
            )
            images = ros.publisher(f"/{NS}/image", Image, reliable)
            setpoints = ros.publisher(f"/{NS}/utilization_setpoint", Float32, reliable)
            floats = {
                name: ros.publisher(f"/{NS}/{name}", Float32, reliable)
                for name in ("cpu_load", "deadline_ms", "latency_ms", "utilization_applied")
            }
            battery = ros.publisher(f"/{NS}/battery", BatteryState, reliable)
            thermal = ros.publisher(f"/{NS}/thermal", Temperature, reliable)

            def answered():
                return {json.loads(m.data)["stamp_ns"] for m in answers}

            # the models load first: a real frame every second until one is answered
            assert send_until(
                ros, lambda: 1_000_000_000 in answered(), lambda: images.publish(real_image(1)), 240.0
            ), log_path.read_text()[-3000:]

            rng = np.random.default_rng(SEED)
            sent = {"image": 0, "setpoint": 0, "resource": 0}
            for i in range(N_IMAGES + N_SETPOINTS + N_RESOURCES):
                which = rng.choice(3, p=[0.4, 0.3, 0.3])
                if which == 0 and sent["image"] < N_IMAGES:
                    images.publish(bad_image(rng))
                    sent["image"] += 1
                elif which == 1 and sent["setpoint"] < N_SETPOINTS:
                    setpoints.publish(Float32(data=float(rng.choice(BAD_FLOATS))))
                    sent["setpoint"] += 1
                else:
                    value = float(rng.choice(BAD_FLOATS))
                    target = rng.integers(0, 6)
                    if target == 0:
                        battery.publish(BatteryState(percentage=value, present=True))
                    elif target == 1:
                        thermal.publish(Temperature(temperature=value if not math.isnan(value) else 1e9))
                    else:
                        list(floats.values())[target - 2].publish(Float32(data=value))
                    sent["resource"] += 1
                if i % 200 == 0:
                    time.sleep(0.05)  # let the nodes drain their queues
                    assert process.poll() is None, log_path.read_text()[-3000:]
            assert sum(sent.values()) == N_IMAGES + N_SETPOINTS + N_RESOURCES

            # perception's books balance once it is idle: received = processed + dropped (by reason)
            def perception_balanced():
                values = latest_status(diagnostics, ": perception")
                if not values:
                    return False
                drops = sum(int(v) for k, v in values.items() if k.startswith("dropped_"))
                return int(values["frames_received"]) == int(values["frames_processed"]) + drops

            assert ros.wait_for(perception_balanced, 60.0), latest_status(diagnostics, ": perception")
            perception = latest_status(diagnostics, ": perception")
            reasons = {k for k, v in perception.items() if k.startswith("dropped_") and int(v) > 0}
            assert reasons - {"dropped_superseded"}, perception  # decode failures by their own reason
            assert int(perception["bad_setpoints_rejected"]) > 0, perception
            assert int(perception["bad_setpoints_clamped"]) > 0, perception
            controller = latest_status(diagnostics, ": controller")
            assert int(controller["dropped.total"]) > 0, controller
            for name in ("battery", "thermal", "deadline", "cpu_load", "latency", "applied"):
                assert int(controller.get(f"dropped.{name}", 0)) > 0, (name, controller)
            monitor = latest_status(diagnostics, ": resource_monitor")
            assert int(monitor["errors.bad_utilization"]) > 0, monitor
            counted = ("dropped_", "frames_", "bad_")
            print(
                "fuzz:",
                sent,
                {k: v for k, v in perception.items() if k.startswith(counted)},
                {k: v for k, v in controller.items() if k.startswith(("dropped.", "unknown."))},
                {"errors.bad_utilization": monitor["errors.bad_utilization"]},
            )

            # real frames are still answered
            for second in (2, 3, 4):
                frame, stamp = real_image(second), second * 1_000_000_000
                assert send_until(ros, lambda: stamp in answered(), lambda: images.publish(frame), 60.0), (
                    log_path.read_text()[-3000:]
                )
            assert process.poll() is None, log_path.read_text()[-3000:]
    finally:
        if process.poll() is None:
            process.send_signal(2)
            code = process.wait(timeout=60)
            assert code == 0, log_path.read_text()[-3000:]
