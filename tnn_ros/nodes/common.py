"""Plumbing every tnn_ros node shares: diagnostics cadence and message, log throttling, timers."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from rclpy.timer import Timer
from std_msgs.msg import Header

from tnn_ros.topics import DIAGNOSTICS

DIAGNOSTICS_PERIOD_S = 1.0
# Warnings about bad input repeat at most this often per call site (the counters keep the totals).
LOG_THROTTLE_S = 5.0
OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR


class DiagnosticsPublisher:
    """Publishes one DiagnosticStatus named ``<node fqn>: <component>`` on /diagnostics.

    ``status()`` returns (level, message, values); it is called every DIAGNOSTICS_PERIOD_S.
    """

    def __init__(
        self, node: Node, component: str, status: Callable[[], tuple[int, str, Mapping[str, Any]]]
    ) -> None:
        self._node, self._component, self._status = node, component, status
        self._publisher = node.create_publisher(DiagnosticArray, DIAGNOSTICS, 10)
        self.timer = node.create_timer(DIAGNOSTICS_PERIOD_S, self.publish)

    def publish(self) -> None:
        level, message, values = self._status()
        name = f"{self._node.get_fully_qualified_name()}: {self._component}"
        status = DiagnosticStatus(
            level=level,
            name=name,
            message=message,
            hardware_id="tnn_ros",
            values=[KeyValue(key=str(k), value=str(v)) for k, v in values.items()],
        )
        header = Header(stamp=self._node.get_clock().now().to_msg())
        self._publisher.publish(DiagnosticArray(header=header, status=[status]))


def replace_timer(node: Node, timer: Timer | None, rate_hz: float, callback: Callable[[], None]) -> Timer:
    """A new timer at ``rate_hz`` in place of ``timer`` (rclpy timers cannot change their period)."""
    if timer is not None:
        timer.cancel()
        node.destroy_timer(timer)
    return node.create_timer(1.0 / rate_hz, callback)
