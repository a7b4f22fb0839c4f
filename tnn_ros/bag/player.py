"""Play a rosbag2 bag back onto ROS 2 topics at its recorded timing.

The serialized bytes from the bag are handed to ``Publisher.publish`` unchanged (rclpy publishes
``bytes`` raw), so there is no deserialize/serialize round trip; the Python message class is only
needed to create the publisher and is resolved from the type name, so any bag whose message
packages are installed plays, not only ours.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from rclpy.context import Context
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosbags.interfaces import QosDurability, QosReliability

from tnn_ros.bag.common import BagError, StatusLine, message_class, open_reader

# After the last message, how long to wait for reliable subscribers to acknowledge what was published
# (as `ros2 bag play --wait-for-all-acked`): a player that exits at once can take its last messages
# with it.
ACK_TIMEOUT_S = 2.0


@dataclass
class PlaySummary:
    """What a playback published."""

    messages: int = 0
    loops: int = 0
    duration_s: float = 0.0
    per_topic: dict[str, int] = field(default_factory=dict)
    skipped_topics: dict[str, str] = field(default_factory=dict)  # topic -> why it was not played


def publisher_qos(offered: list, depth: int = 10) -> QoSProfile:
    """QoS for replaying a topic: what the recorded publishers offered (reliable/latched if all were)."""
    reliable = not offered or all(q.reliability == QosReliability.RELIABLE for q in offered)
    latched = bool(offered) and all(q.durability == QosDurability.TRANSIENT_LOCAL for q in offered)
    recorded_depth = max((q.depth for q in offered), default=0)
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=max(depth, recorded_depth),
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
    )


def _wait_for_subscribers(
    publishers: dict,
    wanted: int | dict[str, int],
    timeout_s: float,
    stop_event: threading.Event,
    status: StatusLine,
) -> bool:
    """Wait until each publisher has its wanted number of matched subscriptions."""
    needs = {topic: wanted if isinstance(wanted, int) else wanted.get(topic, 0) for topic in publishers}
    deadline = time.monotonic() + timeout_s
    while True:
        short = [t for t, pub in publishers.items() if pub.get_subscription_count() < needs[t]]
        if not short:
            return True
        if time.monotonic() >= deadline or stop_event.is_set():
            return False
        status.update(f"waiting for subscribers on {', '.join(short)}")
        stop_event.wait(0.05)


def play(
    bag: str | Path,
    rate: float = 1.0,
    loop: bool = False,
    topics: list[str] | None = None,
    start_offset: float = 0.0,
    *,
    delay: float = 0.5,
    context: Context | None = None,
    stop_event: threading.Event | None = None,
    progress: bool = True,
    node_name: str = "tnn_bag_player",
    remap: dict[str, str] | None = None,
    wait_for_subscribers: int | dict[str, int] = 0,
    wait_timeout_s: float = 30.0,
) -> PlaySummary:
    """Publish the messages of ``bag`` with their recorded spacing divided by ``rate``.

    ``topics`` limits playback to those topics; ``start_offset`` skips the first seconds of the bag;
    ``delay`` waits after creating the publishers so subscribers can match before the first
    message; ``remap`` renames topics (recorded name -> published name). ``wait_for_subscribers``
    (a count for every topic, or per recorded topic name) then also waits, up to ``wait_timeout_s``,
    until the publishers have that many matched subscriptions. Stops at the end (or never with
    ``loop``), when ``stop_event`` is set, or when the context shuts down.

    Raises:
        BagError: the bag is missing/damaged, an argument is out of range, or no topic can be played.

    """
    import rclpy

    if not rate > 0.0:
        raise BagError(f"rate must be > 0, got {rate}")
    if start_offset < 0.0:
        raise BagError(f"start offset must be >= 0, got {start_offset}")
    reader = open_reader(bag)
    own_context = context is None
    node = None
    summary = PlaySummary()
    status = StatusLine(enabled=progress)
    stop_event = stop_event or threading.Event()
    remap = remap or {}
    try:
        selected = [c for c in reader.connections if topics is None or c.topic in topics]
        if topics is not None:
            missing = sorted(set(topics) - {c.topic for c in reader.connections})
            if missing:
                raise BagError(f"{bag}: topic(s) not in the bag: {', '.join(missing)}")
        if own_context:
            context = Context()
            rclpy.init(context=context)
        node = Node(node_name, context=context)
        publishers = {}
        for connection in selected:
            if connection.topic in summary.skipped_topics:
                continue
            try:
                msg_class = message_class(connection.msgtype)
            except BagError as exc:
                summary.skipped_topics[connection.topic] = str(exc)
                node.get_logger().warning(f"not playing {connection.topic}: {exc}")
                continue
            key = (connection.topic, connection.msgtype)
            if key not in publishers:
                offered = list(getattr(connection.ext, "offered_qos_profiles", []) or [])
                publishers[key] = node.create_publisher(
                    msg_class, remap.get(connection.topic, connection.topic), publisher_qos(offered)
                )
                summary.per_topic.setdefault(connection.topic, 0)
        playable = [c for c in selected if (c.topic, c.msgtype) in publishers]
        if not playable:
            raise BagError(f"{bag}: no playable topic (message types not installed or nothing selected)")
        if stop_event.wait(delay):
            return summary
        if wait_for_subscribers and not _wait_for_subscribers(
            {topic: pub for (topic, _type), pub in publishers.items()},
            wait_for_subscribers,
            wait_timeout_s,
            stop_event,
            status,
        ):
            raise BagError(f"subscribers did not match within {wait_timeout_s:g} s")
        start_ns = reader.start_time + int(start_offset * 1e9)
        total_s = max(0.0, (reader.end_time - start_ns) / 1e9)
        began = time.monotonic()
        while context.ok() and not stop_event.is_set():
            loop_began = time.monotonic()
            published_before = summary.messages
            for connection, stamp_ns, data in reader.messages(connections=playable, start=start_ns):
                bag_s = (stamp_ns - start_ns) / 1e9
                wait_s = loop_began + bag_s / rate - time.monotonic()
                if wait_s > 0.0 and stop_event.wait(wait_s):
                    break
                if not context.ok():
                    break
                publishers[(connection.topic, connection.msgtype)].publish(bytes(data))
                summary.messages += 1
                summary.per_topic[connection.topic] += 1
                status.update(
                    f"playing {Path(bag).name}: {bag_s:6.1f}/{total_s:.1f} s  "
                    f"{summary.messages} msgs  x{rate:g}" + ("  loop" if loop else "")
                )
            summary.loops += 1
            if not loop or summary.messages == published_before:
                break
        summary.duration_s = time.monotonic() - began
        if not stop_event.is_set():
            for publisher in publishers.values():  # best-effort publishers return at once
                publisher.wait_for_all_acked(Duration(seconds=ACK_TIMEOUT_S))
        status.finish(f"played {summary.messages} msgs from {Path(bag).name} in {summary.duration_s:.1f} s")
    finally:
        reader.close()
        if node is not None:
            node.destroy_node()
        if own_context and context is not None and context.ok():
            rclpy.shutdown(context=context)
    return summary
