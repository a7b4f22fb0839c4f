"""The recorder (`tnn-bag record`, MCAP) under faults: SIGKILL mid-write and a full disk.

What was written is checked with the independent ``mcap`` library's stream reader, which reads records
in file order and stops at the first incomplete one: every complete 1 MiB chunk must be readable.
The disk is "full" through RLIMIT_FSIZE on the recorder process only (no mounts, no root).
"""

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import Image
from std_msgs.msg import String

from ros_utils import RosHarness, unique_namespace

pytestmark = pytest.mark.integration

W, H = 160, 120  # 57.6 kB per frame: a 1 MiB chunk every ~18 frames


def tnn_bag() -> str:
    path = Path(sys.executable).with_name("tnn-bag")
    return str(path) if path.exists() else "tnn-bag"


def frame(index: int) -> Image:
    rgb = np.full((H, W, 3), index % 256, dtype=np.uint8)
    msg = Image(height=H, width=W, encoding="rgb8", step=W * 3, data=rgb.tobytes())
    msg.header.frame_id = str(index)
    return msg


def read_complete_prefix(path: Path) -> tuple[list[Image], str]:
    """Images in the MCAP file up to its first incomplete record, and why reading stopped."""
    from mcap.records import Message
    from mcap.stream_reader import StreamReader

    images, stopped = [], "end of file"
    with open(path, "rb") as stream:
        try:
            for record in StreamReader(stream).records:
                if isinstance(record, Message):
                    images.append(deserialize_message(record.data, Image))
        except Exception as error:  # the truncated tail
            stopped = f"{type(error).__name__}: {error}"
    return images, stopped


def publish_frames(ros, publisher, until, limit_s: float, rate_hz: float = 40.0) -> int:
    index, end = 0, time.monotonic() + limit_s
    while time.monotonic() < end and not until():
        publisher.publish(frame(index))
        index += 1
        time.sleep(1.0 / rate_hz)
    return index


def start_recorder(output: Path, topic: str, env: dict, log, file_size_limit: int | None = None):
    def limit():
        if file_size_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    return subprocess.Popen(
        [tnn_bag(), "record", "-o", str(output), "--storage", "mcap", "--quiet", topic],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=limit,
    )


def mcap_file(output: Path) -> Path | None:
    files = sorted(output.glob("*.mcap")) if output.is_dir() else []
    return files[0] if files else None


def test_recorder_killed_mid_write_leaves_complete_chunks_readable(ros_env, tmp_path):
    ns = unique_namespace("rec_kill")
    output = tmp_path / "killed"
    with RosHarness("rec_kill_pub") as ros, open(tmp_path / "record.log", "w") as log:
        publisher = ros.publisher(f"{ns}/image", Image)
        recorder = start_recorder(output, f"{ns}/image", ros_env, log)
        try:

            def written():
                path = mcap_file(output)
                return path is not None and path.stat().st_size > 3 * 2**20

            publish_frames(ros, publisher, written, 180.0)
            assert written(), (tmp_path / "record.log").read_text()
            recorder.send_signal(signal.SIGKILL)
            assert recorder.wait(timeout=30) == -signal.SIGKILL
        finally:
            if recorder.poll() is None:
                recorder.kill()
    path = mcap_file(output)
    assert not (output / "metadata.yaml").exists()  # killed: no index, no metadata
    images, stopped = read_complete_prefix(path)
    assert len(images) >= 2 * 17, (len(images), stopped)  # at least the two complete 1 MiB chunks
    assert all(im.width == W and im.height == H and len(im.data) == W * H * 3 for im in images)
    indices = [int(im.header.frame_id) for im in images]
    assert indices == sorted(indices)  # a prefix of the stream, in order
    assert all(im.data[0] == index % 256 for im, index in zip(images, indices))


def test_disk_full_stops_recording_with_a_clear_error_and_nothing_else_is_affected(ros_env, tmp_path):
    ns = unique_namespace("rec_full")
    output = tmp_path / "full"
    limit = 2 * 2**20 + 100_000  # room for two chunks, then "File too large"
    with RosHarness("rec_full_pub") as ros, open(tmp_path / "record.log", "w") as log:
        publisher = ros.publisher(f"{ns}/image", Image)
        heartbeat = ros.publisher(f"{ns}/heartbeat", String)
        beats = ros.collect(f"{ns}/heartbeat", String)
        received = ros.collect(f"{ns}/image", Image)
        recorder = start_recorder(output, f"{ns}/image", ros_env, log, file_size_limit=limit)
        try:
            publish_frames(ros, publisher, lambda: recorder.poll() is not None, 180.0)
            code = recorder.wait(timeout=30)
        finally:
            if recorder.poll() is None:
                recorder.kill()
        text = (tmp_path / "record.log").read_text()
        # the rest of the system carries on: publishing and receiving on this machine still work
        before = len(received)
        publish_frames(ros, publisher, lambda: len(received) > before + 5, 30.0)
        heartbeat.publish(String(data="alive"))
        assert ros.wait_for(lambda: beats and len(received) > before + 5, 10.0)
    assert code == 1, text
    assert "File too large" in text and "recording stopped, bag closed" in text, text
    assert "Traceback" not in text, text
    path = mcap_file(output)
    assert path.stat().st_size <= limit
    images, _ = read_complete_prefix(path)
    assert len(images) >= 17, len(images)  # the complete chunks before the limit
    assert os.access(path, os.R_OK)
