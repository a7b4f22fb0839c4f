"""Training windows cut from the simulated camera stream (:mod:`tnn_ros.sim.stream`) for the gesture net.

A window shows what the recognizer sees live: scene clutter, the scripted hand and the jump between
gestures, labelled by how much of a gesture it covers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.utils.data

from tnn_ros.data.gestures import label_cycle
from tnn_ros.sim.gestures import NO_GESTURE, GestureScript
from tnn_ros.sim.scenes import SceneSequence

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


def partial_weight(coverage: float) -> float:
    """The gesture's share of the target of a window holding ``coverage`` of it (the rest: no_gesture).

    0 up to :data:`NEGATIVE_COVERAGE`, 1 from :data:`POSITIVE_COVERAGE`, linear in between: the hard
    labels of the stream windows at both ends, and a soft one for the windows that are never drawn
    with hard labels (a gesture half begun, or half gone with the hand's jump after it).
    """
    return float(np.clip((coverage - NEGATIVE_COVERAGE) / (POSITIVE_COVERAGE - NEGATIVE_COVERAGE), 0.0, 1.0))


def render_stream_clip(
    rng: np.random.Generator,
    label: str,
    clip_length: int = 16,
    frame_size: tuple[int, int] = (48, 48),
    fps: float = 15.0,
    script_s: float = 8.0,
    boundary_fraction: float = 0.0,
    drop_rate: float = 0.0,
) -> np.ndarray:
    """A ``clip_length`` window of a simulated camera stream showing ``label``: (T, H, W, 3) uint8.

    :func:`render_stream_window` without partial windows, returning the clip only.
    """
    clip, _ = render_stream_window(
        rng, label, clip_length, frame_size, fps, script_s, boundary_fraction, drop_rate
    )
    return clip


def render_stream_window(
    rng: np.random.Generator,
    label: str,
    clip_length: int = 16,
    frame_size: tuple[int, int] = (48, 48),
    fps: float = 15.0,
    script_s: float = 8.0,
    boundary_fraction: float = 0.0,
    drop_rate: float = 0.0,
    partial_fraction: float = 0.0,
) -> tuple[np.ndarray, float]:
    """A ``clip_length`` window of a simulated camera stream around ``label``, and the gesture's weight.

    Returns ``(clip, weight)``: the (T, H, W, 3) uint8 clip and the share of ``label`` in its target
    (the rest is ``no_gesture``; 1 for a plain gesture window, 0 for a ``no_gesture`` one).

    A scene (drifting objects) with a scripted hand (:class:`GestureScript`) is rendered at
    :data:`STREAM_RENDER_SIZE` and fitted to ``frame_size`` like the recognizer's frames. For a
    gesture the window ends where that gesture (the script's second one, so the previous gesture
    and the jump after it may be in view) has at least :data:`POSITIVE_COVERAGE` of its frames
    inside; for ``no_gesture`` anywhere no gesture has more than :data:`NEGATIVE_COVERAGE` inside.

    ``boundary_fraction``: the probability that a ``no_gesture`` window is drawn among the *boundary*
    windows only, those holding part of a gesture (its first frames, or its last frames and the
    hand's jump after it, at most :data:`NEGATIVE_COVERAGE`). Drawn uniformly about half of the
    no_gesture windows are (40 of 80 measured); live they are where a clip classifier announces
    gestures that are not there (a clip whose oldest frames hold the end of a gesture reads as
    ``push``).
    ``drop_rate``: each frame after the first is, with this probability, replaced by the frame
    before it, as :class:`~tnn_ros.models.gesture_recognizer.GestureRecognizer` fills the slot of a
    frame the node dropped. Both 0 (default) draw exactly the windows of earlier versions.
    """
    from tnn_ros.models.gesture import resize_frame
    from tnn_ros.sim.gestures import GESTURE_CLASSES

    if label not in GESTURE_CLASSES:
        raise ValueError(f"unknown gesture {label!r}; expected one of {GESTURE_CLASSES}")
    seed = int(rng.integers(2**31))
    script = GestureScript(seed=seed, gestures=None if label == NO_GESTURE else [label])
    width, height = STREAM_RENDER_SIZE
    scene = SceneSequence(seed, width, height, num_objects=int(rng.integers(0, 5)), speed=40.0 * width / 320)
    count = int(script_s * fps)
    labels = [script.hand_at(i / fps).label for i in range(count)]
    runs, start = [], None  # (first, last) frame of each gesture
    for i, name in enumerate([*labels, NO_GESTURE]):
        if name != NO_GESTURE and start is None:
            start = i
        elif name == NO_GESTURE and start is not None:
            runs.append((start, i - 1))
            start = None
    ends = range(clip_length - 1, count)
    if label == NO_GESTURE:
        candidates = [
            f for f in ends if all(_coverage(a, b, f, clip_length) <= NEGATIVE_COVERAGE for a, b in runs)
        ]
        if boundary_fraction > 0 and rng.random() < boundary_fraction:
            boundary = [f for f in candidates if any(_coverage(a, b, f, clip_length) > 0 for a, b in runs)]
            candidates = boundary or candidates
    else:
        first, last = runs[1] if len(runs) > 1 else runs[0]
        partial = partial_fraction > 0 and rng.random() < partial_fraction
        if partial:
            candidates = [f for f in ends if 0 < _coverage(first, last, f, clip_length) < POSITIVE_COVERAGE]
        if not partial or not candidates:
            candidates = [f for f in ends if _coverage(first, last, f, clip_length) >= POSITIVE_COVERAGE]
    end = int(candidates[int(rng.integers(len(candidates)))])
    weight = 0.0 if label == NO_GESTURE else partial_weight(_coverage(first, last, end, clip_length))
    frames = []
    for i in range(end - clip_length + 1, end + 1):
        t = i / fps
        rgb, _, _ = scene.frame(t)
        rgb, _ = script.overlay_hand(rgb, t)
        frames.append(resize_frame(rgb, frame_size))
    if drop_rate > 0:
        for j in np.flatnonzero(rng.random(clip_length) < drop_rate):
            if j > 0:  # in order, so a run of drops repeats the last frame that arrived
                frames[j] = frames[j - 1]
    return np.stack(frames), weight


class StreamGestureDataset(torch.utils.data.Dataset):
    """``num_clips`` seeded stream windows (:func:`render_stream_clip`); item ``i`` is ``(clip, label)``.

    ``boundary_fraction`` / ``drop_rate`` / ``partial_fraction``: see :func:`render_stream_window`.
    With ``partial_fraction > 0`` an item's label is a float vector over ``classes`` (the soft target
    of a partial window: the gesture's weight, the rest on ``no_gesture``) instead of a class index.

    Labels cycle through ``classes`` like :class:`~tnn_ros.data.gestures.SyntheticGestureDataset`
    (``class_repeats``: :func:`~tnn_ros.data.gestures.label_cycle`); clip ``i`` depends only on
    ``(seed, i)``.
    """

    def __init__(
        self,
        num_clips: int,
        seed: int = 0,
        clip_length: int = 16,
        frame_size: tuple[int, int] = (48, 48),
        classes: Sequence[str] | None = None,
        boundary_fraction: float = 0.0,
        drop_rate: float = 0.0,
        partial_fraction: float = 0.0,
        class_repeats: Mapping[str, int] | None = None,
    ) -> None:
        from tnn_ros.sim.gestures import GESTURE_CLASSES

        if num_clips < 1:
            raise ValueError(f"num_clips must be >= 1, got {num_clips}")
        for name, value in (
            ("boundary_fraction", boundary_fraction),
            ("drop_rate", drop_rate),
            ("partial_fraction", partial_fraction),
        ):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        self.boundary_fraction, self.drop_rate = float(boundary_fraction), float(drop_rate)
        self.partial_fraction = float(partial_fraction)
        self.num_clips, self.seed, self.clip_length = int(num_clips), int(seed), int(clip_length)
        self.frame_size = (int(frame_size[0]), int(frame_size[1]))
        self.classes = list(classes or GESTURE_CLASSES)
        self._labels = label_cycle(self.classes, class_repeats)

    def __len__(self) -> int:
        return self.num_clips

    def label_of(self, index: int) -> int:
        """Class index of window ``index`` (no rendering)."""
        return self._labels[index % len(self._labels)]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int | torch.Tensor]:
        if not 0 <= index < self.num_clips:
            raise IndexError(f"clip {index} out of range [0, {self.num_clips})")
        label = self.label_of(index)
        rng = np.random.default_rng([self.seed, index])
        clip, weight = render_stream_window(
            rng,
            self.classes[label],
            self.clip_length,
            self.frame_size,
            boundary_fraction=self.boundary_fraction,
            drop_rate=self.drop_rate,
            partial_fraction=self.partial_fraction,
        )
        if self.partial_fraction == 0:
            return torch.from_numpy(clip), label
        target = torch.zeros(len(self.classes))
        target[label] += weight
        target[self.classes.index(NO_GESTURE)] += 1.0 - weight
        return torch.from_numpy(clip), target
