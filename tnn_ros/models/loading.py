"""Loading model files: native throttleable nets and converted torchvision nets behind one call each.

The top of the models layer: it knows every architecture (detector, gesture net, converted), so the
modules below it never import each other to dispatch.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from torch import nn

from .converted import build_converted, is_converted_card
from .detector import ThrottleableDetector, build_detector
from .gesture import ThrottleableGestureNet, build_from_card
from .io import ModelFileError, card_path, load_model, read_card, shipped_model_path


def _builder(path: str | os.PathLike, native: Callable[[dict], nn.Module], task: str):
    """``native`` for a native card, ``build_converted`` for a converted one of ``task``."""
    card = read_card(path)
    if not is_converted_card(card):
        return native
    architecture = card["architecture"]
    if architecture.get("task") != task:
        raise ModelFileError(
            card_path(path),
            f"a converted {architecture.get('task')} model, but a {task} "
            f"model was expected (check detector_model / gesture_model)",
        )
    return build_converted


def load_detector(path: str | os.PathLike | None = None, warmup: bool = True) -> ThrottleableDetector:
    """Load a detector (weights + card); ``None`` loads the shipped ``models/detector.pt``.

    A card of a converted torchvision detector (``tnn-train convert``) builds that instead. Raises
    :class:`ModelFileError` naming the file and what does not match. The model is returned in eval
    mode, every level warmed up unless ``warmup`` is false.
    """
    path = shipped_model_path("detector") if path is None else path
    model = load_model(path, _builder(path, build_detector, "detection"))
    if warmup:
        model.warmup()
    return model


def load_gesture(path: str | os.PathLike | None = None) -> ThrottleableGestureNet:
    """Load a gesture net (weights + card next to them), in eval mode with every level warmed up.

    ``None`` loads the shipped ``models/gesture.pt``; a converted torchvision video net is accepted
    too. A missing, corrupt or mismatching file raises :class:`ModelFileError` naming the file.
    """
    path = path or shipped_model_path("gesture")
    net = load_model(path, _builder(path, build_from_card, "video"))
    net.warmup()
    return net
