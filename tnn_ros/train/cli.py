"""`tnn-train {detector,gesture,convert,adapt,controller}`: train, convert or adapt a model."""

from __future__ import annotations

import importlib
import sys

TRAINERS = {
    "detector": ("tnn_ros.train.detector", "throttleable object detector (synthetic scenes or COCO data)"),
    "gesture": ("tnn_ros.train.gesture", "throttleable C3D gesture recognizer"),
    "convert": ("tnn_ros.train.convert", "make a torchvision detector / video net throttleable"),
    "adapt": ("tnn_ros.train.adapt", "label-free adaptation of a converted model on unlabeled frames"),
    "controller": ("tnn_ros.train.controller", "learned (contextual-bandit) controller from bags or traces"),
}


def main(argv: list[str] | None = None) -> int:
    """Dispatch to ``tnn_ros.train.<model>.main(argv)``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in TRAINERS:
        print(
            "usage: tnn-train {detector,gesture,convert,adapt,controller} [options]   "
            "(tnn-train COMMAND --help)"
        )
        for name, (_, text) in TRAINERS.items():
            print(f"  {name:9s} {text}")
        if argv and argv[0] not in ("-h", "--help"):
            print(f"tnn-train: unknown command {argv[0]!r}", file=sys.stderr)
            return 2
        return 0 if argv else 2
    module_name = TRAINERS[argv[0]][0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        print(f"tnn-train: {module_name} is not available in this installation", file=sys.stderr)
        return 2
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
