"""Finding files the package ships (config/, models/) in the source tree or an installed share."""

from __future__ import annotations

import pathlib
import sys

PACKAGE = "tnn_ros"


def package_file_candidates(folder: str, name: str) -> list[pathlib.Path]:
    """Where ``<folder>/<name>`` may live: source tree, ament share (colcon), ``sys.prefix`` share (pip)."""
    candidates = [pathlib.Path(__file__).resolve().parents[2] / folder / name]
    try:
        from ament_index_python.packages import get_package_share_directory
        candidates.append(pathlib.Path(get_package_share_directory(PACKAGE)) / folder / name)
    except (ImportError, LookupError, OSError):  # not installed / AMENT_PREFIX_PATH unset
        pass
    candidates.append(pathlib.Path(sys.prefix) / "share" / PACKAGE / folder / name)
    return candidates


def find_package_file(folder: str, name: str) -> pathlib.Path:
    """``name`` itself if it is an existing path, else the first shipped ``<folder>/<name>``.

    Raises FileNotFoundError listing the places tried.
    """
    given = pathlib.Path(name)
    if given.is_file():
        return given
    tried = package_file_candidates(folder, name)
    for path in tried:
        if path.is_file():
            return path
    raise FileNotFoundError(f"{folder}/{name} not found; tried: {', '.join(str(p) for p in tried)}")


def find_config_file(name: str) -> pathlib.Path:
    """A file from ``config/`` (or a path as given)."""
    return find_package_file("config", name)
