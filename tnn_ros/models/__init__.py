"""Throttleable models (detector, gesture net) and their model files."""

from .detector import Detection, ThrottleableDetector
from .io import ModelFileError, load_model, models_dir, read_card, save_model, shipped_model_path

_GESTURE_NAMES = ("ThrottleableGestureNet",)
_RECOGNIZER_NAMES = ("GestureRecognizer", "GestureResult")
_LOADERS = ("load_detector", "load_gesture", "gesture_card_settings")


def __getattr__(name: str):
    # Imported on first use: the loaders pull in every architecture (torchvision for converted nets).
    if name in _GESTURE_NAMES:
        from . import gesture

        return getattr(gesture, name)
    if name in _RECOGNIZER_NAMES:
        from . import gesture_recognizer

        return getattr(gesture_recognizer, name)
    if name in _LOADERS:  # loading knows every architecture, converted ones too
        from . import loading

        return getattr(loading, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Detection",
    "ThrottleableDetector",
    "ModelFileError",
    "load_model",
    "models_dir",
    "read_card",
    "save_model",
    "shipped_model_path",
    *_GESTURE_NAMES,
    *_RECOGNIZER_NAMES,
    *_LOADERS,
]
