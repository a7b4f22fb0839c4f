"""torchvision detectors and video classifiers made throttleable (see :mod:`tnn_ros.throttle.convert`).

:class:`ConvertedDetector` wraps ``ssdlite320_mobilenet_v3_large`` or
``fasterrcnn_mobilenet_v3_large_320_fpn`` and offers the :class:`ThrottleableDetector` interface the
perception node uses (``predict``, ``set_level``, ``set_utilization``, ``warmup``, ``classes``).
:class:`ConvertedVideoNet` wraps ``r3d_18``, ``mc3_18`` or ``r2plus1d_18`` with the gesture net's
interface (``clip_length``, ``frame_size``, ``predict_clip``) so the gesture recognizer can run it.

A converted model file is an ordinary model file (:mod:`tnn_ros.models.io`): the state dict of the
converted network and a card whose ``architecture`` has ``type: torchvision_converted``, the
torchvision name and the conversion options, from which :func:`build_converted` rebuilds it.

*Width levels* are the conversion's levels (hidden channels + skipped blocks, ``architecture
["num_levels"]`` of them). By default the model's levels are the width levels. With *knob levels*
(``architecture["knob_levels"]``, chosen by ``tnn-train convert --resolutions`` / ``--clip-lengths``)
each model level is a width level combined with an input resolution (detectors) or a clip length and
frame stride (video nets); the top level is always the full width at the original's resolution / clip.
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from torch import Tensor, nn

from ..throttle import LevelSchedule, ThrottleableModule, gated_ops
from ..throttle.convert import ConvertOptions, convert_blocks, newest_frame_indices
from .detector import Detection
from .io import state_dict_problems

CONVERTED_TYPE = "torchvision_converted"
# "own": the top level has its own frozen weights (adapted lower levels); "shared" (default): one set.
TOP_LEVEL_WEIGHTS_KEY = "top_level_weights"
NO_GESTURE = "no_gesture"


@dataclass(frozen=True)
class ArchSpec:
    """A supported torchvision network."""

    task: str  # "detection" or "video"
    weights_enum: str  # torchvision weights enum (for the category names and the download URL)


ARCHITECTURES: dict[str, ArchSpec] = {
    "ssdlite320_mobilenet_v3_large": ArchSpec("detection", "SSDLite320_MobileNet_V3_Large_Weights.COCO_V1"),
    "fasterrcnn_mobilenet_v3_large_320_fpn": ArchSpec(
        "detection", "FasterRCNN_MobileNet_V3_Large_320_FPN_Weights.COCO_V1"
    ),
    "r3d_18": ArchSpec("video", "R3D_18_Weights.KINETICS400_V1"),
    "mc3_18": ArchSpec("video", "MC3_18_Weights.KINETICS400_V1"),
    "r2plus1d_18": ArchSpec("video", "R2Plus1D_18_Weights.KINETICS400_V1"),
}

DETECTION_INPUT_SIZE = (320, 320)  # width, height the example input (MACs, latency) uses
VIDEO_CLIP_LENGTH = 16  # the Kinetics weights' clip length
VIDEO_FRAME_SIZE = (112, 112)  # the Kinetics weights' crop
# Kinetics normalisation of torchvision's video weights (``weights.transforms()``).
VIDEO_MEAN = (0.43216, 0.394666, 0.37645)
VIDEO_STD = (0.22803, 0.22145, 0.216989)


class WeightsError(Exception):
    """Weights that cannot be used for an architecture (missing file, wrong shapes); one line."""


def arch_spec(arch: str) -> ArchSpec:
    """The spec of ``arch``; ValueError listing the supported names otherwise."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; supported: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[arch]


def weights_meta(arch: str) -> dict:
    """Metadata of the pretrained weights of ``arch`` (offline: it ships in the wheel)."""
    weights = torchvision.models.get_weight(arch_spec(arch).weights_enum)
    return {
        "categories": list(weights.meta["categories"]),
        "url": weights.url,
        "enum": arch_spec(arch).weights_enum,
    }


def weights_hint(arch: str) -> str:
    """Where to get the pretrained weights of ``arch`` and where torchvision would cache them."""
    url = weights_meta(arch)["url"]
    cache = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    return f"fetch {url} on a machine with internet and pass it with --weights (or put it at {cache})"


def default_weights_path(arch: str) -> Path:
    """torch.hub's cache path of the pretrained weights of ``arch``."""
    url = weights_meta(arch)["url"]
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def build_original(arch: str, num_classes: int | None = None) -> nn.Module:
    """The randomly initialised torchvision network with the layout of its pretrained weights.

    ``num_classes`` overrides the pretrained weights' class count (a model fine-tuned on other
    classes; detection counts include the background class 0).
    """
    spec = arch_spec(arch)
    num_classes = num_classes or len(weights_meta(arch)["categories"])
    if spec.task == "detection":
        builder = getattr(torchvision.models.detection, arch)
        return builder(weights=None, weights_backbone=None, num_classes=num_classes).eval()
    builder = getattr(torchvision.models.video, arch)
    return builder(weights=None, num_classes=num_classes).eval()


def load_original_weights(model: nn.Module, path: str | os.PathLike) -> None:
    """Load torchvision weights from a local file (``weights_only=True``) or raise WeightsError.

    FrozenBatchNorm checkpoints (Faster R-CNN) lack BatchNorm's ``num_batches_tracked`` counters;
    those are the only keys allowed to be missing.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt zip, pickled code, truncated download
        raise WeightsError(f"{path}: not a readable weights file ({type(exc).__name__})") from exc
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]  # torchvision reference-script checkpoints
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise WeightsError(f"{path}: expected a state dict of tensors")
    problems = state_dict_problems(model.state_dict(), state, optional=("num_batches_tracked",))
    if problems:
        raise WeightsError(f"{path}: weights do not match {type(model).__name__}: {'; '.join(problems)}")
    model.load_state_dict(state, strict=False)


@torch.no_grad()
def calibrate_random_init(model: nn.Module, example: Tensor, seed: int = 0, batches: int = 2) -> None:
    """Give a randomly initialised network trained-like BatchNorm layers (for tests and dry runs).

    torchvision's random init leaves every BN at scale 1 / shift 0 with unit running statistics,
    so activations shrink layer by layer (SSDlite's head outputs are ~1e-14) and every channel looks
    equally important. This draws scales in [0.5, 1.5] and shifts ~N(0, 0.1), then sets the running
    statistics from ``batches`` forwards of random inputs shaped like ``example``, so activations
    are O(1) and an equivalence check of the conversion is not vacuous.
    """
    generator = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = []
    for norm in norms:
        norm.weight.copy_(torch.rand(norm.num_features, generator=generator) + 0.5)
        norm.bias.copy_(torch.randn(norm.num_features, generator=generator) * 0.1)
        norm.reset_running_stats()
        momenta.append(norm.momentum)
        norm.momentum = None  # cumulative average over the calibration batches
        norm.train()
    try:
        for _ in range(batches):
            x = torch.rand(example.shape, generator=generator)
            model(list(x) if x.dim() == 4 else x)
    finally:
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
            norm.eval()


def _options(architecture: dict) -> ConvertOptions:
    return ConvertOptions(
        int(architecture["num_levels"]),
        float(architecture["min_width_fraction"]),
        int(architecture["channel_multiple"]),
        float(architecture["depth_fraction"]),
    )


def _prepare(architecture: dict, source: nn.Module | None):
    """Convert ``source`` (a trained original, consumed) or rebuild the layout of a model file."""
    arch = architecture["arch"]
    options = _options(architecture)
    if source is None:
        net = build_original(arch, architecture.get("num_classes"))
        state, min_levels = convert_blocks(net, options, architecture["block_min_levels"], permute=False)
    else:
        net = source
        state, min_levels = convert_blocks(net, options, architecture.get("block_min_levels"))
    return net, state, min_levels, options


def default_architecture(arch: str, options: ConvertOptions | None = None) -> dict:
    """The card's ``architecture`` for converting ``arch`` (block min levels are filled in later)."""
    spec = arch_spec(arch)
    options = options or ConvertOptions()
    architecture = {"type": CONVERTED_TYPE, "arch": arch, "task": spec.task, **asdict(options)}
    if spec.task == "detection":
        architecture["input_size"] = list(DETECTION_INPUT_SIZE)
    else:
        architecture["clip_length"] = VIDEO_CLIP_LENGTH
        architecture["frame_size"] = list(VIDEO_FRAME_SIZE)
    return architecture


def _knob_levels(
    knob_levels: Sequence[dict] | None, width_levels: int, keys: tuple[str, ...]
) -> list[dict] | None:
    """Validated copies of ``knob_levels`` (each a dict with ``width_level`` and ``keys``), or None."""
    if knob_levels is None:
        return None
    if not isinstance(knob_levels, (list, tuple)) or not knob_levels:
        raise ValueError("knob_levels must be a non-empty list")
    checked = []
    for i, knobs in enumerate(knob_levels):
        if not isinstance(knobs, dict) or set(knobs) != {"width_level", *keys}:
            raise ValueError(
                f"knob level {i}: expected the keys width_level, {', '.join(keys)}; got {knobs!r}"
            )
        values = {key: int(knobs[key]) for key in ("width_level", *keys)}
        if not 0 <= values["width_level"] < width_levels:
            raise ValueError(
                f"knob level {i}: width_level {values['width_level']} not in [0, {width_levels - 1}]"
            )
        if any(values[key] < 1 for key in keys):
            raise ValueError(f"knob level {i}: {', '.join(keys)} must be >= 1, got {knobs!r}")
        checked.append(values)
    return checked


class _KnobLevels:
    """Model levels = width levels, or knob levels (width level + resolution / clip) when set."""

    width_levels: int
    knob_levels: list[dict] | None
    architecture: dict

    def _full_knobs(self) -> dict:
        raise NotImplementedError

    def _knob_keys(self) -> tuple[str, ...]:
        raise NotImplementedError

    def _check_knobs(self, knobs: dict) -> None:
        """Raise ValueError for a knob level this network cannot run."""

    def set_knob_levels(self, knob_levels: Sequence[dict] | None) -> None:
        """Make ``knob_levels`` the model's levels (lowest first; None: the plain width levels).

        The top entry must be the unthrottled original: the top width level at the full resolution
        (detectors) or the full clip, stride 1 (video nets). Selects the top level.
        """
        checked = _knob_levels(knob_levels, self.width_levels, self._knob_keys())
        if checked is not None:
            for knobs in checked:
                self._check_knobs(knobs)
            if checked[-1] != self._full_knobs():
                raise ValueError(
                    f"the top knob level must be the original {self._full_knobs()}, got {checked[-1]}"
                )
        self.knob_levels = checked
        self.schedule = LevelSchedule(self.width_levels if checked is None else len(checked))
        self._level = self.schedule.num_levels - 1
        if checked is None:
            self.architecture.pop("knob_levels", None)
        else:
            self.architecture["knob_levels"] = [dict(k) for k in checked]

    def knobs_of(self, level: int) -> dict:
        """Width level and resolution / clip of ``level`` (a copy)."""
        level = self.schedule.level_index(level)
        if self.knob_levels is None:
            return {**self._full_knobs(), "width_level": level}
        return dict(self.knob_levels[level])

    def rebuild_caches(self) -> None:
        """Rebuild every gated op's per-level caches; the ops have one entry per *width* level."""
        ops = gated_ops(self)
        wrong = sorted({op.num_levels for op in ops} - {self.width_levels})
        if wrong:
            raise ValueError(
                f"{type(self).__name__} has {self.width_levels} width levels but gated ops with {wrong}"
            )
        for op in ops:
            op.rebuild_cache()


class ConvertedDetector(_KnobLevels, ThrottleableModule):
    """A throttleable torchvision detector with the perception node's detector interface.

    ``forward`` takes a float batch (N, 3, H, W) in [0, 1] and returns torchvision's list of
    ``{"boxes", "scores", "labels"}`` in input pixels. Faster R-CNN also scales its second stage:
    width level ``k`` keeps a share of the RPN proposals equal to its width fraction (the ROI head
    costs about 13 MMACs per proposal, more than the whole 320 px backbone for 20 proposals).

    Knob levels add the input *resolution*: the shorter side of the image the network sees after
    torchvision's own resize (SSDlite: the side of its square input, 320 originally; Faster R-CNN:
    ``min_size``, with ``max_size`` scaled alike). Boxes still come back in input pixels.

    Args:
        architecture: the card's architecture (see :func:`default_architecture`).
        classes: category names indexed by label id (COCO's 91 entries, with ``__background__``).
        card: the card this model was loaded from.
        source: a torchvision detector with trained weights to convert (consumed); ``None``
            rebuilds the layout of a converted file (weights come from its state dict).
    """

    def __init__(
        self,
        architecture: dict,
        classes: Sequence[str],
        card: dict | None = None,
        source: nn.Module | None = None,
    ) -> None:
        super().__init__(num_levels=int(architecture["num_levels"]))
        net, state, min_levels, options = _prepare(architecture, source)
        self.net = net
        self._state = state
        self.width_levels = options.num_levels
        self.architecture = {**architecture, "block_min_levels": min_levels}
        self.classes = list(classes)
        self.input_size = tuple(int(v) for v in architecture.get("input_size", DETECTION_INPUT_SIZE))
        self.card = dict(card or {})
        self.proposals: list[int] | None = None  # per width level
        rpn = getattr(net, "rpn", None)
        if rpn is not None:
            full = int(rpn._post_nms_top_n["testing"])
            low = options.min_width_fraction
            fractions = [low + (1 - low) * k / (self.width_levels - 1) for k in range(self.width_levels)]
            self.proposals = [max(1, round(full * f)) for f in fractions]
            self.proposals[-1] = full
        transform = net.transform
        self._full_transform = (tuple(transform.min_size), transform.max_size, transform.fixed_size)
        sides = transform.fixed_size if transform.fixed_size is not None else transform.min_size
        self.full_resolution = int(min(sides))
        self._resolution = self.full_resolution
        self.set_knob_levels(architecture.get("knob_levels"))
        self.eval()

    def _knob_keys(self) -> tuple[str, ...]:
        return ("resolution",)

    def _full_knobs(self) -> dict:
        return {"width_level": self.width_levels - 1, "resolution": self.full_resolution}

    def _check_knobs(self, knobs: dict) -> None:
        if not 32 <= knobs["resolution"] <= self.full_resolution:
            raise ValueError(
                f"resolution {knobs['resolution']} not in [32, {self.full_resolution}] (the original's input)"
            )

    def _set_resolution(self, resolution: int) -> None:
        """Make torchvision's transform resize images so that their shorter side is ``resolution``."""
        if resolution == self._resolution:
            return
        min_size, max_size, fixed_size = self._full_transform
        scale = resolution / self.full_resolution
        transform = self.net.transform
        transform.min_size = tuple(int(round(v * scale)) for v in min_size)
        transform.max_size = int(round(max_size * scale))
        if fixed_size is not None:
            transform.fixed_size = tuple(int(round(v * scale)) for v in fixed_size)
        self._resolution = resolution

    def example_input(self, batch_size: int = 1) -> Tensor:
        width, height = self.input_size
        return torch.zeros(batch_size, 3, height, width)

    @contextlib.contextmanager
    def proposals_at_cap(self):
        """Faster R-CNN: the box head always gets each level's full proposal budget.

        How many proposals survive the RPN's score threshold and NMS depends on the frame, and the
        box head's cost with it; inside this context the RPN's output is padded to the cap with
        whole-image boxes, so MACs counted here are each level's worst case, comparable across levels.
        """
        rpn = getattr(self.net, "rpn", None)
        if rpn is None:
            yield
            return
        rpn_forward = rpn.forward

        def padded(images, features, targets=None):
            boxes, losses = rpn_forward(images, features, targets)
            cap = rpn.post_nms_top_n()
            height, width = images.tensors.shape[-2:]
            filler = torch.tensor([[0.0, 0.0, float(width), float(height)]])
            boxes = [
                torch.cat([b, filler.to(b).expand(cap - len(b), 4)]) if len(b) < cap else b for b in boxes
            ]
            return boxes, losses

        rpn.forward = padded
        try:
            yield
        finally:
            del rpn.forward

    def forward(self, images: Tensor) -> list[dict[str, Tensor]]:
        """Detections (torchvision's format) of a float batch (N, 3, H, W) in [0, 1] at ``self.level``."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected a (N, 3, H, W) batch, got {tuple(images.shape)}")
        level = self._level  # read once: another thread may switch it during this forward
        knobs = None if self.knob_levels is None else self.knob_levels[level]
        width_level = level if knobs is None else knobs["width_level"]
        self._set_resolution(self.full_resolution if knobs is None else knobs["resolution"])
        self._state.level = width_level
        if self.proposals is not None:
            self.net.rpn._post_nms_top_n["testing"] = self.proposals[width_level]
        return self.net(list(images))

    def preprocess(self, image_rgb: np.ndarray) -> Tensor:
        """HxWx3 uint8 RGB -> (1, 3, H, W) float in [0, 1] (torchvision's transform resizes it)."""
        if not isinstance(image_rgb, np.ndarray) or image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
            got = getattr(image_rgb, "shape", type(image_rgb))
            raise ValueError(f"expected an HxWx3 RGB array, got {got}")
        if image_rgb.dtype != np.uint8:
            raise ValueError(f"expected uint8 pixels, got {image_rgb.dtype}")
        if image_rgb.shape[0] < 2 or image_rgb.shape[1] < 2:
            raise ValueError(f"image too small: {image_rgb.shape[1]}x{image_rgb.shape[0]}")
        pixels = torch.from_numpy(np.ascontiguousarray(image_rgb))
        return pixels.permute(2, 0, 1).unsqueeze(0).float().div_(255.0)

    @torch.no_grad()
    def predict(self, image_rgb: np.ndarray, score_threshold: float = 0.3) -> list[Detection]:
        """Detections (in the image's pixels, best first) of an HxWx3 uint8 RGB image at the current level."""
        if self.training:
            raise RuntimeError("call .eval() before predict()")
        result = self(self.preprocess(image_rgb))[0]
        keep = result["scores"] >= score_threshold
        detections = []
        for box, score, label in zip(result["boxes"][keep], result["scores"][keep], result["labels"][keep]):
            class_id = int(label)
            name = self.classes[class_id] if 0 <= class_id < len(self.classes) else str(class_id)
            detections.append(Detection(class_id, name, float(score), tuple(float(v) for v in box)))
        return detections


class ConvertedVideoNet(_KnobLevels, ThrottleableModule):
    """A throttleable torchvision video ResNet with the gesture net's interface.

    ``forward`` returns the original's logits (N, len(labels)). ``classes`` is ``labels`` plus a
    trailing ``no_gesture`` entry that the net never predicts (``predict_clip`` gives it
    probability 0): the gesture recognizer announces it when no class is confident enough.

    Knob levels add the *clip length* and *frame stride*: a level runs the network on only the
    ``clip_length`` newest frames, ``frame_stride`` apart, of the clip it is given (the video ResNets
    pool time globally, so any length runs). ``self.clip_length`` stays the original's clip, the
    frames a caller buffers (the gesture recognizer), so levels switch without refilling a buffer.
    """

    def __init__(
        self,
        architecture: dict,
        labels: Sequence[str],
        card: dict | None = None,
        source: nn.Module | None = None,
    ) -> None:
        super().__init__(num_levels=int(architecture["num_levels"]))
        net, state, min_levels, options = _prepare(architecture, source)
        self.net = net
        self._state = state
        self.width_levels = options.num_levels
        self.architecture = {**architecture, "block_min_levels": min_levels}
        self.labels = list(labels)
        self.classes = self.labels + ([NO_GESTURE] if NO_GESTURE not in self.labels else [])
        self.clip_length = int(architecture.get("clip_length", VIDEO_CLIP_LENGTH))
        size = architecture.get("frame_size", VIDEO_FRAME_SIZE)
        self.frame_size = (int(size[0]), int(size[1]))
        self.card = dict(card or {})
        self.register_buffer("mean", torch.tensor(VIDEO_MEAN).view(1, 3, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(VIDEO_STD).view(1, 3, 1, 1, 1), persistent=False)
        self.set_knob_levels(architecture.get("knob_levels"))
        self.eval()

    def _knob_keys(self) -> tuple[str, ...]:
        return ("clip_length", "frame_stride")

    def _full_knobs(self) -> dict:
        return {"width_level": self.width_levels - 1, "clip_length": self.clip_length, "frame_stride": 1}

    def _check_knobs(self, knobs: dict) -> None:
        newest_frame_indices(self.clip_length, knobs["clip_length"], knobs["frame_stride"])

    def example_input(self, batch_size: int = 1) -> Tensor:
        return torch.zeros(batch_size, 3, self.clip_length, self.frame_size[1], self.frame_size[0])

    def forward(self, clips: Tensor) -> Tensor:
        """Logits (N, len(labels)) of normalised clips (N, 3, T, H, W) at ``self.level``."""
        if clips.dim() != 5 or clips.shape[1] != 3:
            raise ValueError(f"expected clips of shape (N, 3, T, H, W), got {tuple(clips.shape)}")
        level = self._level  # read once: another thread may switch it during this forward
        if self.knob_levels is None:
            self._state.level = level
            return self.net(clips)
        knobs = self.knob_levels[level]
        self._state.level = knobs["width_level"]
        frames = newest_frame_indices(clips.shape[2], knobs["clip_length"], knobs["frame_stride"])
        if len(frames) != clips.shape[2]:  # a strided view: the frames this level skips are never read
            clips = clips[:, :, frames[0] :: knobs["frame_stride"]]
        return self.net(clips)

    def preprocess(self, clips: Tensor) -> Tensor:
        """uint8 (N, T, H, W, 3) RGB -> float (N, 3, T, H, W) with the Kinetics normalisation."""
        if clips.dim() != 5 or clips.shape[-1] != 3:
            raise ValueError(f"expected uint8 clips of shape (N, T, H, W, 3), got {tuple(clips.shape)}")
        return (clips.permute(0, 4, 1, 2, 3).float().div_(255.0) - self.mean) / self.std

    def frames_to_clip(self, frames_rgb: Sequence[np.ndarray]) -> Tensor:
        """``clip_length`` HxWx3 uint8 frames -> uint8 (1, T, h, w, 3) at ``frame_size`` (centre crop)."""
        from .gesture import resize_frame

        if len(frames_rgb) != self.clip_length:
            raise ValueError(f"expected {self.clip_length} frames, got {len(frames_rgb)}")
        return torch.from_numpy(np.stack([resize_frame(f, self.frame_size) for f in frames_rgb]))[None]

    @torch.no_grad()
    def predict_clip(self, frames_rgb: Sequence[np.ndarray]) -> np.ndarray:
        """Probabilities (len(classes),) of ``clip_length`` frames at the current level."""
        if self.training:
            self.eval()
        logits = self(self.preprocess(self.frames_to_clip(frames_rgb)))[0]
        probabilities = torch.softmax(logits, dim=0).numpy()
        if len(self.classes) > len(self.labels):
            probabilities = np.append(probabilities, 0.0).astype(probabilities.dtype)
        return probabilities


def convert(
    arch: str,
    weights: str | os.PathLike | None = None,
    options: ConvertOptions | None = None,
    seed: int = 0,
    architecture: dict | None = None,
    example: Tensor | None = None,
    classes: Sequence[str] | None = None,
) -> tuple[ThrottleableModule, nn.Module, dict]:
    """Build the original ``arch`` (``weights``, or a random init with ``seed``) and convert a copy.

    A random init gets trained-like BatchNorm layers (:func:`calibrate_random_init`) on batches
    shaped like ``example`` (default: the architecture's input size). ``classes`` replaces the
    pretrained weights' category names for a model trained on other classes (detection: index 0 is
    the background).

    Returns (converted model, the untouched original in eval mode, the weights metadata).
    Raises ValueError for an unknown name and WeightsError for unusable weights.
    """
    spec = arch_spec(arch)
    meta = weights_meta(arch)
    if classes is not None:
        meta = {**meta, "categories": list(classes), "enum": "user-supplied class names"}
    torch.manual_seed(seed)
    original = build_original(arch, len(meta["categories"]))
    if weights is not None:
        load_original_weights(original, weights)
    else:
        calibrate_random_init(
            original, example if example is not None else _example(arch, architecture), seed=seed
        )
    original.eval()
    architecture = {
        **default_architecture(arch, options),
        **(architecture or {}),
        "num_classes": len(meta["categories"]),
    }
    source = copy.deepcopy(original)
    if spec.task == "detection":
        model = ConvertedDetector(architecture, meta["categories"], source=source)
    else:
        model = ConvertedVideoNet(architecture, meta["categories"], source=source)
    return model, original, meta


def _example(arch: str, architecture: dict | None = None) -> Tensor:
    architecture = {**default_architecture(arch), **(architecture or {})}
    if architecture["task"] == "detection":
        width, height = architecture["input_size"]
        return torch.zeros(2, 3, height, width)
    width, height = architecture["frame_size"]
    return torch.zeros(2, 3, architecture["clip_length"], height, width)


def build_converted(card: dict) -> ThrottleableModule:
    """Rebuild a converted model (layout only) from its card; the weights are loaded afterwards."""
    architecture = card["architecture"]
    if not isinstance(architecture, dict) or architecture.get("type") != CONVERTED_TYPE:
        raise ValueError(f"architecture type must be {CONVERTED_TYPE!r}")
    spec = arch_spec(architecture["arch"])
    if "block_min_levels" not in architecture:
        raise KeyError("block_min_levels")
    if spec.task == "detection":
        model = ConvertedDetector(architecture, card["classes"], card)
    else:
        classes = list(card["classes"])
        # A net trained with no_gesture among its own classes (e.g. on the synthetic gestures)
        # predicts it: only an entry beyond the net's outputs is the trailing one ConvertedVideoNet adds.
        if architecture.get("num_classes") != len(classes):
            classes = [c for c in classes if c != NO_GESTURE]
        model = ConvertedVideoNet(architecture, classes, card)
    top_weights = architecture.get(TOP_LEVEL_WEIGHTS_KEY, "shared")
    if top_weights not in ("shared", "own"):
        raise ValueError(f"{TOP_LEVEL_WEIGHTS_KEY} must be 'shared' or 'own', got {top_weights!r}")
    if top_weights == "own":
        keep_top_level_weights(model)
    return model


def keep_top_level_weights(model: nn.Module) -> None:
    """Give every gated op of ``model`` a frozen copy of its weights for the top level.

    Label-free adaptation of the shared weights then changes the lower levels only: the full level
    stays the original network. Recorded in the card's architecture (``top_level_weights: own``)
    so that loading the file rebuilds the same layout.
    """
    for op in gated_ops(model):
        op.keep_top_level_weights()
    model.architecture[TOP_LEVEL_WEIGHTS_KEY] = "own"


def is_converted_card(card: Any) -> bool:
    """Whether a model card describes a converted torchvision model."""
    return (
        isinstance(card, dict)
        and isinstance(card.get("architecture"), dict)
        and card["architecture"].get("type") == CONVERTED_TYPE
    )
