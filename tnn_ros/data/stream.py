"""Frame source of the simulated camera: drifting objects plus a scripted gesturing hand.

Built on :class:`tnn_ros.data.scenes.SceneSequence` (objects with exact boxes) and
:class:`tnn_ros.data.gestures.GestureScript` (hand overlay with the current gesture label). Frame
``seq`` is a pure function of (seed, size, fps, seq), so a run is reproducible and any frame can be
re-rendered for evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.utils.data

from tnn_ros.data.gestures import NO_GESTURE, GestureScript
from tnn_ros.data.scenes import CLASSES, SceneSequence

MIN_SIZE = 32   # the scene renderer needs room for its clutter and sprites


@dataclass
class StreamFrame:
    """One simulated camera frame with its ground truth."""

    seq: int
    time_s: float              # scene time: seq / fps
    rgb: np.ndarray            # HxWx3 uint8
    boxes: np.ndarray          # (N, 4) float32 x1, y1, x2, y2 in pixels
    class_ids: np.ndarray      # (N,) int64 into CLASSES
    gesture: str               # ground-truth gesture label ("no_gesture" between gestures)

    def ground_truth(self, stamp_ns: int, frame_id: str) -> dict:
        """The ``ground_truth/json`` payload (see docs/core_api.md)."""
        return {
            "stamp_ns": int(stamp_ns), "frame_id": frame_id, "seq": int(self.seq),
            "objects": [{"class_id": int(c), "label": CLASSES[int(c)],
                         "box": [round(float(v), 2) for v in box]}
                        for box, c in zip(self.boxes, self.class_ids)],
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

    def __init__(self, width: int = 320, height: int = 240, seed: int = 0, fps: float = 15.0,
                 num_objects: int = 4, gestures: bool = True) -> None:
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


# --- stream-like training clips --------------------------------------------------------------------------

# A clip counts as showing a gesture when at least this fraction of the gesture's frames is inside
# it, and as no_gesture when no gesture has more than the negative fraction inside it; windows in
# between are ambiguous and never drawn. The stream's onsets (a gesture just begun), the jump of the
# hand to the next start pose and the rests are therefore all no_gesture, as the camera's truth says.
POSITIVE_COVERAGE = 0.7
NEGATIVE_COVERAGE = 0.4
STREAM_RENDER_SIZE = (96, 72)  # rendered as the 4:3 camera does, then fitted like its frames


def _coverage(first: int, last: int, clip_end: int, clip_length: int) -> float:
    """Fraction of frames ``first..last`` inside the clip of ``clip_length`` frames ending at ``clip_end``."""
    lo, hi = max(first, clip_end - clip_length + 1), min(last, clip_end)
    return max(0, hi - lo + 1) / (last - first + 1)


def render_stream_clip(rng: np.random.Generator, label: str, clip_length: int = 16,
                       frame_size: tuple[int, int] = (48, 48), fps: float = 15.0,
                       script_s: float = 8.0) -> np.ndarray:
    """A ``clip_length`` window of a simulated camera stream showing ``label``: (T, H, W, 3) uint8.

    A scene (drifting objects) with a scripted hand (:class:`GestureScript`) is rendered at
    :data:`STREAM_RENDER_SIZE` and fitted to ``frame_size`` like the recognizer's frames. For a
    gesture the window ends where that gesture (the script's second one, so the previous gesture
    and the jump after it may be in view) has at least :data:`POSITIVE_COVERAGE` of its frames
    inside; for ``no_gesture`` anywhere no gesture has more than :data:`NEGATIVE_COVERAGE` inside.
    """
    from tnn_ros.data.gestures import GESTURE_CLASSES
    from tnn_ros.models.gesture import resize_frame

    if label not in GESTURE_CLASSES:
        raise ValueError(f"unknown gesture {label!r}; expected one of {GESTURE_CLASSES}")
    seed = int(rng.integers(2**31))
    script = GestureScript(seed=seed, gestures=None if label == NO_GESTURE else [label])
    width, height = STREAM_RENDER_SIZE
    scene = SceneSequence(seed, width, height, num_objects=int(rng.integers(0, 5)),
                          speed=40.0 * width / 320)
    count = int(script_s * fps)
    labels = [script.hand_at(i / fps).label for i in range(count)]
    runs, start = [], None   # (first, last) frame of each gesture
    for i, name in enumerate([*labels, NO_GESTURE]):
        if name != NO_GESTURE and start is None:
            start = i
        elif name == NO_GESTURE and start is not None:
            runs.append((start, i - 1))
            start = None
    ends = range(clip_length - 1, count)
    if label == NO_GESTURE:
        candidates = [f for f in ends
                      if all(_coverage(a, b, f, clip_length) <= NEGATIVE_COVERAGE for a, b in runs)]
    else:
        first, last = runs[1] if len(runs) > 1 else runs[0]
        candidates = [f for f in ends if _coverage(first, last, f, clip_length) >= POSITIVE_COVERAGE]
    end = int(candidates[int(rng.integers(len(candidates)))])
    frames = []
    for i in range(end - clip_length + 1, end + 1):
        t = i / fps
        rgb, _, _ = scene.frame(t)
        rgb, _ = script.overlay_hand(rgb, t)
        frames.append(resize_frame(rgb, frame_size))
    return np.stack(frames)


class StreamGestureDataset(torch.utils.data.Dataset):
    """``num_clips`` seeded stream windows (:func:`render_stream_clip`); item ``i`` is ``(clip, label)``.

    Labels cycle through ``classes`` like :class:`~tnn_ros.data.gestures.SyntheticGestureDataset`;
    clip ``i`` depends only on ``(seed, i)``.
    """

    def __init__(self, num_clips: int, seed: int = 0, clip_length: int = 16,
                 frame_size: tuple[int, int] = (48, 48), classes: Sequence[str] | None = None) -> None:
        from tnn_ros.data.gestures import GESTURE_CLASSES

        if num_clips < 1:
            raise ValueError(f"num_clips must be >= 1, got {num_clips}")
        self.num_clips, self.seed, self.clip_length = int(num_clips), int(seed), int(clip_length)
        self.frame_size = (int(frame_size[0]), int(frame_size[1]))
        self.classes = list(classes or GESTURE_CLASSES)

    def __len__(self) -> int:
        return self.num_clips

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= index < self.num_clips:
            raise IndexError(f"clip {index} out of range [0, {self.num_clips})")
        label = index % len(self.classes)
        rng = np.random.default_rng([self.seed, index])
        clip = render_stream_clip(rng, self.classes[label], self.clip_length, self.frame_size)
        return torch.from_numpy(clip), label
