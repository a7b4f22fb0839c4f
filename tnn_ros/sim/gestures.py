"""Synthetic hand-gesture clips with ground truth (seeded, deterministic).

A "hand" is a skin-coloured palm with four fingers and a thumb, drawn with anti-aliased signed
distance fields. A gesture is a motion of that hand over a clip:

- ``swipe_left`` / ``swipe_right`` / ``swipe_up`` / ``swipe_down``: the hand travels across the frame,
- ``push`` / ``pull``: the hand grows / shrinks (moves towards / away from the camera),
- ``rotate``: the hand turns in place by 90-180 degrees (either direction),
- ``no_gesture``: the hand rests (small jitter or slow drift) or is not in view.

Every clip varies speed, timing, position, scale, skin tone, handedness, background (gradient,
blocks, low-frequency texture), moving non-skin distractors, brightness and sensor noise. The same
hand renderer drives :class:`GestureScript`, a scripted stream of gestures that a simulated camera
overlays on its frames (:meth:`GestureScript.overlay_hand`) with the current label as ground truth.

Training assumes about 15 frames per second: a gesture in a clip of 16 frames lasts 6-16 frames,
and :class:`GestureScript` gestures last 0.6-1.0 s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

GESTURE_CLASSES: tuple[str, ...] = (
    "no_gesture",
    "swipe_left",
    "swipe_right",
    "swipe_up",
    "swipe_down",
    "push",
    "pull",
    "rotate",
)
NO_GESTURE = "no_gesture"

# Skin tones (RGB 0..1) from light to dark; a clip picks one and jitters it.
_SKIN_TONES = np.array(
    [
        [0.96, 0.80, 0.69],
        [0.92, 0.72, 0.58],
        [0.84, 0.62, 0.47],
        [0.72, 0.51, 0.36],
        [0.58, 0.39, 0.26],
        [0.42, 0.28, 0.19],
    ],
    dtype=np.float32,
)


@dataclass(frozen=True)
class HandPose:
    """Where the hand is in one frame, in units of the frame (independent of its pixel size).

    ``x``, ``y``: palm centre as fractions of the frame width / height; ``size``: palm height as a
    fraction of ``min(width, height)``; ``angle``: radians counter-clockwise, 0 = fingers up;
    ``mirrored``: a left hand (thumb on the other side); ``visible``: drawn at all.
    """

    x: float
    y: float
    size: float
    angle: float = 0.0
    mirrored: bool = False
    visible: bool = True


@dataclass(frozen=True)
class GestureMotion:
    """A gesture as a start pose and the change applied over its duration (eased)."""

    label: str
    start: HandPose
    dx: float = 0.0
    dy: float = 0.0
    size_factor: float = 1.0
    dangle: float = 0.0
    wiggle: float = 0.0  # amplitude of a slow random-looking sway (no_gesture)
    phase: float = 0.0

    def pose_at(self, progress: float) -> HandPose:
        """The pose at ``progress`` in [0, 1] of the gesture (clamped); smoothstep easing."""
        p = min(max(float(progress), 0.0), 1.0)
        eased = p * p * (3.0 - 2.0 * p)
        sway_x = self.wiggle * math.sin(2.0 * math.pi * (0.7 * p) + self.phase)
        sway_y = self.wiggle * math.sin(2.0 * math.pi * (1.1 * p) + 1.7 * self.phase)
        return replace(
            self.start,
            x=self.start.x + self.dx * eased + sway_x,
            y=self.start.y + self.dy * eased + sway_y,
            size=self.start.size * (self.size_factor**eased),
            angle=self.start.angle + self.dangle * eased,
        )


def _check_label(label: str) -> None:
    if label not in GESTURE_CLASSES:
        raise ValueError(f"unknown gesture {label!r}; expected one of {GESTURE_CLASSES}")


def sample_motion(rng: np.random.Generator, label: str) -> GestureMotion:
    """Draw a random instance of gesture ``label`` (position, scale, extent, direction)."""
    _check_label(label)
    size = float(rng.uniform(0.16, 0.27))
    start = HandPose(
        x=float(rng.uniform(0.3, 0.7)),
        y=float(rng.uniform(0.35, 0.7)),
        size=size,
        angle=float(rng.normal(0.0, 0.25)),
        mirrored=bool(rng.random() < 0.5),
    )
    if label.startswith("swipe_"):
        distance = float(rng.uniform(0.35, 0.6))
        across = float(rng.uniform(-0.08, 0.08))
        direction = {"swipe_left": (-1, 0), "swipe_right": (1, 0), "swipe_up": (0, -1), "swipe_down": (0, 1)}[
            label
        ]
        # Start so that the path is centred on the frame with some random offset.
        cx, cy = float(rng.uniform(0.4, 0.6)), float(rng.uniform(0.4, 0.6))
        dx = direction[0] * distance + (across if direction[0] == 0 else 0.0)
        dy = direction[1] * distance + (across if direction[1] == 0 else 0.0)
        start = replace(start, x=cx - dx / 2, y=cy - dy / 2)
        return GestureMotion(label, start, dx=dx, dy=dy)
    if label in ("push", "pull"):
        factor = float(rng.uniform(1.6, 2.2))
        if label == "push":
            start = replace(start, size=float(rng.uniform(0.12, 0.18)))
            return GestureMotion(
                label, start, size_factor=factor, dx=float(rng.normal(0, 0.03)), dy=float(rng.normal(0, 0.03))
            )
        start = replace(start, size=float(rng.uniform(0.26, 0.34)))
        return GestureMotion(
            label,
            start,
            size_factor=1.0 / factor,
            dx=float(rng.normal(0, 0.03)),
            dy=float(rng.normal(0, 0.03)),
        )
    if label == "rotate":
        turn = float(rng.uniform(math.pi / 2, math.pi)) * (1 if rng.random() < 0.5 else -1)
        return GestureMotion(label, start, dangle=turn)
    # no_gesture: resting hand with jitter / slow drift, or no hand in view.
    visible = rng.random() > 0.2
    return GestureMotion(
        label,
        replace(start, visible=visible),
        dx=float(rng.uniform(-0.06, 0.06)),
        dy=float(rng.uniform(-0.06, 0.06)),
        wiggle=float(rng.uniform(0.0, 0.025)),
        phase=float(rng.uniform(0, 2 * math.pi)),
        dangle=float(rng.normal(0, 0.15)),
    )


# --- drawing ------------------------------------------------------------------------------------------


def _capsule_distance(
    u: np.ndarray, v: np.ndarray, a: tuple[float, float], b: tuple[float, float], radius: float
) -> np.ndarray:
    """Signed distance from points (u, v) to a capsule between a and b."""
    bu, bv = b[0] - a[0], b[1] - a[1]
    pu, pv = u - a[0], v - a[1]
    t = np.clip((pu * bu + pv * bv) / (bu * bu + bv * bv), 0.0, 1.0)
    return np.hypot(pu - t * bu, pv - t * bv) - radius


def draw_hand(canvas: np.ndarray, pose: HandPose, color: Sequence[float]) -> None:
    """Draw the hand at ``pose`` into ``canvas`` (HxWx3 float32 in [0, 1]) in place.

    Only the hand's bounding box is touched, so drawing into a large camera frame is cheap.
    """
    if not pose.visible:
        return
    height, width = canvas.shape[:2]
    s = pose.size * min(width, height)  # palm height in pixels
    if s < 1.0:
        return
    cx, cy = pose.x * width, pose.y * height
    reach = 1.5 * s
    x0, x1 = max(int(cx - reach), 0), min(int(cx + reach) + 1, width)
    y0, y1 = max(int(cy - reach), 0), min(int(cy + reach) + 1, height)
    if x0 >= x1 or y0 >= y1:
        return
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dx, dy = xs + 0.5 - cx, ys + 0.5 - cy
    cos_a, sin_a = math.cos(pose.angle), math.sin(pose.angle)
    # Hand frame: u to the right of the palm, v towards the fingers (image y points down).
    u = (cos_a * dx - sin_a * dy) / s
    v = (-sin_a * dx - cos_a * dy) / s
    if pose.mirrored:
        u = -u
    dist = np.sqrt((u / 0.42) ** 2 + (v / 0.5) ** 2) * 0.42 - 0.42  # palm (ellipse, approx.)
    for base_u, length in ((-0.28, 0.48), (-0.095, 0.62), (0.095, 0.58), (0.28, 0.42)):
        dist = np.minimum(
            dist, _capsule_distance(u, v, (base_u, 0.38), (base_u * 1.25, 0.38 + length), 0.085)
        )
    dist = np.minimum(dist, _capsule_distance(u, v, (0.3, -0.05), (0.68, 0.28), 0.1))  # thumb
    alpha = np.clip(0.5 - dist * s, 0.0, 1.0)[..., None]  # 1-pixel anti-aliasing
    shade = (0.88 + 0.12 * np.clip(v, -0.6, 0.6))[..., None]  # lit from the fingertips
    region = canvas[y0:y1, x0:x1]
    region[...] = region * (1.0 - alpha) + alpha * (np.asarray(color, np.float32) * shade)


def _random_color(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0.05, 0.95, size=3).astype(np.float32)


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A random backdrop: two-colour gradient, coloured blocks, or low-frequency texture."""
    kind = rng.integers(3)
    if kind == 0:
        a, b = _random_color(rng), _random_color(rng)
        ramp = np.linspace(0.0, 1.0, height if rng.random() < 0.5 else width, dtype=np.float32)
        ramp = ramp[:, None] if len(ramp) == height else ramp[None, :]
        ramp = np.broadcast_to(ramp, (height, width))[..., None]
        return (a * (1 - ramp) + b * ramp).astype(np.float32)
    if kind == 1:
        canvas = np.empty((height, width, 3), np.float32)
        canvas[:] = _random_color(rng)
        for _ in range(rng.integers(2, 7)):
            x0, y0 = rng.integers(0, width), rng.integers(0, height)
            w = rng.integers(width // 8 + 1, width // 2 + 2)
            h = rng.integers(height // 8 + 1, height // 2 + 2)
            canvas[y0 : y0 + h, x0 : x0 + w] = _random_color(rng)
        return canvas
    coarse = rng.uniform(0.1, 0.9, size=(4, 4, 3)).astype(np.float32)
    rows = np.linspace(0, 3, height, dtype=np.float32)
    cols = np.linspace(0, 3, width, dtype=np.float32)
    r0, c0 = np.minimum(rows.astype(int), 2), np.minimum(cols.astype(int), 2)
    fr, fc = (rows - r0)[:, None, None], (cols - c0)[None, :, None]
    top = coarse[r0][:, c0] * (1 - fc) + coarse[r0][:, c0 + 1] * fc
    bottom = coarse[r0 + 1][:, c0] * (1 - fc) + coarse[r0 + 1][:, c0 + 1] * fc
    return (top * (1 - fr) + bottom * fr).astype(np.float32)


@dataclass
class _Distractor:
    """A non-skin ball or box that moves in a straight line (so motion alone is not a gesture)."""

    x: float
    y: float
    vx: float
    vy: float
    radius: float
    color: np.ndarray
    box: bool

    def draw(self, canvas: np.ndarray, frame: int) -> None:
        height, width = canvas.shape[:2]
        cx, cy = (self.x + self.vx * frame) * width, (self.y + self.vy * frame) * height
        r = self.radius * min(width, height)
        x0, x1 = max(int(cx - r - 1), 0), min(int(cx + r + 2), width)
        y0, y1 = max(int(cy - r - 1), 0), min(int(cy + r + 2), height)
        if x0 >= x1 or y0 >= y1:
            return
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        if self.box:
            dist = np.maximum(np.abs(xs + 0.5 - cx), np.abs(ys + 0.5 - cy)) - r
        else:
            dist = np.hypot(xs + 0.5 - cx, ys + 0.5 - cy) - r
        alpha = np.clip(0.5 - dist, 0.0, 1.0)[..., None]
        region = canvas[y0:y1, x0:x1]
        region[...] = region * (1.0 - alpha) + alpha * self.color


def _random_distractor(rng: np.random.Generator) -> _Distractor:
    color = _random_color(rng)
    color[2] = max(color[2], color[0] + 0.15)  # bluer than red: never skin-like
    return _Distractor(
        x=float(rng.uniform(0, 1)),
        y=float(rng.uniform(0, 1)),
        vx=float(rng.uniform(-0.04, 0.04)),
        vy=float(rng.uniform(-0.04, 0.04)),
        radius=float(rng.uniform(0.04, 0.1)),
        color=np.clip(color, 0, 1),
        box=bool(rng.random() < 0.5),
    )


def skin_color(rng: np.random.Generator) -> np.ndarray:
    """A random skin tone (RGB in [0, 1])."""
    tone = _SKIN_TONES[rng.integers(len(_SKIN_TONES))]
    return np.clip(tone + rng.normal(0.0, 0.03, size=3), 0.0, 1.0).astype(np.float32)


def render_clip(
    rng: np.random.Generator, label: str, num_frames: int = 16, width: int = 48, height: int = 48
) -> np.ndarray:
    """Render one clip of gesture ``label``: ``num_frames`` x height x width x 3 uint8 RGB.

    All randomness comes from ``rng``, so the same generator state gives the same clip.
    """
    _check_label(label)
    if num_frames < 2 or width < 8 or height < 8:
        raise ValueError(
            f"need num_frames >= 2 and a frame of at least 8x8, got {num_frames} frames of {width}x{height}"
        )
    motion = sample_motion(rng, label)
    # The gesture spans 40-100% of the clip, starting anywhere that lets it finish inside the clip.
    duration = max(2, int(round(num_frames * rng.uniform(0.4, 1.0))))
    if label == NO_GESTURE:
        duration = num_frames
    first = int(rng.integers(0, num_frames - duration + 1))
    background = _background(rng, width, height)
    distractors = [_random_distractor(rng) for _ in range(rng.integers(0, 3))]
    color = skin_color(rng)
    gain, offset = float(rng.uniform(0.75, 1.2)), float(rng.uniform(-0.08, 0.08))
    noise = float(rng.uniform(0.0, 0.04))
    clip = np.empty((num_frames, height, width, 3), np.uint8)
    for frame in range(num_frames):
        canvas = background.copy()
        for distractor in distractors:
            distractor.draw(canvas, frame)
        progress = (frame - first) / max(duration - 1, 1)
        draw_hand(canvas, motion.pose_at(progress), color)
        canvas = canvas * gain + offset
        if noise > 0:
            canvas = canvas + rng.normal(0.0, noise, size=canvas.shape).astype(np.float32)
        clip[frame] = np.clip(canvas * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return clip


# --- streaming: a scripted gesturing hand for a simulated camera -------------------------------------


@dataclass(frozen=True)
class ScriptSegment:
    """One stretch of a :class:`GestureScript`: a gesture (or rest) from ``start_s`` to ``end_s``."""

    start_s: float
    end_s: float
    motion: GestureMotion


@dataclass(frozen=True)
class HandState:
    """What :meth:`GestureScript.hand_at` reports for one instant."""

    pose: HandPose
    label: str


class GestureScript:
    """An endless, seeded sequence of gestures separated by rests, as a function of time.

    Rests (0.8-2.0 s, hand still at the next gesture's start pose, sometimes out of view) alternate
    with gestures (0.6-1.0 s); between a gesture's end and the next rest the hand jumps. The label is
    the gesture while the hand moves and ``no_gesture`` otherwise, so a camera that overlays the hand
    can publish exact ground truth. Segments are generated lazily and deterministically from ``seed``.

    Args:
        seed: the script is a pure function of the seed.
        gestures: labels to draw gestures from (default: every class except ``no_gesture``).
        gesture_s / rest_s: (min, max) duration ranges in seconds.
    """

    def __init__(
        self,
        seed: int = 0,
        gestures: Sequence[str] | None = None,
        gesture_s: tuple[float, float] = (0.6, 1.0),
        rest_s: tuple[float, float] = (0.8, 2.0),
    ) -> None:
        self.gestures = [g for g in (gestures or GESTURE_CLASSES) if g != NO_GESTURE]
        if not self.gestures:
            raise ValueError("a gesture script needs at least one gesture other than no_gesture")
        for label in self.gestures:
            _check_label(label)
        for name, (low, high) in (("gesture_s", gesture_s), ("rest_s", rest_s)):
            if not 0 < low <= high:
                raise ValueError(f"{name} must be (min, max) with 0 < min <= max, got {(low, high)}")
        self.gesture_s, self.rest_s = gesture_s, rest_s
        self._rng = np.random.default_rng(seed)
        self._color = skin_color(self._rng)
        self._mirrored = bool(self._rng.random() < 0.5)
        self._segments: list[ScriptSegment] = []

    def _extend_to(self, t: float) -> None:
        # Segments come in pairs: a rest that holds the hand at the start pose of the gesture that
        # follows it (or keeps it out of view), then that gesture.
        while not self._segments or self._segments[-1].end_s <= t:
            start = self._segments[-1].end_s if self._segments else 0.0
            gesture = sample_motion(self._rng, self.gestures[self._rng.integers(len(self.gestures))])
            gesture = replace(gesture, start=replace(gesture.start, mirrored=self._mirrored))
            rest = GestureMotion(
                NO_GESTURE,
                replace(gesture.start, visible=self._rng.random() > 0.15),
                wiggle=float(self._rng.uniform(0.0, 0.01)),
                phase=float(self._rng.uniform(0, 2 * math.pi)),
            )
            rest_end = start + float(self._rng.uniform(*self.rest_s))
            gesture_end = rest_end + float(self._rng.uniform(*self.gesture_s))
            self._segments.append(ScriptSegment(start, rest_end, rest))
            self._segments.append(ScriptSegment(rest_end, gesture_end, gesture))

    def segment_at(self, t: float) -> ScriptSegment:
        """The segment covering time ``t`` (seconds from the script start; negative counts as 0)."""
        t = float(t)
        if not math.isfinite(t):
            raise ValueError(f"time must be finite, got {t}")
        t = max(t, 0.0)
        self._extend_to(t)
        low, high = 0, len(self._segments) - 1
        while low < high:  # binary search: segments are sorted and contiguous
            mid = (low + high) // 2
            if self._segments[mid].end_s <= t:
                low = mid + 1
            else:
                high = mid
        return self._segments[low]

    def hand_at(self, t: float) -> HandState:
        """The hand pose and ground-truth label at time ``t`` (seconds)."""
        segment = self.segment_at(t)
        progress = (max(float(t), 0.0) - segment.start_s) / (segment.end_s - segment.start_s)
        return HandState(segment.motion.pose_at(progress), segment.motion.label)

    def overlay_hand(self, frame_rgb: np.ndarray, t: float) -> tuple[np.ndarray, str]:
        """Return a copy of ``frame_rgb`` (HxWx3 uint8) with the hand drawn at time ``t``, and its label."""
        if frame_rgb.ndim != 3 or frame_rgb.shape[2] != 3 or frame_rgb.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 frame, got {frame_rgb.dtype} {frame_rgb.shape}")
        state = self.hand_at(t)
        out = frame_rgb.copy()
        if state.pose.visible:
            height, width = out.shape[:2]
            # Draw into a float copy of just the hand's neighbourhood to keep large frames cheap.
            s = state.pose.size * min(width, height)
            cx, cy = state.pose.x * width, state.pose.y * height
            x0, x1 = max(int(cx - 1.6 * s), 0), min(int(cx + 1.6 * s) + 1, width)
            y0, y1 = max(int(cy - 1.6 * s), 0), min(int(cy + 1.6 * s) + 1, height)
            if x0 < x1 and y0 < y1:
                patch = out[y0:y1, x0:x1].astype(np.float32) / 255.0
                shifted = replace(
                    state.pose,
                    x=(cx - x0) / (x1 - x0),
                    y=(cy - y0) / (y1 - y0),
                    size=s / min(x1 - x0, y1 - y0),
                )
                draw_hand(patch, shifted, self._color)
                out[y0:y1, x0:x1] = np.clip(patch * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return out, state.label
