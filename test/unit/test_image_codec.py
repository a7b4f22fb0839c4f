import numpy as np
import pytest

from tnn_ros.perception import SUPPORTED_ENCODINGS, ImageDecodeError, decode_image, encode_image


def _image(height=5, width=7, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _gray_image(height=5, width=7):
    # mono8 loses colour: compare on an image whose channels are equal.
    gray = np.arange(height * width, dtype=np.uint8).reshape(height, width)
    return np.repeat(gray[:, :, None], 3, axis=2)


@pytest.mark.parametrize("encoding", SUPPORTED_ENCODINGS)
@pytest.mark.parametrize("padding", [0, 3, 64])
def test_round_trip_every_encoding_with_and_without_row_padding(encoding, padding):
    rgb = _gray_image() if encoding == "mono8" else _image()
    step, data = encode_image(rgb, encoding, row_padding=padding)
    channels = {"mono8": 1, "rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4}[encoding]
    assert step == rgb.shape[1] * channels + padding
    assert len(data) == step * rgb.shape[0]
    decoded = decode_image(rgb.shape[0], rgb.shape[1], encoding, step, data)
    assert decoded.shape == rgb.shape and decoded.dtype == np.uint8
    assert decoded.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(decoded, rgb)


def test_bgr_channels_are_swapped_not_copied():
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 0] = 200  # pure red
    step, data = encode_image(rgb, "bgr8")
    assert data[:3] == bytes([0, 0, 200])
    assert decode_image(2, 2, "bgr8", step, data)[0, 0].tolist() == [200, 0, 0]


def test_padding_bytes_are_ignored_even_when_not_zero():
    rgb = _image(3, 4)
    step, data = encode_image(rgb, "rgb8", row_padding=5)
    noisy = bytearray(data)
    for row in range(3):
        noisy[row * step + 12 : row * step + step] = b"\xff" * 5
    np.testing.assert_array_equal(decode_image(3, 4, "rgb8", step, bytes(noisy)), rgb)


def test_accepts_memoryview_and_array_module_buffers():
    import array

    rgb = _image()
    step, data = encode_image(rgb, "rgb8")
    np.testing.assert_array_equal(decode_image(5, 7, "rgb8", step, memoryview(data)), rgb)
    np.testing.assert_array_equal(decode_image(5, 7, "rgb8", step, array.array("B", data)), rgb)


@pytest.mark.parametrize("encoding", ["16UC1", "yuv422", "", "RGB8", "bayer_rggb8"])
def test_unsupported_encodings_are_rejected_with_the_name(encoding):
    with pytest.raises(ImageDecodeError) as info:
        decode_image(2, 2, encoding, 6, bytes(12))
    assert info.value.reason == "encoding"
    assert repr(encoding) in str(info.value)


def test_short_data_is_rejected():
    rgb = _image()
    step, data = encode_image(rgb, "rgb8", row_padding=2)
    with pytest.raises(ImageDecodeError) as info:
        decode_image(5, 7, "rgb8", step, data[:-1])
    assert info.value.reason == "short_data"
    assert str(5 * step) in str(info.value)


def test_step_shorter_than_a_row_is_rejected():
    with pytest.raises(ImageDecodeError) as info:
        decode_image(2, 4, "rgb8", 11, bytes(100))
    assert info.value.reason == "bad_step"


@pytest.mark.parametrize("height,width", [(0, 4), (4, 0), (0, 0), (-1, 3)])
def test_zero_sized_images_are_rejected(height, width):
    with pytest.raises(ImageDecodeError) as info:
        decode_image(height, width, "rgb8", max(width, 0) * 3, b"")
    assert info.value.reason == "empty"


def test_images_over_the_pixel_limit_are_rejected_before_touching_the_data():
    # 4K UHD with a limit of 1080p: refused without allocating or reading the (absent) data.
    with pytest.raises(ImageDecodeError) as info:
        decode_image(2160, 3840, "rgb8", 3840 * 3, b"", max_pixels=1920 * 1080)
    assert info.value.reason == "too_large"


def test_4k_frame_within_the_default_limit_decodes():
    rgb = np.zeros((2160, 3840, 3), np.uint8)
    rgb[100, 200] = (1, 2, 3)
    step, data = encode_image(rgb, "bgra8")
    decoded = decode_image(2160, 3840, "bgra8", step, data)
    assert decoded.shape == (2160, 3840, 3) and decoded[100, 200].tolist() == [1, 2, 3]


def test_encode_rejects_bad_input():
    with pytest.raises(ValueError):
        encode_image(np.zeros((2, 2), np.uint8), "rgb8")
    with pytest.raises(ValueError):
        encode_image(np.zeros((2, 2, 3), np.float32), "rgb8")
    with pytest.raises(ValueError):
        encode_image(np.zeros((2, 2, 3), np.uint8), "jpeg")
