"""Helpers shared by the recorder, the player and bag analysis.

Message definitions for the bag come from rosbags' typestore (ROS 2 Jazzy ships with it); types it
does not know are read from the installed ``share/<pkg>/msg/<Name>.msg`` files. Python message
classes are resolved with importlib, so any installed message package can be played.
"""

from __future__ import annotations

import importlib
import re
import sys
import time
from functools import lru_cache
from pathlib import Path
from typing import TextIO

import yaml
from rosbags.interfaces import (
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)
from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from tnn_ros.paths import share_dirs

STORAGES = ("mcap", "sqlite3")

# rosbag2 writes an infinite QoS duration as this (sec, nsec) pair.
_INFINITE_QOS_TIME = QosTime(2147483647, 4294967295)
_TYPE_NAME = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)/(msg|srv|action)/([A-Za-z_][A-Za-z0-9_]*)$")
# ROS 1 / early ROS 2 spelling without the interface kind, e.g. "sensor_msgs/Image"
_LEGACY_TYPE_NAME = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)/([A-Za-z_][A-Za-z0-9_]*)$")
# storage files that can be read on their own, without the bag directory's metadata.yaml
_STORAGE_SUFFIXES = {".mcap": "mcap", ".db3": "sqlite3"}


class BagError(RuntimeError):
    """A bag cannot be opened, read or written; the message is one line for the user."""


def normalize_type_name(type_name: str) -> str:
    """Return ``type_name`` in the ``pkg/msg/Name`` form; the legacy ``pkg/Name`` gets ``msg/``.

    Bags from other tools (ROS 1 conversions, some MCAP writers) spell message types
    ``sensor_msgs/Image``; rosbag2's type-support lookup accepts that, so we do too.

    Raises:
        BagError: the name matches neither form.

    """
    if _TYPE_NAME.match(type_name):
        return type_name
    legacy = _LEGACY_TYPE_NAME.match(type_name)
    if legacy is None:
        raise BagError(f"malformed message type name {type_name!r} (expected pkg/msg/Name)")
    package, name = legacy.groups()
    return f"{package}/msg/{name}"


def message_class(type_name: str) -> type:
    """Return the Python class of a ROS message type such as ``"sensor_msgs/msg/Image"``.

    The legacy spelling ``"sensor_msgs/Image"`` is accepted too (see :func:`normalize_type_name`).

    Raises:
        BagError: the name is malformed or the message package is not installed.

    """
    type_name = normalize_type_name(type_name)
    package, kind, name = _TYPE_NAME.match(type_name).groups()
    try:
        module = importlib.import_module(f"{package}.{kind}")
        return getattr(module, name)
    except (ImportError, AttributeError):
        raise BagError(
            f"message type {type_name} is not installed (no Python module {package}.{kind})"
        ) from None


@lru_cache(maxsize=1)
def _jazzy_typestore() -> Typestore:
    return get_typestore(Stores.ROS2_JAZZY)


def _installed_msg_file(type_name: str) -> Path | None:
    """Find ``share/<pkg>/msg/<Name>.msg`` for a type, via the ament index or the Python prefix."""
    package, _, name = type_name.split("/")
    candidates = share_dirs(package)
    for share in candidates:
        path = share / "msg" / f"{name}.msg"
        if path.is_file():
            return path
    return None


def typestore_with(type_names: list[str] | tuple[str, ...] | set[str]) -> Typestore:
    """Return the Jazzy typestore, extended with any listed type it lacks (from installed .msg files).

    Names are normalised first (``std_msgs/String`` -> ``std_msgs/msg/String``); deserialize with
    the normalised name too.

    Raises:
        BagError: a type (or a type it uses) has no definition in rosbags or on this machine.

    """
    store = _jazzy_typestore()
    type_names = [normalize_type_name(name) for name in type_names]  # legacy pkg/Name spellings too
    # Read the missing definitions and, transitively, the ones they use, then register them at once:
    # a type registered before its field types would fail later, when a bag writer needs its msgdef.
    pending = [name for name in type_names if name not in store.fielddefs]
    parsed: dict = {}
    while pending:
        name = pending.pop()
        if name in store.fielddefs or name in parsed:
            continue
        path = _installed_msg_file(name)
        if path is None:
            raise BagError(f"no message definition for {name} (not in rosbags' Jazzy types, no .msg file)")
        types = get_types_from_msg(path.read_text(encoding="utf-8"), name)
        parsed.update(types)
        pending.extend(dep for dep in _referenced_types(types) if dep not in store.fielddefs)
    if parsed:
        try:
            store.register(parsed)
        except Exception as exc:  # noqa: BLE001 - rosbags raises several types for bad definitions
            raise BagError(
                f"cannot register message definitions of {', '.join(sorted(parsed))}: {exc}"
            ) from None
    return store


def _referenced_types(types: dict) -> list[str]:
    """Names of the complex types a parsed .msg uses (rosbags field descriptors, nested tuples)."""
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, str) and _TYPE_NAME.match(node):
            found.append(node)
        elif isinstance(node, tuple | list):
            for item in node:
                walk(item)

    for _consts, fields in types.values():
        walk(fields)
    return found


def qos_to_rosbags(profile: object) -> Qos:
    """Convert an rclpy ``QoSProfile`` to the rosbags ``Qos`` stored in the bag's metadata.

    The policy enums share their numeric values between rmw (rclpy) and rosbag2 (rosbags).
    """

    def qtime(duration: object) -> QosTime:
        nanoseconds = int(getattr(duration, "nanoseconds", 0))
        if nanoseconds < 0 or nanoseconds >= 2**63 - 1:
            return _INFINITE_QOS_TIME
        sec, nsec = divmod(nanoseconds, 1_000_000_000)
        return _INFINITE_QOS_TIME if sec >= _INFINITE_QOS_TIME.sec else QosTime(sec, nsec)

    return Qos(
        history=QosHistory(int(profile.history)),
        depth=int(profile.depth),
        reliability=QosReliability(int(profile.reliability)),
        durability=QosDurability(int(profile.durability)),
        deadline=qtime(profile.deadline),
        lifespan=qtime(profile.lifespan),
        liveliness=QosLiveliness(int(profile.liveliness)),
        liveliness_lease_duration=qtime(profile.liveliness_lease_duration),
        avoid_ros_namespace_conventions=bool(profile.avoid_ros_namespace_conventions),
    )


def storage_of(path: str | Path) -> str:
    """Storage id of a bag: ``metadata.yaml``'s ``storage_identifier``, or the single file's suffix."""
    path = Path(path)
    if path.is_file():
        return _STORAGE_SUFFIXES.get(path.suffix, "?")
    try:
        metadata = yaml.safe_load((path / "metadata.yaml").read_text(encoding="utf-8"))
        return str(metadata["rosbag2_bagfile_information"].get("storage_identifier", "?"))
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        return "?"


def open_reader(path: str | Path) -> Reader:
    """Open a rosbag2 bag for reading, turning every failure into a one-line ``BagError``.

    ``path`` is a bag directory (with ``metadata.yaml``) or a single ``.mcap`` / ``.db3`` storage
    file without one, as ``ros2 bag`` accepts: the file's own summary (MCAP) or tables (sqlite3)
    give its topics, types and counts.
    """
    path = Path(path)
    if not path.exists():
        raise BagError(f"{path}: no such bag")
    if path.is_file() and path.suffix not in _STORAGE_SUFFIXES:
        raise BagError(
            f"{path}: not a bag (expected a bag directory or a {' / '.join(_STORAGE_SUFFIXES)} file)"
        )
    if path.is_dir() and not (path / "metadata.yaml").is_file():
        storage_files = sorted(p.name for p in path.iterdir() if p.suffix in _STORAGE_SUFFIXES)
        hint = (
            f"; to read a storage file on its own, pass it: {path / storage_files[0]}"
            if storage_files
            else ""
        )
        raise BagError(f"{path}: not a rosbag2 bag (metadata.yaml missing; was the recorder killed?){hint}")
    try:
        reader = Reader(path)
        reader.open()
    except Exception as exc:  # noqa: BLE001 - rosbags raises several types for damaged bags
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BagError(f"{path}: damaged or unsupported bag: {reason}") from None
    return reader


def format_bytes(num_bytes: float) -> str:
    """Human-readable size, e.g. ``"12.3 MB"``."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(num_bytes) < 1000.0 or unit == "GB":
            return f"{num_bytes:.1f} {unit}" if unit != "B" else f"{int(num_bytes)} B"
        num_bytes /= 1000.0
    return f"{num_bytes:.1f} GB"


class StatusLine:
    """A status line that does not scroll the terminal to death.

    On a TTY the line is rewritten in place (at most ``tty_period_s`` apart); otherwise one line is
    printed at most every ``period_s`` seconds. ``finish()`` ends the in-place line.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        period_s: float = 5.0,
        tty_period_s: float = 0.2,
        enabled: bool = True,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.is_tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.period_s = tty_period_s if self.is_tty else period_s
        self._last = -float("inf")
        self._width = 0

    def update(self, text: str, force: bool = False) -> None:
        """Show ``text`` if the period has passed (or ``force``)."""
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < self.period_s:
            return
        self._last = now
        if self.is_tty:
            padding = " " * max(0, self._width - len(text))
            self.stream.write("\r" + text + padding)
            self._width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self, text: str | None = None) -> None:
        """Print a final line (if given) and leave the cursor on a fresh line."""
        if not self.enabled:
            return
        if text is not None:
            self.update(text, force=True)
        if self.is_tty and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0
