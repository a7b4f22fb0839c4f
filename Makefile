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

.PHONY: setup test test-long lint demo bench colcon-build clean

setup: $(STAMP)

# Rebuilt only when the pins or the package metadata change; a second run is a no-op.
$(STAMP): requirements.txt setup.py setup.cfg package.xml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)
	@echo "tnn_ros: environment ready in $(VENV)"

lint: setup
	$(VENV)/bin/ruff check tnn_ros test launch setup.py

test: setup lint
	$(PY) -m pytest

# Everything, including the long checks that CI bounds.
test-long: setup lint
	TNN_LONG_TESTS=1 $(PY) -m pytest

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
