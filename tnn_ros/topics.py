"""Names of the ROS interface, in one place (relative names: they live in the nodes' namespace).

A plain module without imports, so nodes, the bag tools, the demo and the benchmarks can all use it
without pulling in rclpy or torch.
"""

# camera -> perception
IMAGE = "image"
GROUND_TRUTH_JSON = "ground_truth/json"
# perception -> outputs / controller / resource monitor
DETECTIONS = "detections"
DETECTIONS_JSON = "detections/json"
GESTURE_JSON = "gesture/json"
UTILIZATION_APPLIED = "utilization_applied"
LATENCY_MS = "latency_ms"
CPU_MS = "cpu_ms"
QUEUE_MS = "queue_ms"
DEBUG_IMAGE = "debug_image"
# resource monitor -> controller
BATTERY = "battery"
THERMAL = "thermal"
DEADLINE_MS = "deadline_ms"
CPU_LOAD = "cpu_load"
ENERGY_J = "energy_j"
# controller -> perception
UTILIZATION_SETPOINT = "utilization_setpoint"
CONTROLLER_REASON = "controller/reason"
# every node
DIAGNOSTICS = "/diagnostics"
