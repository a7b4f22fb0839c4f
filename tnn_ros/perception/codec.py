"""sensor_msgs/Image <-> numpy conversion without cv_bridge (ROS-free).

The node hands the raw message fields to :func:`decode_image`; every way a message can be wrong
(unknown encoding, short data, zero size, too many pixels, inconsistent step) raises
:class:`ImageDecodeError` with a message that says what is wrong, so the node can count and log the
drop instead of crashing.
"""

from __future__ import annotations

import cv2
import numpy as np

SUPPORTED_ENCODINGS = ("rgb8", "bgr8", "mono8", "rgba8", "bgra8")

# Bytes per pixel and the OpenCV conversion that turns the packed pixels into RGB (None: already RGB).
_CHANNELS = {"rgb8": 3, "bgr8": 3, "mono8": 1, "rgba8": 4, "bgra8": 4}
_TO_RGB = {
    "rgb8": None,
    "bgr8": cv2.COLOR_BGR2RGB,
    "mono8": cv2.COLOR_GRAY2RGB,
    "rgba8": cv2.COLOR_RGBA2RGB,
    "bgra8": cv2.COLOR_BGRA2RGB,
}
_FROM_RGB = {
    "rgb8": None,
    "bgr8": cv2.COLOR_RGB2BGR,
    "mono8": cv2.COLOR_RGB2GRAY,
    "rgba8": cv2.COLOR_RGB2RGBA,
    "bgra8": cv2.COLOR_RGB2BGRA,
}

DEFAULT_MAX_PIXELS = 4096 * 2160


class ImageDecodeError(ValueError):
    """An image message that cannot be turned into an RGB array; the message says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        #: short machine-readable cause, used as the drop-counter key in diagnostics
        self.reason = reason


def decode_image(
    height: int,
    width: int,
    encoding: str,
    step: int,
    data: bytes | memoryview,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Return the image as a contiguous ``HxWx3`` uint8 RGB array.

    ``step`` is the row length in bytes; rows may carry padding after ``width * channels`` bytes,
    which is skipped. Raises :class:`ImageDecodeError` (with ``reason`` one of ``encoding``,
    ``empty``, ``too_large``, ``bad_step``, ``short_data``) for anything that does not describe a
    valid image.
    """
    channels = _CHANNELS.get(encoding)
    if channels is None:
        raise ImageDecodeError(
            "encoding", f"unsupported encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}"
        )
    if height <= 0 or width <= 0:
        raise ImageDecodeError("empty", f"zero-sized image ({width}x{height})")
    if height * width > max_pixels:
        raise ImageDecodeError(
            "too_large",
            f"image {width}x{height} has {width * height} pixels, over max_image_pixels={max_pixels}",
        )
    row_bytes = width * channels
    if step < row_bytes:
        raise ImageDecodeError(
            "bad_step", f"step {step} is shorter than width*channels = {row_bytes} for {encoding}"
        )
    buffer = np.frombuffer(data, dtype=np.uint8)
    # The last row needs only its pixel bytes, but ROS requires height*step; accept exactly that.
    if buffer.size < height * step:
        raise ImageDecodeError(
            "short_data",
            f"data has {buffer.size} bytes, expected height*step = {height}*{step} = {height * step}",
        )
    rows = buffer[: height * step].reshape(height, step)[:, :row_bytes]
    pixels = rows.reshape(height, width, channels)
    conversion = _TO_RGB[encoding]
    if conversion is None:
        return np.ascontiguousarray(pixels)
    if channels == 1:
        pixels = pixels[:, :, 0]
    # cvtColor needs contiguous input; the padded view is not.
    return cv2.cvtColor(np.ascontiguousarray(pixels), conversion)


def encode_image(rgb: np.ndarray, encoding: str, row_padding: int = 0) -> tuple[int, bytes]:
    """Pack an ``HxWx3`` uint8 RGB array as ``encoding``; return ``(step, data)``.

    ``row_padding`` extra zero bytes are appended to each row (``step`` grows accordingly); used to
    exercise decoders that must honour ``step``.
    """
    if encoding not in _CHANNELS:
        raise ValueError(f"unsupported encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}")
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected HxWx3 uint8 RGB, got shape {rgb.shape} dtype {rgb.dtype}")
    if row_padding < 0:
        raise ValueError(f"row_padding must be >= 0, got {row_padding}")
    conversion = _FROM_RGB[encoding]
    packed = rgb if conversion is None else cv2.cvtColor(rgb, conversion)
    height, width = rgb.shape[:2]
    rows = np.ascontiguousarray(packed).reshape(height, width * _CHANNELS[encoding])
    if row_padding:
        rows = np.concatenate([rows, np.zeros((height, row_padding), np.uint8)], axis=1)
    return rows.shape[1], rows.tobytes()
