"""ROS-free parts of tnn_ros.bag: type resolution, QoS conversion, clean errors for bad bags."""

import io
import subprocess
import sys

import pytest
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosbags.interfaces import QosDurability, QosReliability
from rosbags.rosbag2 import StoragePlugin, Writer

from tnn_ros.bag.common import (
    BagError,
    StatusLine,
    message_class,
    open_reader,
    qos_to_rosbags,
    typestore_with,
)
from tnn_ros.bag.player import publisher_qos
from tnn_ros.bag.recorder import subscription_qos


def _write_string_bag(path, storage="mcap", count=3):
    store = typestore_with(["std_msgs/msg/String"])
    String = store.types["std_msgs/msg/String"]
    with Writer(path, version=9, storage_plugin=StoragePlugin[storage.upper()]) as writer:
        conn = writer.add_connection("/chat", "std_msgs/msg/String", typestore=store)
        for i in range(count):
            writer.write(
                conn,
                1_000_000_000 + i * 100_000_000,
                store.serialize_cdr(String(data=f"m{i}"), "std_msgs/msg/String"),
            )
    return path


def test_message_class_resolves_installed_types_and_rejects_others():
    from sensor_msgs.msg import Image

    assert message_class("sensor_msgs/msg/Image") is Image
    with pytest.raises(BagError, match="not installed"):
        message_class("no_such_pkg/msg/Thing")
    with pytest.raises(BagError, match="not installed"):
        message_class("std_msgs/msg/NoSuchMessage")
    with pytest.raises(BagError, match="malformed"):
        message_class("String")


def test_typestore_knows_every_type_the_project_publishes():
    names = [
        "sensor_msgs/msg/Image",
        "sensor_msgs/msg/BatteryState",
        "sensor_msgs/msg/Temperature",
        "std_msgs/msg/Float32",
        "std_msgs/msg/String",
        "diagnostic_msgs/msg/DiagnosticArray",
        "rcl_interfaces/msg/Log",
        "rcl_interfaces/msg/ParameterEvent",
    ]
    store = typestore_with(names)
    for name in names:
        assert name in store.fielddefs
    with pytest.raises(BagError, match="no message definition"):
        typestore_with(["no_such_pkg/msg/Thing"])


def test_qos_conversion_keeps_policies_and_depth():
    profile = QoSProfile(
        depth=7, reliability=ReliabilityPolicy.BEST_EFFORT, durability=DurabilityPolicy.TRANSIENT_LOCAL
    )
    qos = qos_to_rosbags(profile)
    assert qos.depth == 7
    assert qos.reliability == QosReliability.BEST_EFFORT
    assert qos.durability == QosDurability.TRANSIENT_LOCAL
    assert qos.deadline.sec == 0 and qos.deadline.nsec == 0


def test_recorder_subscribes_best_effort_unless_every_publisher_is_reliable():
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    best_effort = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
    assert subscription_qos([reliable]).reliability == ReliabilityPolicy.RELIABLE
    assert subscription_qos([reliable, best_effort]).reliability == ReliabilityPolicy.BEST_EFFORT
    # replay offers what was recorded
    assert publisher_qos([qos_to_rosbags(best_effort)]).reliability == ReliabilityPolicy.BEST_EFFORT
    assert publisher_qos([qos_to_rosbags(reliable)]).reliability == ReliabilityPolicy.RELIABLE


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_open_reader_reads_a_valid_bag(tmp_path, storage):
    reader = open_reader(_write_string_bag(tmp_path / "bag", storage))
    try:
        assert reader.message_count == 3
        assert [c.topic for c in reader.connections] == ["/chat"]
    finally:
        reader.close()


def test_open_reader_gives_one_line_reasons_for_bad_bags(tmp_path):
    with pytest.raises(BagError, match="no such bag"):
        open_reader(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BagError, match="metadata.yaml missing"):
        open_reader(tmp_path / "empty")
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "metadata.yaml").write_text("this is: [not a bag")
    with pytest.raises(BagError, match="damaged or unsupported"):
        open_reader(garbage)
    truncated = _write_string_bag(tmp_path / "truncated", "mcap", count=50)
    storage_file = next(truncated.glob("*.mcap"))
    storage_file.write_bytes(storage_file.read_bytes()[:200])
    with pytest.raises(BagError, match="damaged or unsupported") as info:
        open_reader(truncated)
    assert "\n" not in str(info.value)


def test_cli_reports_a_damaged_bag_in_one_line_with_exit_code_1(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "metadata.yaml").write_text("garbage")
    for command in (
        ["info", str(tmp_path / "bad")],
        ["play", str(tmp_path / "bad")],
        ["play", str(tmp_path / "nope")],
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "tnn_ros.bag.cli", *command], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.strip().count("\n") == 0, proc.stderr
        assert proc.stderr.startswith("tnn-bag: error:")
        assert "Traceback" not in proc.stderr


def test_cli_info_lists_topics_and_counts(tmp_path, capsys):
    from tnn_ros.bag.cli import main

    assert main(["info", str(_write_string_bag(tmp_path / "bag", "sqlite3"))]) == 0
    out = capsys.readouterr().out
    assert "/chat  [std_msgs/msg/String]  3 msgs" in out
    assert "sqlite3" in out


def test_status_line_rewrites_in_place_on_a_tty_and_rate_limits_otherwise():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty = Tty()
    line = StatusLine(stream=tty, tty_period_s=0.0)
    line.update("long status text")
    line.update("short")
    line.finish()
    assert tty.getvalue() == "\rlong status text\rshort" + " " * 11 + "\n"

    plain = io.StringIO()
    line = StatusLine(stream=plain, period_s=60.0)
    for i in range(100):
        line.update(f"status {i}")
    assert plain.getvalue() == "status 0\n"


def test_typestore_registers_nested_types_of_installed_messages_so_a_bag_can_describe_them(tmp_path):
    """vision_msgs/Detection2DArray -> Detection2D -> BoundingBox2D ...: all must be known to write it."""
    pytest.importorskip("vision_msgs.msg")
    store = typestore_with(["vision_msgs/msg/Detection2DArray"])
    for name in (
        "vision_msgs/msg/Detection2D",
        "vision_msgs/msg/BoundingBox2D",
        "vision_msgs/msg/ObjectHypothesisWithPose",
    ):
        assert name in store.fielddefs
    with Writer(tmp_path / "bag", version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        writer.add_connection("/detections", "vision_msgs/msg/Detection2DArray", typestore=store)
