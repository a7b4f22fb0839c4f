#!/usr/bin/env bash
# Install the upstream ROS 2 Jazzy launch / launch_testing / ros2cli wheels (../shared/ros2-cli-wheels,
# see its README) into a venv, for `ros2 launch` and the launch tests on pip-only machines. Idempotent.
#
# Two of those wheels register pytest plugins written for pytest < 8 (launch_testing's
# `pytest_pycollect_makemodule(path, parent)` and launch_testing_ros' `pytest_launch_collect_makemodule`
# hook); under the pinned pytest 9 they stop *every* pytest run with a PluginValidationError. The
# launch tests here run launch files with the `launch_test` command instead, so those two plugin
# registrations are removed from the installed metadata (the packages themselves are untouched).
set -euo pipefail
wheels="${1:?usage: $0 WHEEL_DIR [VENV]}"
venv="${2:-.venv}"
"$wheels/install.sh" "$venv"
"$venv/bin/python" - <<'PY'
import importlib.metadata as md
import pathlib

for dist_name in ("launch_testing", "launch_testing_ros"):
    try:
        dist = md.distribution(dist_name)
    except md.PackageNotFoundError:
        continue
    path = pathlib.Path(dist._path) / "entry_points.txt"
    if not path.is_file():
        continue
    kept, skipping = [], False
    for line in path.read_text().splitlines():
        if line.strip().startswith("["):
            skipping = line.strip() == "[pytest11]"
        if not skipping:
            kept.append(line)
    text = "\n".join(kept).strip() + "\n"
    if text != path.read_text():
        path.write_text(text)
        print(f"disabled the pytest-9-incompatible pytest plugin of {dist_name}")
PY
