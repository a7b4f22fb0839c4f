"""`colcon build` of the package into a temporary prefix installs the layout a robot expects."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXECUTABLES = [
    "perception",
    "resource_monitor",
    "controller",
    "sim_camera",
    "bringup",
    "tnn-train",
    "tnn-bench",
    "tnn-bag",
    "tnn-demo",
]


@pytest.fixture(scope="module")
def install_tree(tmp_path_factory) -> Path:
    colcon = Path(sys.executable).with_name("colcon")
    if not colcon.exists():
        colcon = shutil.which("colcon")
    assert colcon, "colcon is not installed (make setup installs it)"
    work = tmp_path_factory.mktemp("colcon")
    # Build from a copy of the tracked sources so the checkout's build outputs are never touched.
    src = work / "src" / "tnn_ros"
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout.split()
    for rel in files:
        if not (REPO / rel).is_file():
            continue
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, src / rel)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    result = subprocess.run(
        [
            str(colcon),
            "--log-base",
            str(work / "log"),
            "build",
            "--base-paths",
            str(work / "src"),
            "--build-base",
            str(work / "build"),
            "--install-base",
            str(work / "install"),
            "--event-handlers",
            "console_direct-",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"colcon build failed:\n{result.stdout}\n{result.stderr}"
    return work / "install" / "tnn_ros"


def test_install_tree_has_executables_and_share_files(install_tree):
    for name in EXECUTABLES:
        assert (install_tree / "lib" / "tnn_ros" / name).is_file(), f"missing lib/tnn_ros/{name}"
    share = install_tree / "share" / "tnn_ros"
    assert (share / "package.xml").is_file()
    assert (install_tree / "share" / "ament_index" / "resource_index" / "packages" / "tnn_ros").is_file()
    for folder, pattern in (("launch", "*.launch.py"), ("config", "*.yaml"), ("models", "*.pt")):
        assert list((share / folder).glob(pattern)), f"share/tnn_ros/{folder}/{pattern} is empty"
    sources = {p.name for p in (REPO / "launch").glob("*.launch.py")}
    assert sources <= {p.name for p in (share / "launch").glob("*.launch.py")}


def test_package_xml_is_valid_for_catkin_pkg():
    from catkin_pkg.package import parse_package

    package = parse_package(str(REPO / "package.xml"))
    package.validate()
    assert package.name == "tnn_ros"
    assert package.get_build_type() == "ament_python"
    deps = {d.name for d in package.exec_depends}
    assert {
        "rclpy",
        "std_msgs",
        "sensor_msgs",
        "diagnostic_msgs",
        "rcl_interfaces",
        "builtin_interfaces",
        "lifecycle_msgs",
        "vision_msgs",
    } <= deps
