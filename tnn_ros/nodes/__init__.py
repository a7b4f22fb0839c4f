"""The rclpy nodes of tnn_ros (thin shells over the ROS-free core).

When this package is imported by one of the node executables (``perception``, ``controller``, ...),
SIGINT / SIGTERM are caught from here on: a Ctrl-C that ``ros2 launch`` forwards while the node is
still importing torch or loading its models must end the process cleanly (exit 0) once start-up is
done, not as an uncaught KeyboardInterrupt (exit code -2). See :mod:`tnn_ros.nodes._spin`.
"""

import os
import sys

NODE_EXECUTABLES = frozenset({"perception", "resource_monitor", "controller", "sim_camera", "bringup"})

if os.path.basename(getattr(sys, "argv", [""])[0] or "") in NODE_EXECUTABLES:
    from tnn_ros.nodes import _signals

    _signals.install()
    _signals.executable = True
