"""`colcon build` of the package into a temporary prefix installs the layout a robot expects."""

from pathlib import Path

import pytest

from colcon_utils import colcon_build_copy, colcon_executable

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
    colcon = colcon_executable()
    assert colcon, "colcon is not installed (make setup installs it)"
    # Build from a copy of the tracked sources so the checkout's build outputs are never touched.
    work = colcon_build_copy(colcon, tmp_path_factory.mktemp("colcon"))
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
