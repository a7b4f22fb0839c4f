"""Unlabeled RGB frames from an image folder, a video file or a rosbag2 bag (for label-free adaptation).

:func:`open_frames` checks the source up front (so a bad one fails before any work or output) and
returns a :class:`FrameSource` whose ``frames()`` yields HxWx3 uint8 RGB arrays in recorded order.
Bag images are decoded by the perception node's own codec, so exactly the encodings the node
accepts are accepted here; a frame that cannot be decoded raises :class:`FrameSourceError`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg")
IMAGE_TYPE = "sensor_msgs/msg/Image"


class FrameSourceError(Exception):
    """A frame source that cannot be used; the message is one line naming the source."""


@dataclass
class FrameSource:
    """A checked source of RGB frames: ``kind`` is ``images``, ``video`` or ``bag``."""

    path: Path
    kind: str
    count: int | None  # frames available (None: unknown until read, e.g. some videos)
    topic: str | None = None
    files: tuple[Path, ...] = ()

    def describe(self) -> dict:
        """What the card records about the frames used."""
        info = {"path": str(self.path), "kind": self.kind, "frames_available": self.count}
        if self.topic:
            info["topic"] = self.topic
        return info

    def frames(self, limit: int | None = None, stride: int = 1) -> Iterator[np.ndarray]:
        """Yield up to ``limit`` frames, every ``stride``-th one, as HxWx3 uint8 RGB."""
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        reader = {"images": self._images, "video": self._video, "bag": self._bag}[self.kind]
        produced = 0
        for index, frame in enumerate(reader()):
            if index % stride:
                continue
            yield frame
            produced += 1
            if limit is not None and produced >= limit:
                return

    # --- readers ------------------------------------------------------------------------------------
    def _images(self) -> Iterator[np.ndarray]:
        import cv2

        for file in self.files:
            image = cv2.imread(str(file), cv2.IMREAD_COLOR)
            if image is None:
                raise FrameSourceError(f"{file}: not a readable image")
            yield cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def _video(self) -> Iterator[np.ndarray]:
        import cv2

        capture = cv2.VideoCapture(str(self.path))
        try:
            while True:
                ok, frame = capture.read()
                if not ok:
                    return
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        finally:
            capture.release()

    def _bag(self) -> Iterator[np.ndarray]:
        from ..bag.common import open_reader, typestore_with
        from ..perception.codec import ImageDecodeError, decode_image

        reader = open_reader(self.path)
        try:
            store = typestore_with([IMAGE_TYPE])
            connections = [c for c in reader.connections if c.topic == self.topic]
            for connection, _, data in reader.messages(connections=connections):
                msg = store.deserialize_cdr(data, connection.msgtype)
                try:
                    yield decode_image(
                        msg.height,
                        msg.width,
                        msg.encoding,
                        msg.step,
                        msg.data.tobytes() if hasattr(msg.data, "tobytes") else bytes(msg.data),
                    )
                except ImageDecodeError as exc:
                    raise FrameSourceError(f"{self.path} {self.topic}: {exc}") from None
        finally:
            reader.close()


def _is_bag(path: Path) -> bool:
    return path.is_dir() and (path / "metadata.yaml").is_file()


def open_frames(source: str | Path, topic: str | None = None) -> FrameSource:
    """Check ``source`` (image folder, video file or bag directory) and return a FrameSource.

    Raises :class:`FrameSourceError` (one line) for a missing or empty source, a bag without an
    ``sensor_msgs/msg/Image`` topic (or without ``topic``), an unreadable video.
    """
    path = Path(source)
    if not path.exists():
        raise FrameSourceError(f"{path}: no such file or directory")
    if _is_bag(path) or path.suffix in (".mcap", ".db3"):
        return _open_bag(path if path.is_dir() else path.parent, topic)
    if topic is not None:
        raise FrameSourceError(f"{path}: --topic applies to bags only (this is not a rosbag2 bag)")
    if path.is_dir():
        files = tuple(sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()))
        if not files:
            raise FrameSourceError(f"{path}: no image files ({', '.join(IMAGE_SUFFIXES)}) in the folder")
        return FrameSource(path, "images", len(files), files=files)
    if path.suffix.lower() in VIDEO_SUFFIXES:
        import cv2

        capture = cv2.VideoCapture(str(path))
        try:
            ok, _ = capture.read()
            count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
        finally:
            capture.release()
        if not ok:
            raise FrameSourceError(f"{path}: no readable frames (empty or unsupported video)")
        return FrameSource(path, "video", count)
    raise FrameSourceError(
        f"{path}: not an image folder, a video ({', '.join(VIDEO_SUFFIXES)}) or a rosbag2 bag directory"
    )


def _open_bag(path: Path, topic: str | None) -> FrameSource:
    from ..bag.common import BagError, open_reader

    try:
        reader = open_reader(path)
    except BagError as exc:
        raise FrameSourceError(str(exc)) from None
    try:
        images = {c.topic: c.msgcount for c in reader.connections if c.msgtype == IMAGE_TYPE}
    finally:
        reader.close()
    if not images:
        raise FrameSourceError(f"{path}: the bag has no {IMAGE_TYPE} topic")
    if topic is None:
        if len(images) > 1:
            raise FrameSourceError(
                f"{path}: several image topics ({', '.join(sorted(images))}); pick one with --topic"
            )
        topic = next(iter(images))
    elif topic not in images:
        raise FrameSourceError(
            f"{path}: no {IMAGE_TYPE} topic {topic!r} (image topics: {', '.join(sorted(images))})"
        )
    if images[topic] == 0:
        raise FrameSourceError(f"{path}: topic {topic} has no messages")
    return FrameSource(path, "bag", images[topic], topic=topic)


def frames_digest(frames: list[np.ndarray]) -> str:
    """sha256 over the frames' shapes and pixels (records exactly which frames were used)."""
    digest = hashlib.sha256()
    for frame in frames:
        digest.update(str(frame.shape).encode())
        digest.update(np.ascontiguousarray(frame).tobytes())
    return digest.hexdigest()
