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


DEFAULT_MIN_CONFIDENCE = 0.5  # GestureRecognizer's own default


def gesture_card_settings(path: str | os.PathLike | None = None) -> dict[str, float]:
    """Recognizer settings a gesture model's card recommends (its optional ``recognizer`` object).

    Today only ``min_confidence``: the announcement threshold the net's stream figures were measured
    with (a net trained to stay unsure over partial gestures wants a lower one than a net that is
    sure of every clip), so it ships with the weights. ``{}`` when the card names none; a value that
    is not a number in [0, 1] raises :class:`ModelFileError`.
    """
    path = path or shipped_model_path("gesture")
    block = read_card(path).get("recognizer", {})
    if not isinstance(block, dict):
        raise ModelFileError(card_path(path), "'recognizer' must be an object")
    settings: dict[str, float] = {}
    if "min_confidence" in block:
        value = block["min_confidence"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise ModelFileError(
                card_path(path), f"recognizer.min_confidence must be in [0, 1], got {value!r}"
            )
        settings["min_confidence"] = float(value)
    return settings


def load_gesture(path: str | os.PathLike | None = None) -> ThrottleableGestureNet:
    """Load a gesture net (weights + card next to them), in eval mode with every level warmed up.

    ``None`` loads the shipped ``models/gesture.pt``; a converted torchvision video net is accepted
    too. A missing, corrupt or mismatching file raises :class:`ModelFileError` naming the file.
    """
    path = path or shipped_model_path("gesture")
    net = load_model(path, _builder(path, build_from_card, "video"))
    net.warmup()
    return net
