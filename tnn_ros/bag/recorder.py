"""Record ROS 2 topics into a rosbag2 bag (mcap or sqlite3) with rclpy and rosbags.

Subscriptions are raw (serialized CDR bytes straight from the middleware), so nothing is
deserialized; rosbags' ``Writer`` stores the bytes with the message definitions and the QoS the
publishers offered, giving a bag that ``ros2 bag info/play`` reads. Topics are (re)discovered from
the graph while recording, so topics that appear late are picked up too.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosbags.rosbag2 import StoragePlugin, Writer, WriterError

from tnn_ros.bag.common import (
    STORAGES,
    BagError,
    StatusLine,
    format_bytes,
    message_class,
    qos_to_rosbags,
    typestore_with,
)

# Topics whose names start with an underscore-prefixed part are hidden (rclcpp/rclpy convention).
_HIDDEN = re.compile(r"(^|/)_")


@dataclass
class RecordSummary:
    """What a recording wrote."""

    path: Path
    storage: str
    messages: int = 0
    bytes: int = 0
    duration_s: float = 0.0
    per_topic: dict[str, int] = field(default_factory=dict)
    skipped_topics: dict[str, str] = field(default_factory=dict)  # topic -> why it was not recorded
    error: str = ""  # why the recording stopped early (e.g. the disk is full); empty after a clean stop


def subscription_qos(offered: list[QoSProfile], depth: int = 100) -> QoSProfile:
    """QoS that matches every publisher: reliable/transient-local only if all of them offer it."""
    reliable = bool(offered) and all(p.reliability == ReliabilityPolicy.RELIABLE for p in offered)
    latched = bool(offered) and all(p.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in offered)
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
    )


class BagRecorder:
    """Subscribes (raw) to topics on ``node`` and writes every message to an open rosbags ``Writer``.

    The recorder owns the writer: ``close()`` writes the index and ``metadata.yaml``; it is safe to
    call more than once. Callbacks and ``discover()`` must run on the node's executor thread.
    """

    def __init__(
        self,
        node: Node,
        output: str | Path,
        topics: list[str] | tuple[str, ...] = (),
        storage: str = "mcap",
        all_topics: bool = False,
        exclude: str | None = None,
        qos_depth: int = 100,
    ) -> None:
        if storage not in STORAGES:
            raise BagError(f"unknown storage {storage!r}; choose one of {', '.join(STORAGES)}")
        if not topics and not all_topics:
            raise BagError("nothing to record: name topics or use --all")
        self.node = node
        self.path = Path(output)
        self.storage = storage
        self.all_topics = all_topics
        self.wanted = {self._absolute(t) for t in topics}
        self.exclude = re.compile(exclude) if exclude else None
        self.qos_depth = qos_depth
        self.summary = RecordSummary(path=self.path, storage=storage)
        self._connections: dict[str, object] = {}
        self._subscriptions: dict[str, object] = {}
        self._start = time.monotonic()
        self._lock = threading.Lock()
        writer = Writer(
            self.path, version=Writer.VERSION_LATEST, storage_plugin=StoragePlugin[storage.upper()]
        )
        try:
            writer.open()
        except WriterError as exc:
            raise BagError(f"cannot create bag: {exc}") from None
        self._writer: Writer | None = writer

    def _absolute(self, topic: str) -> str:
        if topic.startswith("/"):
            return topic
        namespace = self.node.get_namespace().rstrip("/")
        return f"{namespace}/{topic}"

    @property
    def topics(self) -> list[str]:
        """Topics subscribed so far."""
        return sorted(self._subscriptions)

    def _wanted(self, topic: str) -> bool:
        if self.exclude is not None and self.exclude.search(topic):
            return False
        if topic in self.wanted:
            return True
        return self.all_topics and not _HIDDEN.search(topic)

    def discover(self) -> list[str]:
        """Subscribe to wanted topics that have appeared in the graph; return the new ones."""
        if self._writer is None:
            return []
        added = []
        for topic, types in self.node.get_topic_names_and_types():
            known = topic in self._subscriptions or topic in self.summary.skipped_topics
            if known or not self._wanted(topic):
                continue
            if len(types) != 1:
                self._skip(topic, f"more than one type on the topic: {', '.join(types)}")
                continue
            offered = [info.qos_profile for info in self.node.get_publishers_info_by_topic(topic)]
            if not offered:
                continue  # only subscribers so far: wait for a publisher to learn its QoS
            if self._subscribe(topic, types[0], offered):
                added.append(topic)
        return added

    def _skip(self, topic: str, reason: str) -> None:
        self.summary.skipped_topics[topic] = reason
        self.node.get_logger().warning(f"not recording {topic}: {reason}")

    def _subscribe(self, topic: str, type_name: str, offered: list[QoSProfile]) -> bool:
        try:
            msg_class = message_class(type_name)
            typestore = typestore_with([type_name])
            with self._lock:
                self._connections[topic] = self._writer.add_connection(
                    topic,
                    type_name,
                    typestore=typestore,
                    serialization_format="cdr",
                    offered_qos_profiles=[qos_to_rosbags(p) for p in offered],
                )
        except Exception as exc:  # noqa: BLE001 - one topic the writer cannot describe must not end the recording
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            self._skip(topic, reason)
            return False
        self.summary.per_topic[topic] = 0
        self._subscriptions[topic] = self.node.create_subscription(
            msg_class,
            topic,
            lambda data, t=topic: self._on_message(t, data),
            subscription_qos(offered, self.qos_depth),
            raw=True,
        )
        self.node.get_logger().info(f"recording {topic} [{type_name}]")
        return True

    def _on_message(self, topic: str, data: bytes) -> None:
        stamp_ns = self.node.get_clock().now().nanoseconds
        with self._lock:
            if self._writer is None or self.summary.error:
                return  # closed while a callback was queued, or writing already failed
            try:
                self._writer.write(self._connections[topic], stamp_ns, data)
            except OSError as exc:  # disk full (ENOSPC), file size limit (EFBIG), I/O error
                self.summary.error = f"writing {self.path} failed: {exc.strerror or exc}"
                self.node.get_logger().error(f"{self.summary.error}; stopping the recording")
                return
        self.summary.messages += 1
        self.summary.bytes += len(data)
        self.summary.per_topic[topic] += 1

    def status(self) -> str:
        """One line: elapsed time, topics, messages, bytes."""
        elapsed = time.monotonic() - self._start
        return (
            f"recording {self.path.name}: {elapsed:6.1f} s  {len(self.summary.per_topic)} topics  "
            f"{self.summary.messages} msgs  {format_bytes(self.summary.bytes)}"
        )

    def close(self) -> RecordSummary:
        """Stop recording and finish the bag (index + metadata.yaml) so it stays valid."""
        for subscription in self._subscriptions.values():
            self.node.destroy_subscription(subscription)
        self._subscriptions.clear()
        with self._lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.close()
            except OSError as exc:  # no room for the index: the chunks written so far stay readable
                if not self.summary.error:
                    self.summary.error = f"closing {self.path} failed: {exc.strerror or exc}"
                self._abort(writer)
        self.summary.duration_s = time.monotonic() - self._start
        return self.summary

    @staticmethod
    def _abort(writer: Writer) -> None:
        """Release the storage after a failed close (rosbags' ``abort``: nothing more is written)."""
        storage = getattr(writer, "storage", None)
        if storage is not None:
            try:
                storage.abort()
            except OSError:
                pass


def record(
    output: str | Path,
    topics: list[str] | tuple[str, ...] = (),
    storage: str = "mcap",
    *,
    all_topics: bool = False,
    exclude: str | None = None,
    duration: float | None = None,
    context: Context | None = None,
    stop_event: threading.Event | None = None,
    discovery_period_s: float = 0.25,
    progress: bool = True,
    node_name: str = "tnn_bag_recorder",
    ready_event: threading.Event | None = None,
) -> RecordSummary:
    """Record ``topics`` (or every visible topic with ``all_topics``) into a new bag at ``output``.

    Runs until ``duration`` seconds have passed, ``stop_event`` is set or the context shuts down,
    then closes the bag properly. With ``context=None`` a private rclpy context is created and shut
    down again. ``ready_event`` is set once the bag is open and the node is spinning.

    Raises:
        BagError: the output exists, the storage is unknown, or nothing was asked for.

    """
    import rclpy

    own_context = context is None
    if own_context:
        context = Context()
        rclpy.init(context=context)
    stop_event = stop_event or threading.Event()
    status = StatusLine(enabled=progress)
    node = Node(node_name, context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    recorder = None
    try:
        recorder = BagRecorder(node, output, topics, storage=storage, all_topics=all_topics, exclude=exclude)
        deadline = None if duration is None else time.monotonic() + duration
        next_discovery = 0.0
        if ready_event is not None:
            ready_event.set()
        while context.ok() and not stop_event.is_set() and not recorder.summary.error:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            if now >= next_discovery:
                recorder.discover()
                next_discovery = now + discovery_period_s
            executor.spin_once(timeout_sec=0.05)
            status.update(recorder.status())
    finally:
        summary = recorder.close() if recorder is not None else None
        if summary is not None:
            status.finish(recorder.status())
        executor.remove_node(node)
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        if own_context and context.ok():
            rclpy.shutdown(context=context)
    return summary
