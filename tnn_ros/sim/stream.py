"""Frame source of the simulated camera: drifting objects plus a scripted gesturing hand.

Built on :class:`tnn_ros.sim.scenes.SceneSequence` (objects with exact boxes) and
:class:`tnn_ros.sim.gestures.GestureScript` (hand overlay with the current gesture label). Frame
``seq`` is a pure function of (seed, size, fps, seq), so a run is reproducible and any frame can be
re-rendered for evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tnn_ros.sim.gestures import NO_GESTURE, GestureScript
from tnn_ros.sim.scenes import CLASSES, SceneSequence

MIN_SIZE = 32  # the scene renderer needs room for its clutter and sprites


@dataclass
class StreamFrame:
    """One simulated camera frame with its ground truth."""

    seq: int
    time_s: float  # scene time: seq / fps
    rgb: np.ndarray  # HxWx3 uint8
    boxes: np.ndarray  # (N, 4) float32 x1, y1, x2, y2 in pixels
    class_ids: np.ndarray  # (N,) int64 into CLASSES
    gesture: str  # ground-truth gesture label ("no_gesture" between gestures)

    def ground_truth(self, stamp_ns: int, frame_id: str) -> dict:
        """The ``ground_truth/json`` payload (see docs/core_api.md)."""
        return {
            "stamp_ns": int(stamp_ns),
            "frame_id": frame_id,
            "seq": int(self.seq),
            "objects": [
                {"class_id": int(c), "label": CLASSES[int(c)], "box": [round(float(v), 2) for v in box]}
                for box, c in zip(self.boxes, self.class_ids)
            ],
            "gesture": self.gesture,
        }


class SimFrameSource:
    """Renders the frames a simulated camera publishes, in order (``next_frame``) or by index.

    Args:
        width, height: frame size in pixels (at least 32 each).
        seed: scene, object motion and gesture script all derive from it.
        fps: frames per second of scene time (object and hand motion are in seconds).
        num_objects: drifting objects in view.
        gestures: overlay the scripted hand (False: objects only, gesture label ``no_gesture``).
    """

    def __init__(
        self,
        width: int = 320,
        height: int = 240,
        seed: int = 0,
        fps: float = 15.0,
        num_objects: int = 4,
        gestures: bool = True,
    ) -> None:
        if width < MIN_SIZE or height < MIN_SIZE:
            raise ValueError(f"frame must be at least {MIN_SIZE}x{MIN_SIZE}, got {width}x{height}")
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        if num_objects < 0:
            raise ValueError(f"num_objects must be >= 0, got {num_objects}")
        self.width, self.height, self.seed, self.fps = int(width), int(height), int(seed), float(fps)
        self.scene = SceneSequence(self.seed, self.width, self.height, num_objects=int(num_objects))
        self.script = GestureScript(seed=self.seed) if gestures else None
        self.seq = 0

    def frame_at(self, seq: int) -> StreamFrame:
        """Render frame number ``seq`` (does not move the ``next_frame`` cursor)."""
        if seq < 0:
            raise ValueError(f"seq must be >= 0, got {seq}")
        time_s = seq / self.fps
        rgb, boxes, class_ids = self.scene.frame(time_s)
        gesture = NO_GESTURE
        if self.script is not None:
            rgb, gesture = self.script.overlay_hand(rgb, time_s)
        return StreamFrame(seq, time_s, rgb, boxes, class_ids, gesture)

    def next_frame(self) -> StreamFrame:
        """Render the next frame of the stream."""
        frame = self.frame_at(self.seq)
        self.seq += 1
        return frame
