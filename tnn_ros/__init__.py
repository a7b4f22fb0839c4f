"""tnn_ros: runtime-throttleable neural networks for resource-aware ROS 2 perception."""

__version__ = "0.1.0"
