"""launch_testing description: one tnn_ros launch file under the real ``launch``, checked from outside.

Run by test_launch_files.py as ``launch_test launch_file_check.py`` with the case in the environment
(TNN_LAUNCH_CASE, JSON): the launch file, its arguments, and what must be seen afterwards (node names,
topics with their types, parameter values, topics that must carry messages). The post-shutdown test
checks that every process exited 0 on the SIGINT that launch_testing's shutdown sends.
Named without the ``test_`` prefix so pytest does not collect it itself.
"""

import json
import os
import time
import unittest

import launch_testing
import launch_testing.actions
import launch_testing.asserts
import rclpy
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from rcl_interfaces.srv import GetParameters
from rclpy.parameter import parameter_value_to_python
from rosidl_runtime_py.utilities import get_message

from launch import LaunchDescription

CASE = json.loads(os.environ["TNN_LAUNCH_CASE"])
TIMEOUT_S = float(CASE.get("timeout_s", 60.0))


def generate_test_description():
    from ament_index_python.packages import get_package_share_directory

    path = os.path.join(get_package_share_directory("tnn_ros"), "launch", CASE["file"])
    include = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(path), launch_arguments=list(CASE.get("arguments", {}).items())
    )
    return LaunchDescription([include, launch_testing.actions.ReadyToTest()])


class TestRunningSystem(unittest.TestCase):
    """While the launch runs: nodes, topics and types, parameters, messages."""

    @classmethod
    def setUpClass(cls):
        rclpy.init()
        cls.node = rclpy.create_node("tnn_launch_check")

    @classmethod
    def tearDownClass(cls):
        cls.node.destroy_node()
        rclpy.shutdown()

    def spin_until(self, condition, timeout_s=TIMEOUT_S):
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if condition():
                return True
            rclpy.spin_once(self.node, timeout_sec=0.1)
        return condition()

    def test_nodes_topics_parameters_messages(self):
        expected_nodes = set(CASE.get("nodes", []))

        def node_names():
            return {f"{ns.rstrip('/')}/{name}" for name, ns in self.node.get_node_names_and_namespaces()}

        self.assertTrue(
            self.spin_until(lambda: expected_nodes <= node_names()),
            f"nodes up: {sorted(node_names())}, expected {sorted(expected_nodes)}",
        )

        expected_topics = CASE.get("topics", {})

        def topics():
            return dict(self.node.get_topic_names_and_types())

        self.assertTrue(
            self.spin_until(lambda: all(name in topics() for name in expected_topics)),
            f"missing topics: {sorted(set(expected_topics) - set(topics()))}",
        )
        found = topics()
        for name, type_name in expected_topics.items():
            self.assertEqual(found[name], [type_name], f"type of {name}")

        for node_name, values in CASE.get("parameters", {}).items():
            client = self.node.create_client(GetParameters, f"{node_name}/get_parameters")
            self.assertTrue(client.wait_for_service(timeout_sec=TIMEOUT_S), f"{node_name} parameters")
            future = client.call_async(GetParameters.Request(names=list(values)))
            self.assertTrue(self.spin_until(future.done, 20.0), f"{node_name}/get_parameters timed out")
            got = {
                name: parameter_value_to_python(value) for name, value in zip(values, future.result().values)
            }
            self.assertEqual(got, values, f"parameters of {node_name}")

        received = {}
        subscriptions = [
            self.node.create_subscription(
                get_message(expected_topics[name]),
                name,
                lambda msg, name=name: received.setdefault(name, msg),
                10,
            )
            for name in CASE.get("messages", [])
        ]
        self.assertTrue(
            self.spin_until(lambda: len(received) == len(subscriptions)),
            f"no messages on {sorted(set(CASE.get('messages', [])) - set(received))}",
        )
        for name, fields in CASE.get("message_fields", {}).items():
            for field, value in fields.items():
                self.assertEqual(getattr(received[name], field), value, f"{name}.{field}")


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    """After launch_testing's SIGINT shutdown: every process exited 0."""

    def test_every_process_exited_zero(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
        self.assertGreaterEqual(len(proc_info.process_names()), CASE.get("process_count", 1))
