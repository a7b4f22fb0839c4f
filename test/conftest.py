"""Test harness settings shared by every test.

DDS must never leave this machine: discovery is pinned to loopback and every run gets its own
ROS domain id, here, before anything imports rclpy, so callers cannot forget it.
"""

import os
import sys

import pytest

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.pop("ROS_STATIC_PEERS", None)
# A per-run domain id (1..100) so parallel runs on one machine do not see each other.
os.environ["ROS_DOMAIN_ID"] = os.environ.get("TNN_TEST_DOMAIN_ID", str(1 + os.getpid() % 100))

LONG_TESTS = os.environ.get("TNN_LONG_TESTS") == "1"


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Run torch on one thread in tests: two OpenMP threads on a busy 2-core machine thrash.

    Tests that measure or exercise threading set their own count; benchmarks never run here.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def pytest_collection_modifyitems(config, items):
    if LONG_TESTS:
        return
    skip_long = pytest.mark.skip(reason="long check: run `make test-long` (TNN_LONG_TESTS=1)")
    for item in items:
        if "long" in item.keywords:
            item.add_marker(skip_long)


@pytest.fixture
def ros_env() -> dict:
    """Environment for child processes that run ROS code: loopback discovery, this run's domain."""
    env = dict(os.environ)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["ROS_DOMAIN_ID"] = os.environ["ROS_DOMAIN_ID"]
    env["PYTHONUNBUFFERED"] = "1"
    return env
