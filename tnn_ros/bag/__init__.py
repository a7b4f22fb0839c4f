"""rosbag2 record / play with rclpy and the rosbags library (no rosbag2_py needed).

``record`` and ``play`` are the library API (``tnn-bag`` is the CLI); both import rclpy lazily so
reading bags for analysis (``open_reader``) works without ROS.
"""

from tnn_ros.bag.common import STORAGES, BagError, message_class, open_reader, typestore_with

__all__ = ["STORAGES", "BagError", "message_class", "open_reader", "play", "record", "typestore_with"]


def record(*args, **kwargs):
    """Record topics into a bag; see :func:`tnn_ros.bag.recorder.record`."""
    from tnn_ros.bag.recorder import record as _record

    return _record(*args, **kwargs)


def play(*args, **kwargs):
    """Play a bag; see :func:`tnn_ros.bag.player.play`."""
    from tnn_ros.bag.player import play as _play

    return _play(*args, **kwargs)
