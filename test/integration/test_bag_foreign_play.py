"""`tnn-bag play` on bags that our writer did not write, received over real DDS (loopback).

The bags (see foreign_bags.py) come from the official MCAP writer (a single .mcap file, no
metadata.yaml, a legacy ``sensor_msgs/Image`` type name and an uninstalled message type) and from
sqlite3 written by hand in the rosbag2 schema.
"""

import subprocess
import sys

import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import String

from tnn_ros.bag import play

from foreign_bags import image_pixels, write_mcap_with_official_library, write_sqlite3_bag
from ros_utils import RosHarness, unique_namespace

pytestmark = pytest.mark.integration

RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)


def test_single_mcap_file_plays_legacy_types_and_skips_the_uninstalled_one(tmp_path):
    ns = unique_namespace("foreign_mcap")
    bag = write_mcap_with_official_library(tmp_path / "wild.mcap", count=5, namespace=ns)
    with RosHarness() as ros:
        chat = ros.collect(f"{ns}/chat", String, RELIABLE)
        images = ros.collect(f"{ns}/camera/image_raw", Image, RELIABLE)
        summary = play(
            bag,
            rate=5.0,
            progress=False,
            delay=0.0,
            wait_for_subscribers={f"{ns}/chat": 1, f"{ns}/camera/image_raw": 1},
        )
        assert ros.wait_for(lambda: len(chat) == 5 and len(images) == 5, timeout_s=10.0), (
            len(chat),
            len(images),
        )
    assert summary.per_topic == {f"{ns}/chat": 5, f"{ns}/camera/image_raw": 5}
    assert set(summary.skipped_topics) == {f"{ns}/widget"}
    assert "acme_msgs" in summary.skipped_topics[f"{ns}/widget"]
    assert "not installed" in summary.skipped_topics[f"{ns}/widget"]
    assert [m.data for m in chat] == [f"c{i}" for i in range(5)]
    # the image bytes the official writer serialized arrive intact in a sensor_msgs/msg/Image
    assert [(m.width, m.height, m.encoding, m.step, bytes(m.data)) for m in images] == [
        (4, 2, "rgb8", 12, image_pixels(i)) for i in range(5)
    ]
    assert images[0].header.frame_id == "cam"


def test_only_uninstalled_types_is_a_clear_error(tmp_path):
    from tnn_ros.bag import BagError

    ns = unique_namespace("foreign_widget")
    bag = write_mcap_with_official_library(tmp_path / "wild.mcap", count=2, namespace=ns)
    with pytest.raises(BagError, match="no playable topic"):
        play(bag, topics=[f"{ns}/widget"], delay=0.0, progress=False)


@pytest.mark.parametrize("with_metadata", [True, False])
def test_hand_written_sqlite3_bag_plays_both_spellings(tmp_path, with_metadata):
    ns = unique_namespace("foreign_sqlite")
    db3 = write_sqlite3_bag(tmp_path / "sq", count=6, namespace=ns, with_metadata=with_metadata)
    with RosHarness() as ros:
        chat = ros.collect(f"{ns}/chat", String, RELIABLE)
        legacy = ros.collect(f"{ns}/legacy_chat", String, RELIABLE)
        summary = play(
            db3.parent if with_metadata else db3, rate=5.0, progress=False, delay=0.0, wait_for_subscribers=1
        )
        assert ros.wait_for(lambda: len(chat) == 6 and len(legacy) == 6, timeout_s=10.0), (
            len(chat),
            len(legacy),
        )
    assert summary.skipped_topics == {}
    assert [m.data for m in chat] == [f"s{i}" for i in range(6)]
    assert [m.data for m in legacy] == [f"l{i}" for i in range(6)]


def test_cli_plays_a_single_mcap_file_and_names_the_skipped_topic(tmp_path, ros_env):
    ns = unique_namespace("foreign_cli")
    bag = write_mcap_with_official_library(tmp_path / "wild.mcap", count=3, namespace=ns)
    with RosHarness() as ros:
        images = ros.collect(f"{ns}/camera/image_raw", Image, RELIABLE)
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "tnn_ros.bag.cli",
                "play",
                str(bag),
                "--quiet",
                "--wait-for-subscribers",
                "1",
                "--topics",
                f"{ns}/camera/image_raw",
                f"{ns}/widget",
            ],
            env=ros_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        assert ros.wait_for(lambda: len(images) == 3, timeout_s=10.0), len(images)
    assert f"skipped {ns}/widget:" in proc.stderr and "not installed" in proc.stderr
    assert "malformed" not in proc.stderr
