"""Every launch file under the real ``launch`` (launch_testing): nodes, topics and types, parameter
precedence, namespace, and exit code 0 of every node on the SIGINT of the launch's shutdown.

Precedence checked (docs/launch.md): shipped YAML < params_file < launch arguments actually passed;
a launch argument that is not passed never overrides the params_file.
"""

import json
import subprocess
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration

CHECK = Path(__file__).with_name("launch_file_check.py")

# The user's params_file: every value differs from the shipped YAML and from the launch defaults.
USER_PARAMS = {
    "/**/sim_camera": {"ros__parameters": {"fps": 5.0, "width": 160, "height": 120}},
    "/**/perception": {"ros__parameters": {"mode": "manual", "utilization": 0.25}},
    "/**/controller": {"ros__parameters": {"strategy": "rule", "rate_hz": 3.0}},
    "/**/resource_monitor": {"ros__parameters": {"backend": "sim", "deadline_ms": 50.0}},
}

STRING, FLOAT32, IMAGE = "std_msgs/msg/String", "std_msgs/msg/Float32", "sensor_msgs/msg/Image"


def stack_topics(ns: str) -> dict[str, str]:
    return {
        f"/{ns}/image": IMAGE,
        f"/{ns}/ground_truth/json": STRING,
        f"/{ns}/detections": "vision_msgs/msg/Detection2DArray",
        f"/{ns}/detections/json": STRING,
        f"/{ns}/gesture/json": STRING,
        f"/{ns}/utilization_applied": FLOAT32,
        f"/{ns}/latency_ms": FLOAT32,
        f"/{ns}/debug_image": IMAGE,
        f"/{ns}/utilization_setpoint": FLOAT32,
        f"/{ns}/controller/reason": STRING,
        f"/{ns}/battery": "sensor_msgs/msg/BatteryState",
        f"/{ns}/thermal": "sensor_msgs/msg/Temperature",
        f"/{ns}/cpu_load": FLOAT32,
        f"/{ns}/deadline_ms": FLOAT32,
        "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray",
    }


CASES = {
    # Whole system: the file beats every unset argument (mode, fps, backend); a passed one beats the file.
    "tnn": dict(
        file="tnn.launch.py",
        arguments={"namespace": "lt_all", "use_sim_camera": "true", "strategy": "deadline"},
        nodes=["/lt_all/sim_camera", "/lt_all/perception", "/lt_all/resource_monitor", "/lt_all/controller"],
        topics=stack_topics("lt_all"),
        parameters={
            "/lt_all/sim_camera": {"fps": 5.0, "width": 160, "height": 120},
            "/lt_all/perception": {"mode": "manual", "utilization": 0.25},
            "/lt_all/controller": {"strategy": "deadline", "rate_hz": 3.0},
            "/lt_all/resource_monitor": {"backend": "sim", "deadline_ms": 50.0},
        },
        messages=[
            "/lt_all/detections/json",
            "/lt_all/utilization_setpoint",
            "/lt_all/battery",
            "/lt_all/image",
        ],
        message_fields={"/lt_all/image": {"width": 160, "height": 120}},
        process_count=4,
        timeout_s=120.0,
    ),
    "perception": dict(
        file="perception.launch.py",
        arguments={"namespace": "lt_p", "image": "/lt_p/cam"},
        nodes=["/lt_p/perception"],
        topics={
            "/lt_p/cam": IMAGE,
            "/lt_p/detections/json": STRING,
            "/lt_p/utilization_setpoint": FLOAT32,
            "/lt_p/latency_ms": FLOAT32,
        },
        parameters={"/lt_p/perception": {"mode": "manual", "utilization": 0.25, "auto_activate": True}},
        timeout_s=90.0,
    ),
    "sim_camera": dict(
        file="sim_camera.launch.py",
        arguments={"namespace": "lt_c", "height": "100"},
        nodes=["/lt_c/sim_camera"],
        topics={"/lt_c/image": IMAGE},
        parameters={"/lt_c/sim_camera": {"fps": 5.0, "width": 160, "height": 100}},
        messages=["/lt_c/image"],
        message_fields={"/lt_c/image": {"width": 160, "height": 100}},
    ),
    "controller": dict(
        file="controller.launch.py",
        arguments={"namespace": "lt_k", "strategy": "manual"},
        nodes=["/lt_k/controller"],
        topics={"/lt_k/utilization_setpoint": FLOAT32, "/lt_k/controller/reason": STRING},
        parameters={"/lt_k/controller": {"strategy": "manual", "rate_hz": 3.0}},
        messages=["/lt_k/controller/reason"],
    ),
    "resource_monitor": dict(
        file="resource_monitor.launch.py",
        arguments={"namespace": "lt_r", "backend": "psutil"},
        nodes=["/lt_r/resource_monitor"],
        topics={
            "/lt_r/battery": "sensor_msgs/msg/BatteryState",
            "/lt_r/thermal": "sensor_msgs/msg/Temperature",
            "/lt_r/deadline_ms": FLOAT32,
        },
        parameters={"/lt_r/resource_monitor": {"backend": "psutil", "deadline_ms": 50.0}},
        messages=["/lt_r/deadline_ms"],
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_launch_file_under_real_launch(name, launch_env, tmp_path):
    params = tmp_path / "user_params.yaml"
    params.write_text(yaml.safe_dump(USER_PARAMS))
    case = dict(CASES[name])
    case["arguments"] = {**case["arguments"], "params_file": str(params)}
    env = dict(launch_env, TNN_LAUNCH_CASE=json.dumps(case))
    timeout_s = 3 * case.get("timeout_s", 60.0)
    result = subprocess.run(
        ["launch_test", str(CHECK)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=timeout_s
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"launch_test {case['file']} failed:\n{output[-6000:]}"
    for noise in ("exit code -2", "never retrieved", "context is invalid", "Traceback"):
        assert noise not in output, f"{noise!r} in the output of {case['file']}:\n{output[-6000:]}"
