# tnn_ros developer entry points. `make demo` and `make test` set up .venv first (idempotent).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tnn_ros_setup_stamp
# DDS must stay on this machine: discovery on loopback only. The per-run domain id is chosen by
# test/conftest.py (tests) or tnn_ros.demo (demo) unless the caller sets ROS_DOMAIN_ID.
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
DEMO_ARGS ?=

.PHONY: setup test test-fast test-long lint format demo bench colcon-build clean

# Upstream ROS 2 launch / launch_testing / ros2cli wheels for pip-only machines (CI): installed by
# `make setup` when the folder exists, so the launch tests (test/launch/) run under the real launch.
ROS2_CLI_WHEELS ?= ../shared/ros2-cli-wheels
ROS2_CLI_STAMP := $(VENV)/.tnn_ros_ros2_cli_stamp

setup: $(STAMP) $(if $(wildcard $(ROS2_CLI_WHEELS)/install.sh),$(ROS2_CLI_STAMP))

$(ROS2_CLI_STAMP): $(STAMP) scripts/install_ros2_cli_wheels.sh
	scripts/install_ros2_cli_wheels.sh $(ROS2_CLI_WHEELS) $(VENV)
	@touch $@

# Rebuilt only when the pins or the package metadata change; a second run is a no-op.
$(STAMP): requirements.txt setup.py setup.cfg package.xml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)
	@echo "tnn_ros: environment ready in $(VENV)"

lint: setup
	$(VENV)/bin/ruff check tnn_ros test launch setup.py
	$(VENV)/bin/ruff format --check tnn_ros test launch setup.py

# Rewrites the tree in the one code style (ruff format, settings in pyproject.toml).
format: setup
	$(VENV)/bin/ruff format tnn_ros test launch setup.py
	$(VENV)/bin/ruff check --fix tnn_ros test launch setup.py

# Test tiers (markers in pyproject.toml, assigned by directory in test/conftest.py):
#   test-fast  unit tests + the `smoke` DDS tests, long ones bounded (a few minutes)
#   test       what CI (.ci/run) runs: every test, the `long` tier at its bounded size
#   test-long  only the `long` tier (demo, replay regression, soak) at full size
PYTEST_REPORT := --durations=15
test-fast: setup lint
	$(PY) -m pytest -m "(not integration and not long) or smoke" --long-bounded $(PYTEST_REPORT)

test: setup lint
	$(PY) -m pytest --long-bounded $(PYTEST_REPORT)

test-long: setup lint
	$(PY) -m pytest -m long --timeout=3600 $(PYTEST_REPORT)

demo: setup
	$(PY) -m tnn_ros.demo.cli $(DEMO_ARGS)

bench: setup
	$(VENV)/bin/tnn-bench throttle --model detector --json bench_output/throttle_detector.json
	$(VENV)/bin/tnn-bench throttle --model gesture --json bench_output/throttle_gesture.json
	$(VENV)/bin/tnn-bench ros --json bench_output/ros.json
	$(VENV)/bin/tnn-bench control --json bench_output/control.json

colcon-build: setup
	$(VENV)/bin/colcon build --base-paths . --build-base build --install-base install

clean:
	rm -rf build install log demo_output bench_output .pytest_cache
