"""Resource backends (jtop, psutil, simulation, trace replay) and mission scenarios, ROS-free."""

from tnn_ros.paths import find_config_file, find_package_file
from tnn_ros.resources.base import BackendError, ResourceBackend, ResourceSample
from tnn_ros.resources.factory import BACKENDS, make_backend
from tnn_ros.resources.mission import Mission, MissionError, find_mission_file
from tnn_ros.resources.sim import MISSION_STARTS, SimBackend, SimParams

__all__ = [
    "BACKENDS",
    "MISSION_STARTS",
    "BackendError",
    "Mission",
    "MissionError",
    "ResourceBackend",
    "ResourceSample",
    "SimBackend",
    "SimParams",
    "find_config_file",
    "find_mission_file",
    "find_package_file",
    "make_backend",
]
