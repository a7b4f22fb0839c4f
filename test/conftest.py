"""Test harness settings shared by every test: tiers, DDS isolation, one torch thread.

Tiers (markers registered in pyproject.toml; README "Tests" says which make target runs what):

- unmarked: unit tests, ROS-free, seconds each.
- ``integration``: real DDS, subprocesses, bags, launch. Every test under ``test/integration/``,
  ``test/replay/`` and ``test/launch/`` gets it here, by directory; ``ros`` is an alias.
- ``long``: demo, replay regression, soak. Full size by default; with ``--long-bounded`` (or
  ``TNN_CI_BOUNDED=1``, which the option sets for child processes too) they shrink to what CI can
  afford: read :func:`long_bounded` or use the ``long_size`` fixture.
- ``smoke``: a few fast integration tests that ``make test-fast`` keeps.

DDS must never leave this machine and concurrent runs must not hear each other: discovery is
pinned to loopback, and every run (and every test that starts processes, see ``ros_env``) takes a
ROS domain id nobody else on this machine holds, via a lock file per id. ``TNN_TEST_DOMAIN_ID``
forces the run's id. All of it happens here, before anything imports rclpy.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from domains import allocate_domain_id, lock_forced_domain_id, release_domain_id

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.pop("ROS_STATIC_PEERS", None)

TEST_ROOT = Path(__file__).resolve().parent
INTEGRATION_DIRS = ("integration", "replay", "launch")
LONG_DIRS = ("replay",)


def _run_domain_id() -> int:
    forced = os.environ.get("TNN_TEST_DOMAIN_ID")
    if forced:
        lock_forced_domain_id(int(forced))
        return int(forced)
    return allocate_domain_id()


os.environ["ROS_DOMAIN_ID"] = str(_run_domain_id())


def long_bounded() -> bool:
    """True when long tests must run their CI-bounded size (``--long-bounded`` / TNN_CI_BOUNDED=1)."""
    return os.environ.get("TNN_CI_BOUNDED", "") not in ("", "0")


def pytest_addoption(parser):
    parser.addoption(
        "--long-bounded",
        action="store_true",
        default=False,
        help="run tests marked `long` at their CI-bounded size (sets TNN_CI_BOUNDED=1)",
    )


def pytest_configure(config):
    if config.getoption("--long-bounded"):
        os.environ["TNN_CI_BOUNDED"] = "1"


def pytest_collection_modifyitems(config, items):
    """Tier by directory: integration/, replay/, launch/ are integration; replay/ is long too."""
    for item in items:
        try:
            parts = Path(str(item.path)).resolve().relative_to(TEST_ROOT).parts
        except ValueError:
            continue
        if parts and parts[0] in INTEGRATION_DIRS or "ros" in item.keywords:
            item.add_marker(pytest.mark.integration)
        if parts and parts[0] in LONG_DIRS:
            item.add_marker(pytest.mark.long)


@pytest.fixture(scope="session")
def long_size():
    """``long_size(full, bounded)``: the size a long test runs at in this run."""
    bounded = long_bounded()
    return lambda full, ci: ci if bounded else full


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


@pytest.fixture
def private_domain(monkeypatch) -> int:
    """A ROS domain id for this test alone, set in ``os.environ`` for the test's duration.

    Contexts created during the test (``RosHarness``) and child processes started with
    ``ros_env`` use it, so a process that outlives its test cannot disturb the next one.
    """
    domain_id = allocate_domain_id()
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain_id))
    yield domain_id
    release_domain_id(domain_id)


@pytest.fixture
def ros_env(private_domain) -> dict:
    """Environment for child processes that run ROS code: loopback discovery, this test's domain."""
    env = dict(os.environ)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["ROS_DOMAIN_ID"] = str(private_domain)
    env["PYTHONUNBUFFERED"] = "1"
    return env
