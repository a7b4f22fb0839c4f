"""Bags written by other tools than ours, for the "plays any bag" tests.

Nothing here uses rosbags or tnn_ros: the MCAP bag comes from the official ``mcap`` +
``mcap-ros2-support`` writers (what Foxglove and ``ros2 bag`` tooling produce), the sqlite3 bag is
written with Python's ``sqlite3`` in the rosbag2 Jazzy schema (``rosbag2_storage_default_plugins``'
``sqlite_storage.cpp``), with the CDR bytes built by hand. Message definitions are written out
here, not read from the installed packages.
"""

from __future__ import annotations

import sqlite3
import struct
from pathlib import Path

import yaml

# Full concatenated ROS 2 message definitions, as rosbag2 stores them ("ros2msg" encoding).
STRING_DEF = "string data\n"
IMAGE_DEF = """std_msgs/Header header
uint32 height
uint32 width
string encoding
uint8 is_bigendian
uint32 step
uint8[] data
================================================================================
MSG: std_msgs/Header
builtin_interfaces/Time stamp
string frame_id
================================================================================
MSG: builtin_interfaces/Time
int32 sec
uint32 nanosec
"""
WIDGET_DEF = "int32 size\nstring name\n"  # acme_msgs is installed nowhere

START_NS = 1_600_000_000_000_000_000
PERIOD_NS = 20_000_000  # 50 Hz


def image_pixels(index: int, width: int = 4, height: int = 2) -> bytes:
    """The rgb8 bytes of image ``index``: a value that tells the images apart."""
    return bytes((index * 17 + k) % 256 for k in range(width * height * 3))


def write_mcap_with_official_library(path: Path, count: int = 5, namespace: str = "/foreign") -> Path:
    """A single ``.mcap`` file (no metadata.yaml), as the ``mcap`` CLI or Foxglove would write it.

    Topics: ``{ns}/chat`` (``std_msgs/msg/String``), ``{ns}/camera/image_raw`` typed with the legacy
    spelling ``sensor_msgs/Image``, ``{ns}/widget`` of the uninstalled ``acme_msgs/msg/Widget``.
    """
    from mcap_ros2.writer import Writer

    with open(path, "wb") as stream:
        writer = Writer(stream)
        chat = writer.register_msgdef("std_msgs/msg/String", STRING_DEF)
        image = writer.register_msgdef("sensor_msgs/Image", IMAGE_DEF)
        widget = writer.register_msgdef("acme_msgs/msg/Widget", WIDGET_DEF)
        for i in range(count):
            stamp = START_NS + i * PERIOD_NS
            writer.write_message(
                f"{namespace}/chat", chat, {"data": f"c{i}"}, log_time=stamp, publish_time=stamp, sequence=i
            )
            writer.write_message(
                f"{namespace}/camera/image_raw",
                image,
                {
                    "header": {"stamp": {"sec": stamp // 10**9, "nanosec": stamp % 10**9}, "frame_id": "cam"},
                    "height": 2,
                    "width": 4,
                    "encoding": "rgb8",
                    "is_bigendian": 0,
                    "step": 12,
                    "data": image_pixels(i),
                },
                log_time=stamp,
                publish_time=stamp,
                sequence=i,
            )
            writer.write_message(
                f"{namespace}/widget",
                widget,
                {"size": i, "name": "w"},
                log_time=stamp,
                publish_time=stamp,
                sequence=i,
            )
        writer.finish()
    return path


def cdr_string(text: str) -> bytes:
    """CDR (little endian) of a message with one ``string`` field: header, length with NUL, bytes."""
    raw = text.encode() + b"\0"
    return b"\x00\x01\x00\x00" + struct.pack("<I", len(raw)) + raw


_JAZZY_SCHEMA = """
CREATE TABLE schema(schema_version INTEGER PRIMARY KEY, ros_distro TEXT NOT NULL);
CREATE TABLE metadata(id INTEGER PRIMARY KEY, metadata_version INTEGER NOT NULL, metadata TEXT NOT NULL);
CREATE TABLE topics(id INTEGER PRIMARY KEY, name TEXT NOT NULL, type TEXT NOT NULL,
                    serialization_format TEXT NOT NULL, offered_qos_profiles TEXT NOT NULL,
                    type_description_hash TEXT NOT NULL);
CREATE TABLE message_definitions(id INTEGER PRIMARY KEY, topic_type TEXT NOT NULL, encoding TEXT NOT NULL,
                                 encoded_message_definition TEXT NOT NULL,
                                 type_description_hash TEXT NOT NULL);
CREATE TABLE messages(id INTEGER PRIMARY KEY, topic_id INTEGER NOT NULL, timestamp INTEGER NOT NULL,
                      data BLOB NOT NULL);
CREATE INDEX timestamp_idx ON messages (timestamp ASC);
"""

# What rosbag2 Jazzy writes for a reliable, volatile KEEP_LAST(10) publisher.
_RELIABLE_QOS_YAML = """- history: keep_last
  depth: 10
  reliability: reliable
  durability: volatile
  deadline:
    sec: 9223372036
    nsec: 854775807
  lifespan:
    sec: 9223372036
    nsec: 854775807
  liveliness: automatic
  liveliness_lease_duration:
    sec: 9223372036
    nsec: 854775807
  avoid_ros_namespace_conventions: false
"""


def write_sqlite3_bag(
    folder: Path, count: int = 5, namespace: str = "/foreign", with_metadata: bool = True
) -> Path:
    """A rosbag2 sqlite3 bag written with ``sqlite3`` directly: ``{folder}/{folder.name}_0.db3``.

    Topics: ``{ns}/chat`` (``std_msgs/msg/String``), ``{ns}/legacy_chat`` typed ``std_msgs/String``
    (legacy spelling). With ``with_metadata`` the folder also gets the metadata.yaml rosbag2 writes;
    without, only the .db3 file exists.
    """
    folder.mkdir(parents=True)
    db_path = folder / f"{folder.name}_0.db3"
    topics = [
        (1, f"{namespace}/chat", "std_msgs/msg/String"),
        (2, f"{namespace}/legacy_chat", "std_msgs/String"),
    ]
    with sqlite3.connect(db_path) as db:
        db.executescript(_JAZZY_SCHEMA)
        db.execute("INSERT INTO schema VALUES (4, 'jazzy')")
        db.executemany(
            "INSERT INTO topics VALUES (?, ?, ?, 'cdr', ?, '')",
            [(tid, name, kind, _RELIABLE_QOS_YAML) for tid, name, kind in topics],
        )
        db.executemany(
            "INSERT INTO message_definitions VALUES (?, ?, 'ros2msg', ?, '')",
            [(1, "std_msgs/msg/String", STRING_DEF), (2, "std_msgs/String", STRING_DEF)],
        )
        rows = []
        for i in range(count):
            stamp = START_NS + i * PERIOD_NS
            rows.append((1, stamp, cdr_string(f"s{i}")))
            rows.append((2, stamp, cdr_string(f"l{i}")))
        db.executemany("INSERT INTO messages (topic_id, timestamp, data) VALUES (?, ?, ?)", rows)
    if with_metadata:
        # the metadata.yaml rosbag2 writes beside it (version 9); the topic QoS must match the db's
        qos = yaml.safe_load(_RELIABLE_QOS_YAML)
        span = {"nanoseconds": (count - 1) * PERIOD_NS}
        start = {"nanoseconds_since_epoch": START_NS}
        metadata = {
            "rosbag2_bagfile_information": {
                "version": 9,
                "storage_identifier": "sqlite3",
                "duration": span,
                "starting_time": start,
                "message_count": 2 * count,
                "topics_with_message_count": [
                    {
                        "topic_metadata": {
                            "name": name,
                            "type": kind,
                            "serialization_format": "cdr",
                            "offered_qos_profiles": qos,
                            "type_description_hash": "",
                        },
                        "message_count": count,
                    }
                    for _tid, name, kind in topics
                ],
                "compression_format": "",
                "compression_mode": "",
                "relative_file_paths": [db_path.name],
                "files": [
                    {
                        "path": db_path.name,
                        "starting_time": start,
                        "duration": span,
                        "message_count": 2 * count,
                    }
                ],
                "custom_data": None,
                "ros_distro": "jazzy",
            }
        }
        (folder / "metadata.yaml").write_text(yaml.safe_dump(metadata, sort_keys=False))
    return db_path


FLOAT32_DEF = "float32 data\n"


def write_run_mcap(path: Path, frames: int = 10, namespace: str = "/tnn") -> Path:
    """A tnn_ros run as another tool would have recorded it: one .mcap file, legacy type names.

    Every frame has one ground-truth object; frame ``i`` reports it exactly when ``i`` is even and
    nothing otherwise (so by hand: recall 0.5, AP@0.5 = 0.5), latency 20 ms, utilization 0.5.
    """
    import json

    from mcap_ros2.writer import Writer

    with open(path, "wb") as stream:
        writer = Writer(stream)
        legacy_string = writer.register_msgdef("std_msgs/String", STRING_DEF)
        string = writer.register_msgdef("std_msgs/msg/String", STRING_DEF)
        float32 = writer.register_msgdef("std_msgs/Float32", FLOAT32_DEF)
        for i in range(frames):
            stamp = START_NS + i * 100_000_000
            box = [10.0 + i, 20.0, 60.0 + i, 80.0]
            truth = {
                "stamp_ns": stamp,
                "frame_id": "camera",
                "seq": i,
                "gesture": "no_gesture",
                "objects": [{"class_id": 1, "label": "ball", "box": box}],
            }
            found = [{"class_id": 1, "label": "ball", "score": 0.9, "box": box}] if i % 2 == 0 else []
            out = {
                "stamp_ns": stamp,
                "frame_id": "camera",
                "level": 3,
                "utilization": 0.5,
                "latency_ms": 20.0,
                "image_size": [320, 240],
                "detections": found,
            }
            writer.write_message(
                f"{namespace}/ground_truth/json",
                string,
                {"data": json.dumps(truth)},
                log_time=stamp,
                publish_time=stamp,
            )
            writer.write_message(
                f"{namespace}/detections/json",
                legacy_string,
                {"data": json.dumps(out)},
                log_time=stamp + 30_000_000,
                publish_time=stamp + 30_000_000,
            )
            writer.write_message(
                f"{namespace}/utilization_applied",
                float32,
                {"data": 0.5},
                log_time=stamp + 30_000_000,
                publish_time=stamp + 30_000_000,
            )
        writer.finish()
    return path
