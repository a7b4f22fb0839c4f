"""The one place that finds files on disk: shipped config/ and models/, and ROS packages' shares.

What the package ships is found in the source tree or an installed share; any ROS package's share
directory is found for the message definitions that bags need. Plain module (no torch, no rclpy),
so every layer can use it.
"""

from __future__ import annotations

import os
import pathlib
import sys

PACKAGE = "tnn_ros"


SOURCE_ROOT = pathlib.Path(__file__).resolve().parents[1]


def share_dirs(package: str) -> list[pathlib.Path]:
    """Where ``share/<package>`` may be: the ament index (colcon / ROS install), then ``sys.prefix`` (pip)."""
    dirs = []
    try:
        from ament_index_python.packages import get_package_share_directory

        dirs.append(pathlib.Path(get_package_share_directory(package)))
    except (ImportError, LookupError, OSError):  # no ament_index / not installed / AMENT_PREFIX_PATH unset
        pass
    dirs.append(pathlib.Path(sys.prefix) / "share" / package)
    return dirs


def package_file_candidates(folder: str, name: str) -> list[pathlib.Path]:
    """Where ``<folder>/<name>`` may live: source tree, ament share (colcon), ``sys.prefix`` share (pip)."""
    return [SOURCE_ROOT / folder / name] + [share / folder / name for share in share_dirs(PACKAGE)]


def package_dir(folder: str) -> pathlib.Path:
    """The first existing ``<folder>`` the package ships (source tree first), else the last candidate."""
    candidates = [path.parent for path in package_file_candidates(folder, "_")]
    return next((path for path in candidates if path.is_dir()), candidates[-1])


def is_explicit_path(name: str | pathlib.Path) -> bool:
    """True for a name the user spelled as a path (absolute, ``./x.yaml``, ``dir/x.yaml``, ``~/x``).

    A bare file name (``controller.yaml``) is never looked up in the current directory: a folder that
    happens to hold a file of that name must not silently replace the installed defaults.
    """
    text = str(name)
    return pathlib.Path(text).is_absolute() or text.startswith(("~", ".")) or "/" in text or (os.sep in text)


def find_package_file(folder: str, name: str | pathlib.Path) -> pathlib.Path:
    """``name`` itself if spelled as a path, else the first shipped ``<folder>/<name>``.

    Shipped means the source tree, the ament share or the ``sys.prefix`` share; never the current
    directory (see :func:`is_explicit_path`).

    Raises FileNotFoundError listing the places tried.
    """
    if is_explicit_path(name):
        given = pathlib.Path(name).expanduser()
        if given.is_file():
            return given
        raise FileNotFoundError(f"{given} does not exist (or is not a file)")
    tried = package_file_candidates(folder, str(name))
    for path in tried:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"{folder}/{name} not found (a bare name is looked up only among the "
        f"package's files; give a path like ./{name} for a local file); "
        f"tried: {', '.join(str(p) for p in tried)}"
    )


def find_config_file(name: str | pathlib.Path) -> pathlib.Path:
    """A file from the package's ``config/``, or a path as given (never a bare name from the cwd)."""
    return find_package_file("config", name)
