"""The demo end to end: report files, a valid bag, and no process left behind.

Long tier: the whole 60 s demo mission in ``make test-long``, an 8 s version in CI (``--long-bounded``).
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tnn_ros.bag import open_reader

pytestmark = [pytest.mark.integration, pytest.mark.long]


def _processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that mention ``text`` (our unique output folder)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{pid}/stat") as handle:
                if handle.read().split()[2] == "Z":
                    continue
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{pid}: {cmdline}")
    return found


def _demo(output, ros_env, *args):
    return subprocess.Popen(
        [sys.executable, "-m", "tnn_ros.demo.cli", "--output", str(output), *args],
        env=ros_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def test_demo_writes_summary_timeline_and_bags(tmp_path, ros_env, long_size):
    output = tmp_path / "demo_output"
    duration_s = long_size(full=60, ci=8)
    proc = _demo(output, ros_env, "--duration", str(duration_s))
    try:
        # two runs (auto + static baseline) of duration_s, plus start-up and analysis
        out, _ = proc.communicate(timeout=240 + 3 * duration_s)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out[-3000:]
    assert "[auto] t=" in out and "manual override: utilization 0.50" in out, out[-3000:]
    summary = json.loads((output / "summary.json").read_text())
    for key in (
        "frames",
        "deadline_hit_rate",
        "mean_utilization",
        "energy_j",
        "detection_map50",
        "gesture_accuracy",
    ):
        assert key in summary and key in summary["baseline_static_full"], key
    assert summary["frames"] > 0 and summary["baseline_static_full"]["frames"] > 0, out[-3000:]
    assert summary["baseline_static_full"]["mean_utilization"] == pytest.approx(1.0, abs=0.01)
    assert summary["energy_j"] > 0 and summary["runs_completed"] == {"auto": True, "static_full": True}
    assert (output / "timeline.png").stat().st_size > 20_000
    reader = open_reader(output / "bag_auto")
    try:
        topics = {c.topic for c in reader.connections}
    finally:
        reader.close()
    assert {"/tnn/image", "/tnn/detections/json", "/tnn/utilization_setpoint", "/tnn/battery"} <= topics
    assert not _processes_mentioning(str(output)), "demo left processes behind"


def test_ctrl_c_stops_everything_and_keeps_the_bag(tmp_path, ros_env):
    output = tmp_path / "demo_output"
    proc = _demo(output, ros_env, "--duration", "60", "--no-baseline")
    lines = []
    try:
        deadline = time.monotonic() + 200
        for line in proc.stdout:  # wait for the mission to be running
            lines.append(line)
            if line.startswith("[auto] t=") or time.monotonic() > deadline:
                break
        time.sleep(2.0)
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    out = "".join(lines) + rest
    assert proc.returncode == 3, out[-3000:]  # 3: a run ended early, report of what was recorded
    assert "interrupted" in out
    assert (output / "bag_auto" / "metadata.yaml").is_file(), "the recorder did not close the bag"
    reader = open_reader(output / "bag_auto")
    try:
        assert reader.message_count > 0
    finally:
        reader.close()
    assert json.loads((output / "summary.json").read_text())["runs_completed"] == {"auto": False}
    assert not _processes_mentioning(str(output)), "demo left processes behind"
