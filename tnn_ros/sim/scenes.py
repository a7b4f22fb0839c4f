"""Seeded synthetic detection scenes with exact ground truth (training data and the sim camera).

Objects of five classes are drawn as textured sprites on cluttered backgrounds, with partial
occlusion, sensor noise, brightness changes and blur. Every image is a pure function of its random
generator, so a seed reproduces the same data set on any machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

CLASSES: tuple[str, ...] = ("box", "ball", "bottle", "cone", "person")
# How far the box of a new object may overlap earlier ones: partial occlusion, never hidden objects.
MAX_OVERLAP_IOU = 0.3


@dataclass
class Sprite:
    """One object: its pixels, its mask (tight to the object) and its class id."""

    label: int
    rgb: np.ndarray  # h x w x 3 uint8
    mask: np.ndarray  # h x w bool


def _color(rng: np.random.Generator, low: int = 0, high: int = 256) -> np.ndarray:
    return rng.integers(low, high, size=3).astype(np.float32)


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A solid, striped, checkered or shaded fill of size h x w x 3 (float32)."""
    base, other = _color(rng, 30), _color(rng, 30)
    kind = rng.integers(4)
    if kind == 0:
        return np.broadcast_to(base, (h, w, 3)).copy()
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == 1:
        period = rng.uniform(4, 12)
        angle = rng.uniform(0, np.pi)
        sel = (np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period) > 0)[..., None]
    elif kind == 2:
        cell = int(rng.integers(3, 9))
        sel = (((yy // cell) + (xx // cell)) % 2 == 0)[..., None]
    else:
        shade = (0.55 + 0.45 * (1 - xx / max(w - 1, 1)))[..., None]
        return np.clip(base * shade, 0, 255)
    return np.where(sel, base, other)


def _draw_mask(label: int, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Silhouette of one class, filling its h x w box edge to edge."""
    mask = np.zeros((h, w), np.uint8)
    name = CLASSES[label]
    if name == "box":
        mask[:] = 1
        if rng.random() < 0.5:  # a slanted top face for a 3-D look, still touching all four edges
            cut = int(h * rng.uniform(0.1, 0.3))
            pts = np.array([[0, cut], [cut, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.int32)
            mask[:] = 0
            cv2.fillPoly(mask, [pts], 1)
    elif name == "ball":
        cv2.ellipse(mask, (w // 2, h // 2), (max(w // 2, 1), max(h // 2, 1)), 0, 0, 360, 1, -1)
    elif name == "bottle":
        neck_w, neck_h = max(2, int(w * 0.4)), int(h * 0.3)
        x0 = (w - neck_w) // 2
        mask[neck_h:, :] = 1
        mask[: neck_h + 1, x0 : x0 + neck_w] = 1
        cv2.ellipse(mask, (w // 2, neck_h), (w // 2, max(2, neck_h // 3)), 0, 180, 360, 1, -1)
    elif name == "cone":
        pts = np.array([[w // 2, 0], [w - 1, h - 1], [0, h - 1]], np.int32)
        cv2.fillPoly(mask, [pts], 1)
    else:  # person: head, torso, legs, arms
        head = max(2, int(min(w * 0.45, h * 0.16)))
        cx = w // 2
        cv2.circle(mask, (cx, head), head, 1, -1)
        torso_top, torso_bot = 2 * head, int(h * 0.62)
        tw = max(2, int(w * 0.3))
        mask[torso_top:torso_bot, cx - tw : cx + tw] = 1
        leg = max(2, int(w * 0.12))
        cv2.line(mask, (cx - tw // 2, torso_bot - 1), (max(leg, int(w * 0.22)), h - 1), 1, leg)
        cv2.line(mask, (cx + tw // 2, torso_bot - 1), (min(w - 1 - leg, int(w * 0.78)), h - 1), 1, leg)
        arm = max(2, leg - 1)
        cv2.line(mask, (cx - tw, torso_top + 2), (arm, int(h * rng.uniform(0.3, 0.55))), 1, arm)
        cv2.line(mask, (cx + tw, torso_top + 2), (w - 1 - arm, int(h * rng.uniform(0.3, 0.55))), 1, arm)
    return mask.astype(bool)


# height / width ranges per class, so shapes are recognisable by silhouette, not only by size
_ASPECT = {
    "box": (0.6, 1.4),
    "ball": (0.9, 1.1),
    "bottle": (1.8, 3.0),
    "cone": (1.0, 1.6),
    "person": (2.0, 2.8),
}


def make_sprite(rng: np.random.Generator, width: int, height: int, label: int | None = None) -> Sprite:
    """A random object sized for a width x height image (about 6% to 45% of the short side)."""
    label = int(rng.integers(len(CLASSES))) if label is None else label
    aspect = rng.uniform(*_ASPECT[CLASSES[label]])
    size = rng.uniform(0.06, 0.45) * min(width, height)  # geometric mean of the box sides
    w = int(np.clip(size / np.sqrt(aspect), 8, width - 2))
    h = int(np.clip(size * np.sqrt(aspect), 8, height - 2))
    mask = _draw_mask(label, h, w, rng)
    rgb = _texture(rng, h, w)
    if CLASSES[label] == "ball":  # radial shading
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        r = np.hypot((xx - w * 0.35) / w, (yy - h * 0.35) / h)
        rgb = rgb * np.clip(1.15 - r, 0.4, 1.0)[..., None]
    if CLASSES[label] == "cone" and rng.random() < 0.6:  # reflective bands
        for frac in (0.35, 0.65):
            rgb[int(h * frac) : int(h * (frac + 0.1))] = 235
    return Sprite(label, np.clip(rgb, 0, 255).astype(np.uint8), mask)


def make_background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A gradient with low-contrast clutter (rectangles, blobs, lines): a floor, a wall, a table."""
    top, bottom = _color(rng), _color(rng)
    t = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    img = top * (1 - t) + bottom * t
    img = np.broadcast_to(img, (height, width, 3)).copy()
    for _ in range(int(rng.integers(2, 9))):
        color = tuple(float(c) for c in np.clip(img.mean((0, 1)) + rng.normal(0, 45, 3), 0, 255))
        kind = rng.integers(3)
        if kind == 0:
            x, y = int(rng.integers(width)), int(rng.integers(height))
            size = (int(rng.integers(10, width // 2)), int(rng.integers(5, height // 3)))
            cv2.rectangle(img, (x, y), (x + size[0], y + size[1]), color, -1)
        elif kind == 1:
            center = (int(rng.integers(width)), int(rng.integers(height)))
            cv2.circle(img, center, int(rng.integers(4, 30)), color, -1)
        else:
            cv2.line(
                img,
                (int(rng.integers(width)), int(rng.integers(height))),
                (int(rng.integers(width)), int(rng.integers(height))),
                color,
                int(rng.integers(1, 5)),
            )
    return img


def paste(img: np.ndarray, sprite: Sprite, x: int, y: int) -> tuple[float, float, float, float] | None:
    """Draw ``sprite`` with its top-left at (x, y); return its visible box (x1, y1, x2, y2) or None."""
    h, w = sprite.mask.shape
    H, W = img.shape[:2]
    x1, y1, x2, y2 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
    if x2 - x1 < 4 or y2 - y1 < 4:
        return None
    mask = sprite.mask[y1 - y : y2 - y, x1 - x : x2 - x]
    region = img[y1:y2, x1:x2]
    region[mask] = sprite.rgb[y1 - y : y2 - y, x1 - x : x2 - x][mask]
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return float(x1 + xs.min()), float(y1 + ys.min()), float(x1 + xs.max() + 1), float(y1 + ys.max() + 1)


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def finish_image(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Camera effects: brightness/contrast change, optional blur, sensor noise; returns uint8."""
    img = img * rng.uniform(0.7, 1.25) + rng.uniform(-25, 25)
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (3, 3), 0)
    img = img + rng.normal(0, rng.uniform(0, 8), img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def render_scene(
    rng: np.random.Generator, width: int = 320, height: int = 240, max_objects: int = 6
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one random scene.

    Returns:
        rgb: height x width x 3 uint8 image.
        boxes: (N, 4) float32 xyxy boxes in pixels, tight around each visible object.
        labels: (N,) int64 class ids into :data:`CLASSES`.
    """
    if width < 32 or height < 32:
        raise ValueError(f"scene must be at least 32x32, got {width}x{height}")
    img = make_background(rng, width, height)
    boxes: list[tuple[float, float, float, float]] = []
    labels: list[int] = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        sprite = make_sprite(rng, width, height)
        h, w = sprite.mask.shape
        for _attempt in range(10):
            x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
            candidate = (x, y, x + w, y + h)
            if all(_iou(candidate, b) <= MAX_OVERLAP_IOU for b in boxes):
                break
        else:
            continue
        box = paste(img, sprite, x, y)
        if box is not None:
            boxes.append(box)
            labels.append(sprite.label)
    return (
        finish_image(img, rng),
        np.asarray(boxes, np.float32).reshape(-1, 4),
        np.asarray(labels, np.int64),
    )


class SceneSequence:
    """A slowly changing scene: fixed background, objects drifting and bouncing off the borders.

    ``frame(t)`` is a pure function of (seed, t), so any frame can be rendered in any order.
    """

    def __init__(
        self, seed: int, width: int = 320, height: int = 240, num_objects: int = 4, speed: float = 40.0
    ) -> None:
        rng = np.random.default_rng(seed)
        self.seed, self.width, self.height = seed, width, height
        self.background = make_background(rng, width, height)
        self.sprites = [make_sprite(rng, width, height) for _ in range(num_objects)]
        self.start = np.array(
            [
                [rng.uniform(0, width - s.mask.shape[1]), rng.uniform(0, height - s.mask.shape[0])]
                for s in self.sprites
            ],
            dtype=np.float64,
        ).reshape(-1, 2)
        angles = rng.uniform(0, 2 * np.pi, num_objects)
        speeds = rng.uniform(0.3, 1.0, num_objects) * speed  # pixels per second
        self.velocity = np.stack([np.cos(angles), np.sin(angles)], 1) * speeds[:, None]

    @staticmethod
    def _bounce(p: float, span: float) -> float:
        if span <= 0:
            return 0.0
        p = p % (2 * span)
        return 2 * span - p if p > span else p

    def frame(self, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Render the scene at time ``t`` seconds: (rgb, boxes, labels) as :func:`render_scene`."""
        img = self.background.copy()
        boxes, labels = [], []
        for sprite, start, vel in zip(self.sprites, self.start, self.velocity):
            h, w = sprite.mask.shape
            x = self._bounce(start[0] + vel[0] * t, self.width - w)
            y = self._bounce(start[1] + vel[1] * t, self.height - h)
            box = paste(img, sprite, int(round(x)), int(round(y)))
            if box is not None:
                boxes.append(box)
                labels.append(sprite.label)
        noise_rng = np.random.default_rng((self.seed, int(round(t * 1000))))
        return (
            finish_image(img, noise_rng),
            np.asarray(boxes, np.float32).reshape(-1, 4),
            np.asarray(labels, np.int64),
        )
