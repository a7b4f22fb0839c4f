"""ament_python package setup for tnn_ros (also works as a plain pip install)."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "tnn_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.csv")),
        (f"share/{PACKAGE}/models", glob("models/*.pt") + glob("models/*.json")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="tnn_ros maintainers",
    maintainer_email="maintainers@tnn-ros.dev",
    description="Runtime-throttleable neural networks for resource-aware ROS 2 perception.",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "perception = tnn_ros.nodes.perception:main",
            "resource_monitor = tnn_ros.nodes.resource_monitor:main",
            "controller = tnn_ros.nodes.controller:main",
            "sim_camera = tnn_ros.nodes.sim_camera:main",
            "bringup = tnn_ros.nodes.bringup:main",
            "tnn-train = tnn_ros.train.cli:main",
            "tnn-bench = tnn_ros.bench.cli:main",
            "tnn-bag = tnn_ros.bag.cli:main",
            "tnn-demo = tnn_ros.demo.cli:main",
        ],
    },
)
