"""Throttleable single-shot object detector for CPU / Jetson real time.

A gated ResNet-style backbone (stride 16) with a light top-down neck to stride 8 and a TTFNet-style
anchor-free head (Liu et al. 2020, "Training-Time-Friendly Network"): one heatmap channel per class
and four distances (left, top, right, bottom) per output cell. Every conv is width-gated (the RGB
input and the head's output channels excepted, so the output interface never changes with the level)
and the second residual block of the two deeper stages is depth-gated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..throttle import GatedBasicBlock, GatedConv2d, ThrottleableModule, level_widths

STRIDE = 8
# Distances are predicted as softplus(x) * DISTANCE_SCALE pixels (TTFNet's "wh offset base").
DISTANCE_SCALE = 16.0
HEATMAP_PRIOR_BIAS = -2.19  # sigmoid(-2.19) = 0.1, the usual focal-loss initialisation
NMS_IOU = 0.6
MAX_DETECTIONS = 100

DEFAULT_ARCHITECTURE: dict = {
    "type": "gated_resnet_ttf",
    "num_levels": 8,
    "input_size": [320, 240],  # width, height
    "stem_channels": 32,
    "stage_channels": [32, 64, 128],  # at strides 4, 8, 16
    "blocks_per_stage": [1, 2, 2],
    "neck_channels": 64,  # at stride 8
    "min_width_fraction": 0.5,  # level 0 keeps half of every gated layer's channels
    "channel_multiple": 16,  # channel group size: AVX-512 / oneDNN kernels work on 16 floats
    # level below which each residual block is skipped, per stage (depth gating, nested)
    "block_min_levels": [[1], [0, 4], [0, 2]],
}


@dataclass
class Detection:
    """One detected object, in pixels of the image given to ``predict``."""

    class_id: int
    label: str
    score: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2


class ThrottleableDetector(ThrottleableModule):
    """Width- and depth-gated anchor-free detector; ``forward`` returns (heatmap logits, ltrb distances).

    Args:
        classes: class names; the head has ``len(classes) + 4`` output channels at every level.
        architecture: overrides of :data:`DEFAULT_ARCHITECTURE` (stored in the model card).
        card: the model card this model was loaded from (empty for a fresh model).
    """

    def __init__(
        self, classes: Sequence[str], architecture: dict | None = None, card: dict | None = None
    ) -> None:
        config = {**DEFAULT_ARCHITECTURE, **(architecture or {})}
        super().__init__(num_levels=int(config["num_levels"]))
        if not classes:
            raise ValueError("a detector needs at least one class")
        width, height = (int(v) for v in config["input_size"])
        if width % 16 or height % 16:
            raise ValueError(f"input_size must be multiples of 16, got {width}x{height}")
        stages, blocks, min_levels = (
            config["stage_channels"],
            config["blocks_per_stage"],
            config["block_min_levels"],
        )
        if not len(stages) == len(blocks) == len(min_levels) == 3:
            raise ValueError(
                "stage_channels, blocks_per_stage and block_min_levels need 3 entries (strides 4, 8, 16)"
            )
        self.architecture = config
        self.classes = list(classes)
        self.input_size = (width, height)
        self.card = dict(card or {})
        k, fraction = self.num_levels, float(config["min_width_fraction"])

        def widths(channels: int) -> list[int]:
            return level_widths(channels, k, fraction, int(config["channel_multiple"]))

        stem = int(config["stem_channels"])
        self.stem = GatedConv2d(
            3, stem, 3, stride=2, padding=1, out_widths=widths(stem), norm=True, activation="relu"
        )
        self.downs = torch.nn.ModuleList()
        self.stages = torch.nn.ModuleList()
        previous = stem
        for channels, count, block_levels in zip(stages, blocks, min_levels):
            if len(block_levels) != count:
                raise ValueError(f"block_min_levels {block_levels} does not match {count} blocks")
            self.downs.append(
                GatedConv2d(
                    previous,
                    channels,
                    3,
                    stride=2,
                    padding=1,
                    in_widths=widths(previous),
                    out_widths=widths(channels),
                    norm=True,
                    activation="relu",
                )
            )
            self.stages.append(
                torch.nn.ModuleList(GatedBasicBlock(widths(channels), min_level=int(m)) for m in block_levels)
            )
            previous = channels
        neck = int(config["neck_channels"])
        # Top-down: stride-16 features, projected and upsampled, added to projected stride-8 features.
        self.lateral_deep = GatedConv2d(
            stages[2], neck, 1, in_widths=widths(stages[2]), out_widths=widths(neck), norm=True
        )
        self.lateral_mid = GatedConv2d(
            stages[1], neck, 1, in_widths=widths(stages[1]), out_widths=widths(neck), norm=True
        )
        self.head_conv = GatedConv2d(
            neck,
            neck,
            3,
            padding=1,
            in_widths=widths(neck),
            out_widths=widths(neck),
            norm=True,
            activation="relu",
        )
        self.head_out = GatedConv2d(neck, len(self.classes) + 4, 1, in_widths=widths(neck), bias=True)
        with torch.no_grad():
            self.head_out.bias[: len(self.classes)].fill_(HEATMAP_PRIOR_BIAS)
            self.head_out.bias[len(self.classes) :].zero_()

    # --- network ------------------------------------------------------------------------------------
    def example_input(self, batch_size: int = 1) -> Tensor:
        width, height = self.input_size
        return torch.zeros(batch_size, 3, height, width)

    def features(self, x: Tensor, level: int) -> Tensor:
        """Stride-8 neck features of a batch in [0, 1] at ``level``."""
        x = self.stem(x, level)
        outputs = []
        for down, blocks in zip(self.downs, self.stages):
            x = down(x, level)
            for block in blocks:
                x = block(x, level)
            outputs.append(x)
        deep = self.lateral_deep(outputs[2], level)
        mid = self.lateral_mid(outputs[1], level)
        return F.relu(mid + F.interpolate(deep, size=mid.shape[-2:], mode="nearest"))

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Run the net on a float batch (N, 3, H, W) in [0, 1] with H, W multiples of 16.

        Returns:
            heatmap logits (N, num_classes, H/8, W/8) and distances (N, 4, H/8, W/8) in input pixels
            from each cell centre to the box's left, top, right and bottom edges.
        """
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected a (N, 3, H, W) batch, got {tuple(images.shape)}")
        # channels_last lets oneDNN skip a layout reorder around every conv (about 1.5x faster on CPU).
        images = images.contiguous(memory_format=torch.channels_last)
        # Read the level once: another thread may switch it while this forward runs.
        level = self._level
        out = self.head_out(self.head_conv(self.features(images, level), level), level)
        out = out.contiguous()  # tiny (classes + 4 channels); softplus on a strided slice is slow
        num_classes = len(self.classes)
        return out[:, :num_classes], F.softplus(out[:, num_classes:]) * DISTANCE_SCALE

    # --- inference ----------------------------------------------------------------------------------
    def preprocess(self, image_rgb: np.ndarray) -> Tensor:
        """HxWx3 uint8 RGB of any size -> (1, 3, h, w) float tensor at the network's input size."""
        if not isinstance(image_rgb, np.ndarray) or image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
            raise ValueError(
                f"expected an HxWx3 RGB array, got {getattr(image_rgb, 'shape', type(image_rgb))}"
            )
        if image_rgb.dtype != np.uint8:
            raise ValueError(f"expected uint8 pixels, got {image_rgb.dtype}")
        if image_rgb.shape[0] < 2 or image_rgb.shape[1] < 2:
            raise ValueError(f"image too small: {image_rgb.shape[1]}x{image_rgb.shape[0]}")
        import cv2  # local: only inference needs OpenCV

        width, height = self.input_size
        if image_rgb.shape[:2] != (height, width):
            image_rgb = cv2.resize(image_rgb, (width, height), interpolation=cv2.INTER_AREA)
        # Scale in numpy (one thread): a torch elementwise op on a frame fans out to the intra-op
        # pool, which costs more than the arithmetic on a CPU shared with other nodes. The result is
        # a channels-last view, the layout the network runs in.
        pixels = np.multiply(image_rgb, np.float32(1.0 / 255.0), dtype=np.float32)
        return torch.from_numpy(pixels).permute(2, 0, 1).unsqueeze(0)

    @torch.no_grad()
    def predict(self, image_rgb: np.ndarray, score_threshold: float = 0.3) -> list[Detection]:
        """Detect objects in an HxWx3 uint8 RGB image of any size at the current level.

        Boxes come back in that image's pixel coordinates, best first.
        """
        if self.training:
            raise RuntimeError("call .eval() before predict()")
        heatmap, distances = self(self.preprocess(image_rgb))
        boxes, scores, labels = decode(heatmap, distances, score_threshold)[0]
        height, width = image_rgb.shape[:2]
        scale = np.array([width / self.input_size[0], height / self.input_size[1]] * 2, np.float32)
        # Scale to the image and clip to it (as torchvision's clip_boxes_to_image), in numpy: a
        # handful of boxes, where torch's per-op dispatch would cost more than the arithmetic.
        boxes = np.clip(boxes.numpy() * scale, 0.0, np.array([width, height] * 2, np.float32))
        return [
            Detection(int(c), self.classes[c], float(s), tuple(float(v) for v in b))
            for b, s, c in zip(boxes, scores.tolist(), labels.tolist())
        ]


def cell_centers(height: int, width: int, device=None) -> tuple[Tensor, Tensor]:
    """Pixel coordinates (x, y) of the output cell centres of an (H/8, W/8) map."""
    ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) * STRIDE
    xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) * STRIDE
    return xs.view(1, -1).expand(height, width), ys.view(-1, 1).expand(height, width)


def distances_to_boxes(distances: Tensor) -> Tensor:
    """(N, 4, h, w) ltrb distances -> (N, 4, h, w) xyxy boxes in input pixels."""
    cx, cy = cell_centers(distances.shape[2], distances.shape[3], distances.device)
    return torch.stack(
        [cx - distances[:, 0], cy - distances[:, 1], cx + distances[:, 2], cy + distances[:, 3]], 1
    )


# The 3x3 neighbourhood of a cell (peak test), as row / column offsets.
_WINDOW_DY = np.repeat(np.arange(-1, 2), 3)[None, :]
_WINDOW_DX = np.tile(np.arange(-1, 2), 3)[None, :]
_CENTRE = 4


def _logit_floor(score_threshold: float) -> float:
    """A logit below which no cell can reach ``score_threshold`` (sigmoid is monotonic)."""
    if score_threshold <= 0.0:
        return -math.inf
    if score_threshold >= 1.0:
        return 15.0  # float32 sigmoid only reaches 1.0 above ~16.6
    # The margin keeps float rounding from dropping a cell right at the threshold.
    return math.log(score_threshold / (1.0 - score_threshold)) - 1e-3


def _as_numpy(tensor: Tensor) -> np.ndarray:
    """A float32 CPU view of ``tensor`` (the network's outputs already are: no torch op per frame)."""
    tensor = tensor.detach()
    if tensor.device.type != "cpu" or tensor.dtype != torch.float32:
        tensor = tensor.cpu().float()
    return tensor.numpy()


def _sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # exp(+inf) at the -inf border: sigmoid = 0, as wanted
        return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


def decode(
    heatmap_logits: Tensor,
    distances: Tensor,
    score_threshold: float = 0.3,
    max_detections: int = MAX_DETECTIONS,
) -> list[tuple[Tensor, Tensor, Tensor]]:
    """Heatmap peaks -> per image (boxes xyxy in input pixels, scores, class ids), NMS applied.

    A peak is a cell whose score is the maximum of its 3x3 neighbourhood (CenterNet's max-pool
    test); the ``max_detections`` best peaks at or above ``score_threshold`` go through per-class NMS.
    Only cells whose logit can reach the threshold are examined, so the cost follows the number of
    candidates, not the map size: a few hundred microseconds less per frame than pooling the whole
    map, which every level paid alike.
    """
    n, _, h, w = heatmap_logits.shape
    logits_all, distances_all = _as_numpy(heatmap_logits), _as_numpy(distances)
    floor = _logit_floor(score_threshold)
    results = []
    for i in range(n):
        logits = logits_all[i]
        classes, ys, xs = np.nonzero(logits >= floor)
        scores = np.zeros(0, np.float32)
        if len(classes):
            # Neighbours outside the map are clamped onto the border, i.e. onto cells of the same
            # window: the window maximum is that of the valid neighbours (max-pool's -inf padding).
            rows = np.minimum(np.maximum(ys[:, None] + _WINDOW_DY, 0), h - 1)  # np.clip's wrapper is slow
            cols = np.minimum(np.maximum(xs[:, None] + _WINDOW_DX, 0), w - 1)
            window = _sigmoid(logits[classes[:, None], rows, cols])
            scores = window[:, _CENTRE]
            keep = np.flatnonzero((scores >= window.max(axis=1)) & (scores >= score_threshold))
            keep = keep[np.argsort(-scores[keep], kind="stable")[:max_detections]]
            classes, ys, xs, scores = classes[keep], ys[keep], xs[keep], scores[keep]
        cx = (xs.astype(np.float32) + 0.5) * STRIDE
        cy = (ys.astype(np.float32) + 0.5) * STRIDE
        d = distances_all[i][:, ys, xs]
        boxes = np.stack([cx - d[0], cy - d[1], cx + d[2], cy + d[3]], axis=1)
        classes = classes.astype(np.int64)
        if len(classes) > 1 and np.bincount(classes).max() > 1:  # NMS only works within a class
            keep = class_nms(boxes, classes, NMS_IOU)
            boxes, scores, classes = boxes[keep], scores[keep], classes[keep]
        results.append(
            (
                torch.from_numpy(np.ascontiguousarray(boxes, np.float32)),
                torch.from_numpy(np.ascontiguousarray(scores, np.float32)),
                torch.from_numpy(classes),
            )
        )
    return results


def class_nms(boxes: np.ndarray, classes: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices kept by per-class greedy NMS of ``boxes`` (xyxy, sorted best first), ascending.

    The same rule as torchvision's ``batched_nms``: a box is dropped when its IoU with a kept box of
    its class, earlier in the order, exceeds ``iou_threshold``. In numpy on the few candidates a frame
    has: one IoU matrix, and the greedy pass only over boxes that overlap at all (usually none: the
    peaks are already local maxima). torchvision's op costs ~70 us per call in dispatch alone.
    """
    # IoU as torchvision's box_iou computes it (float32, same operation order).
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    corners = np.minimum(boxes[:, None, 2:], boxes[:, 2:]) - np.maximum(boxes[:, None, :2], boxes[:, :2])
    np.maximum(corners, 0.0, out=corners)
    inter = corners[..., 0] * corners[..., 1]
    with np.errstate(invalid="ignore", divide="ignore"):  # two empty boxes: NaN, never "overlapping"
        overlaps = inter / (areas[:, None] + areas - inter) > iou_threshold
    overlaps &= classes[:, None] == classes
    np.fill_diagonal(overlaps, False)
    keep = np.ones(len(boxes), dtype=bool)
    for i in np.flatnonzero(overlaps.any(axis=1)):
        if keep[i]:  # a kept box drops the later boxes it overlaps
            keep[i + 1 :] &= ~overlaps[i, i + 1 :]
    return np.flatnonzero(keep)


def build_detector(card: dict) -> ThrottleableDetector:
    """Rebuild a detector from its model card (architecture + classes)."""
    architecture = card["architecture"]
    if not isinstance(architecture, dict):
        raise ValueError(f"architecture must be a JSON object, got {type(architecture).__name__}")
    if "num_levels" in card and card["num_levels"] != architecture.get("num_levels"):
        raise ValueError(
            f"num_levels {card['num_levels']} does not match the architecture's "
            f"{architecture.get('num_levels')}"
        )
    return ThrottleableDetector(card["classes"], architecture, card)
