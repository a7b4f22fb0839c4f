"""`tnn-bag info` and the bag reader on bags that our writer did not write (see foreign_bags.py)."""

import subprocess
import sys

import pytest

from tnn_ros.bag.common import BagError, message_class, normalize_type_name, open_reader

from foreign_bags import cdr_string, write_mcap_with_official_library, write_run_mcap, write_sqlite3_bag


def _info(bag):
    proc = subprocess.run(
        [sys.executable, "-m", "tnn_ros.bag.cli", "info", str(bag)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc.returncode, proc.stdout, proc.stderr


def test_legacy_type_names_are_normalised_and_resolve():
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    assert normalize_type_name("sensor_msgs/Image") == "sensor_msgs/msg/Image"
    assert normalize_type_name("sensor_msgs/msg/Image") == "sensor_msgs/msg/Image"
    assert message_class("sensor_msgs/Image") is Image
    assert message_class("std_msgs/String") is String
    for bad in ("Image", "a/b/c/d", "sensor_msgs/", "/Image", "sensor msgs/Image"):
        with pytest.raises(BagError, match="malformed"):
            normalize_type_name(bad)


def test_info_reads_a_single_mcap_file_from_the_official_writer(tmp_path):
    bag = write_mcap_with_official_library(tmp_path / "wild.mcap", count=5)
    assert not (tmp_path / "metadata.yaml").exists()
    code, out, err = _info(bag)
    assert code == 0, err
    assert "storage:   mcap" in out
    assert "messages:  15" in out
    assert "duration:  0.080 s" in out  # 5 messages 20 ms apart
    # types exactly as the file spells them
    assert "/foreign/chat  [std_msgs/msg/String]  5 msgs" in out
    assert "/foreign/camera/image_raw  [sensor_msgs/Image]  5 msgs" in out
    assert "/foreign/widget  [acme_msgs/msg/Widget]  5 msgs" in out


def test_reader_gives_the_official_writers_bytes_in_order(tmp_path):
    bag = write_mcap_with_official_library(tmp_path / "wild.mcap", count=4)
    reader = open_reader(bag)
    try:
        chat = next(c for c in reader.connections if c.topic == "/foreign/chat")
        payloads = [bytes(data) for _c, _t, data in reader.messages(connections=[chat])]
    finally:
        reader.close()
    # the mcap-ros2 writer pads CDR to 4 bytes; the string itself must be the hand-encoded one
    assert [p[: len(cdr_string(f"c{i}"))] for i, p in enumerate(payloads)] == [
        cdr_string(f"c{i}") for i in range(4)
    ]


@pytest.mark.parametrize("with_metadata", [True, False])
def test_info_reads_a_hand_written_sqlite3_bag(tmp_path, with_metadata):
    db3 = write_sqlite3_bag(tmp_path / "sq", count=5, with_metadata=with_metadata)
    code, out, err = _info(db3 if not with_metadata else db3.parent)
    assert code == 0, err
    assert "storage:   sqlite3" in out and "messages:  10" in out
    assert "/foreign/chat  [std_msgs/msg/String]  5 msgs" in out
    assert "/foreign/legacy_chat  [std_msgs/String]  5 msgs" in out


def test_reader_gives_the_sqlite3_rows_in_order(tmp_path):
    db3 = write_sqlite3_bag(tmp_path / "sq", count=3, with_metadata=False)
    reader = open_reader(db3)
    try:
        got = [(c.topic, bytes(data)) for c, _t, data in reader.messages()]
    finally:
        reader.close()
    expected = []
    for i in range(3):
        expected += [("/foreign/chat", cdr_string(f"s{i}")), ("/foreign/legacy_chat", cdr_string(f"l{i}"))]
    assert sorted(got) == sorted(expected)
    assert [g for g in got if g[0] == "/foreign/chat"] == [e for e in expected if e[0] == "/foreign/chat"]


def test_a_directory_without_metadata_points_at_its_storage_file(tmp_path):
    db3 = write_sqlite3_bag(tmp_path / "sq", with_metadata=False)
    code, _out, err = _info(db3.parent)
    assert code == 1 and err.count("\n") == 1
    assert "metadata.yaml missing" in err and str(db3) in err


@pytest.mark.parametrize("kind", ["mcap", "db3"])
@pytest.mark.parametrize("keep", [0.3, 0.9])
def test_a_truncated_storage_file_is_a_one_line_error(tmp_path, kind, keep):
    if kind == "mcap":
        whole = write_mcap_with_official_library(tmp_path / "whole.mcap", count=200)
    else:
        whole = write_sqlite3_bag(tmp_path / "whole", count=200, with_metadata=False)
    data = whole.read_bytes()
    truncated = tmp_path / f"cut.{kind}"
    truncated.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(BagError, match="damaged or unsupported"):
        open_reader(truncated)
    for command in ("info", "play"):
        proc = subprocess.run(
            [sys.executable, "-m", "tnn_ros.bag.cli", command, str(truncated)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.startswith("tnn-bag: error:") and proc.stderr.count("\n") == 1, proc.stderr
        assert "Traceback" not in proc.stderr


def test_a_file_that_is_not_a_bag_is_refused_clearly(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(BagError, match="not a bag"):
        open_reader(text)


def test_run_analysis_reads_a_foreign_mcap_with_legacy_type_names(tmp_path):
    from tnn_ros.demo.analysis import load_run, summarize

    run = load_run(write_run_mcap(tmp_path / "run.mcap", frames=10))
    assert len(run.frames) == 10 and len(run.truth) == 10
    summary = summarize(run)
    assert summary["frames"] == 10
    assert summary["mean_utilization"] == pytest.approx(0.5)
    # by hand: every other object found exactly, none of the others -> AP@0.5 = recall cap 0.5
    assert summary["detection_map50"] == pytest.approx(0.5, abs=0.02)
