"""Helpers for tests that talk to real rclpy nodes over DDS (loopback only, see conftest.py)."""

from __future__ import annotations

import itertools
import os
import threading
import time
from typing import Any, Callable, Iterable

import rclpy
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue, SetParametersResult
from rcl_interfaces.srv import DescribeParameters, GetParameters, SetParameters
from rclpy.context import Context
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node

_namespace_counter = itertools.count(1)


def unique_namespace(prefix: str) -> str:
    """A namespace no other node of this test run uses (tests in one process must not cross-talk)."""
    return f"/{prefix}_{os.getpid()}_{next(_namespace_counter)}"


def _parameter_value(value: Any) -> ParameterValue:
    """Wrap a Python value in the rcl_interfaces message the parameter services take."""
    if isinstance(value, bool):
        return ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=value)
    if isinstance(value, int):
        return ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value)
    if isinstance(value, float):
        return ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
    if isinstance(value, str):
        return ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value)
    raise TypeError(f"unsupported parameter value {value!r}")


class RosHarness:
    """A private rclpy context with an executor spinning in a background thread.

    Use as a context manager; nodes added with :meth:`add` are spun until exit, then destroyed.
    """

    def __init__(self, helper_name: str = "test_harness") -> None:
        self.context = Context()
        rclpy.init(context=self.context)
        self.executor = MultiThreadedExecutor(num_threads=4, context=self.context)
        self.node = Node(helper_name, context=self.context)
        self.executor.add_node(self.node)
        self._nodes: list[Node] = [self.node]
        self._keep: list[Any] = []
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._stop = threading.Event()
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set() and self.context.ok():
            self.executor.spin_once(timeout_sec=0.05)

    def __enter__(self) -> "RosHarness":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)
        for node in reversed(self._nodes):
            try:
                self.executor.remove_node(node)
                node.destroy_node()
            except Exception:  # noqa: BLE001 - teardown must not mask the test's own failure
                pass
        self.executor.shutdown(timeout_sec=1.0)
        if self.context.ok():
            rclpy.shutdown(context=self.context)

    def add(self, node: Node) -> Node:
        """Spin ``node`` (created with ``context=harness.context``) until the harness closes."""
        self._nodes.append(node)
        self.executor.add_node(node)
        return node

    def collect(self, topic: str, msg_type: type, qos: Any = 10) -> list:
        """Subscribe and return the list that received messages are appended to."""
        received: list = []
        self._keep.append(self.node.create_subscription(msg_type, topic, received.append, qos))
        return received

    def publisher(self, topic: str, msg_type: type, qos: Any = 10):
        return self.node.create_publisher(msg_type, topic, qos)

    @staticmethod
    def wait_for(predicate: Callable[[], bool], timeout_s: float = 10.0, period_s: float = 0.02) -> bool:
        """Poll ``predicate`` until it is true or ``timeout_s`` passes; returns its last value."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(period_s)
        return bool(predicate())

    def _call(self, srv_type: type, name: str, request: Any, timeout_s: float) -> Any:
        client = self.node.create_client(srv_type, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout_s):
                raise TimeoutError(f"service {name} not available after {timeout_s}s")
            future = client.call_async(request)
            if not self.wait_for(future.done, timeout_s):
                raise TimeoutError(f"service {name} did not answer in {timeout_s}s")
            return future.result()
        finally:
            self.node.destroy_client(client)

    def set_parameters(
        self, node_fqn: str, values: dict[str, Any], timeout_s: float = 5.0
    ) -> list[SetParametersResult]:
        """Set parameters through the node's real ``set_parameters`` service (as rqt does)."""
        request = SetParameters.Request(
            parameters=[Parameter(name=name, value=_parameter_value(value)) for name, value in values.items()]
        )
        return list(self._call(SetParameters, f"{node_fqn}/set_parameters", request, timeout_s).results)

    def get_parameters(self, node_fqn: str, names: Iterable[str], timeout_s: float = 5.0) -> list:
        request = GetParameters.Request(names=list(names))
        return list(self._call(GetParameters, f"{node_fqn}/get_parameters", request, timeout_s).values)

    def describe_parameters(self, node_fqn: str, names: Iterable[str], timeout_s: float = 5.0) -> list:
        """ParameterDescriptors as rqt_reconfigure reads them (ranges, descriptions)."""
        request = DescribeParameters.Request(names=list(names))
        return list(
            self._call(DescribeParameters, f"{node_fqn}/describe_parameters", request, timeout_s).descriptors
        )
