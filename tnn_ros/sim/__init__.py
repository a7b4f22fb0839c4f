"""The simulated world the sim camera shows: scenes, hands, the camera stream (numpy + OpenCV, no torch)."""
