"""Model files: state dicts (loaded with ``weights_only=True``) plus a JSON model card next to them.

``models/<name>.pt`` holds the weights and ``models/<name>.card.json`` says how to rebuild the net
(architecture config, classes, input size, levels) and what it measured (per-level MACs, accuracy,
latency, the exact training command). Both the detector and the gesture net use these helpers.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch import nn

from ..paths import package_dir

CARD_SUFFIX = ".card.json"


class ModelFileError(Exception):
    """A model or card file is missing, corrupt or does not match the network; names the file."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)
        self.problem = problem


def models_dir() -> Path:
    """The folder that holds the shipped models (source tree, else the installed share; see tnn_ros.paths)."""
    return package_dir("models")


def shipped_model_path(name: str) -> Path:
    """Path of the shipped weights of model ``name`` (e.g. ``"detector"`` -> ``.../models/detector.pt``)."""
    if not name or "/" in name or "\\" in name:
        raise ValueError(f"model name must be a plain name like 'detector', got {name!r}")
    return models_dir() / (name if name.endswith(".pt") else f"{name}.pt")


def card_path(weights_path: str | os.PathLike) -> Path:
    """``models/detector.pt`` -> ``models/detector.card.json``."""
    path = Path(weights_path)
    return path.with_name(
        path.name[:-3] + CARD_SUFFIX if path.name.endswith(".pt") else path.name + CARD_SUFFIX
    )


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """``write(tmp)`` a temporary file beside ``path``, then rename it over ``path``.

    Readers see the old or the new file, never half of one; the file gets the umask's permissions.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        # mkstemp makes the file private (0600); model files and cached graphs are shared and installed.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_card(weights_path: str | os.PathLike, card: dict) -> Path:
    """Write the model card next to ``weights_path`` (atomically) and return its path."""
    path = card_path(weights_path)

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(card, f, indent=2, sort_keys=False)
            f.write("\n")

    atomic_write(path, write)
    return path


def save_model(model: nn.Module, weights_path: str | os.PathLike, card: dict) -> tuple[Path, Path]:
    """Save ``model.state_dict()`` and its card; returns (weights path, card path)."""
    weights_path = Path(weights_path)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    atomic_write(weights_path, lambda tmp: torch.save(state, tmp))
    return weights_path, write_card(weights_path, card)


def read_card(weights_path: str | os.PathLike, required: Iterable[str] = ()) -> dict:
    """Read and check the card of ``weights_path``; raises ModelFileError naming the card file."""
    path = card_path(weights_path)
    if not path.is_file():
        raise ModelFileError(path, "model card not found (expected next to the weights)")
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(path, f"not a readable JSON model card ({exc})") from exc
    if not isinstance(card, dict):
        raise ModelFileError(path, f"model card must be a JSON object, got {type(card).__name__}")
    missing = [key for key in required if key not in card]
    if missing:
        raise ModelFileError(path, f"model card lacks {', '.join(missing)}")
    return card


def state_dict_problems(expected: dict, state: dict, optional: tuple[str, ...] = ()) -> list[str]:
    """What keeps ``state`` from loading into a model whose state dict is ``expected`` ([] = loads).

    Keys ending in one of ``optional`` may be missing (e.g. BatchNorm's ``num_batches_tracked`` in
    checkpoints of other trainers). Each problem names how many tensors and the first examples.
    """
    missing = sorted(k for k in set(expected) - set(state) if not k.endswith(optional or ("\0",)))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} tensors (e.g. {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensors (e.g. {', '.join(unexpected[:3])})")
    if wrong_shape:
        problems.append(f"{len(wrong_shape)} shape mismatches (e.g. {'; '.join(wrong_shape[:3])})")
    return problems


def load_state(weights_path: str | os.PathLike, model: nn.Module) -> None:
    """Load a state dict (``weights_only=True``) into ``model``; every mismatch raises ModelFileError."""
    path = Path(weights_path)
    if not path.is_file():
        raise ModelFileError(path, "weights file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt zip, pickle with code, truncated file: all unusable
        raise ModelFileError(path, f"not a readable weights file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelFileError(path, "expected a state dict of tensors")
    problems = state_dict_problems(model.state_dict(), state)
    if problems:
        raise ModelFileError(
            path, "weights do not match the architecture in the card: " + ", ".join(problems)
        )
    model.load_state_dict(state)


def load_model(
    weights_path: str | os.PathLike,
    build: Callable[[dict], nn.Module],
    required_card_keys: Iterable[str] = ("name", "architecture", "classes"),
) -> nn.Module:
    """Read the card, rebuild the net with ``build(card)``, load the weights, return it in eval mode.

    ``build`` errors (a card whose architecture cannot be built) are reported as ModelFileError.
    """
    card = read_card(weights_path, required_card_keys)
    try:
        model = build(card)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(
            card_path(weights_path), f"cannot build the network from the card ({exc})"
        ) from exc
    load_state(weights_path, model)
    return model.eval()
