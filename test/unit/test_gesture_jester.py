"""Jester-style loader on a tiny fake dataset written by the test."""

import cv2
import numpy as np
import pytest

from tnn_ros.data.jester import JesterDataset, normalize_label, read_annotations, sample_indices


def _write_video(folder, num_frames, value):
    folder.mkdir(parents=True)
    for i in range(num_frames):
        frame = np.zeros((30, 40, 3), np.uint8)
        frame[..., 2] = value  # BGR on disk: red channel = value
        frame[..., 0] = i * 10  # blue encodes the frame index
        cv2.imwrite(str(folder / f"{i + 1:05d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 100])


@pytest.fixture
def jester_root(tmp_path):
    videos = tmp_path / "20bn-jester-v1"
    _write_video(videos / "101", 10, 200)
    _write_video(videos / "102", 6, 100)
    _write_video(videos / "103", 12, 50)
    (tmp_path / "jester-v1-train.csv").write_text(
        "101;Swiping Left\n102;No gesture\n103;Thumb Up\n999;Swiping Left\n\n"
    )
    (tmp_path / "jester-v1-validation.csv").write_text("102;No gesture\n101;Swiping Left\n")
    return tmp_path


def test_labels_are_normalised():
    assert normalize_label("Swiping Left") == "swiping_left"
    assert normalize_label(" No gesture ") == "no_gesture"
    assert normalize_label("Zooming In With Two Fingers") == "zooming_in_with_two_fingers"


def test_loader_reads_clips_labels_and_skips_missing_videos(jester_root):
    dataset = JesterDataset(jester_root, "train", clip_length=4, frame_size=(16, 12))
    assert dataset.classes == ["no_gesture", "swiping_left", "thumb_up"]
    assert len(dataset) == 3 and dataset.skipped_missing == 1  # video 999 has no folder
    clip, label = dataset[0]
    assert clip.shape == (4, 12, 16, 3) and clip.dtype.is_floating_point is False
    assert dataset.classes[label] == "swiping_left"
    red = clip[..., 0].float().mean().item()
    assert abs(red - 200) < 6  # RGB order (cv2 reads BGR)
    blue = clip[:, 0, 0, 2].tolist()
    assert blue == sorted(blue) and blue[0] < blue[-1]  # frames in temporal order


def test_validation_uses_the_training_class_order_and_skips_other_labels(jester_root):
    train = JesterDataset(jester_root, "train", clip_length=4)
    val = JesterDataset(jester_root, "validation", clip_length=4, classes=train.classes)
    assert val.classes == train.classes and len(val) == 2
    subset = JesterDataset(jester_root, "train", clip_length=4, classes=["Swiping Left"])
    assert subset.classes == ["swiping_left", "no_gesture"]
    assert len(subset) == 2 and subset.skipped_label == 1  # "Thumb Up" left out


def test_random_offsets_are_seeded(jester_root):
    a = JesterDataset(jester_root, "train", clip_length=4, random_offset=True, seed=1)
    b = JesterDataset(jester_root, "train", clip_length=4, random_offset=True, seed=1)
    assert np.array_equal(a[2][0].numpy(), b[2][0].numpy())


def test_sample_indices_cover_the_video():
    assert sample_indices(16, 4).tolist() == [2, 6, 10, 14]
    assert sample_indices(3, 6).tolist() == [0, 0, 1, 1, 2, 2]
    with pytest.raises(ValueError):
        sample_indices(0, 4)


def test_bad_inputs_raise_clear_errors(tmp_path, jester_root):
    with pytest.raises(FileNotFoundError):
        JesterDataset(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="validation CSV"):
        JesterDataset(tmp_path / "20bn-jester-v1", "validation")
    bad = tmp_path / "bad.csv"
    bad.write_text("101;Swiping Left;extra\n")
    with pytest.raises(ValueError, match="bad.csv:1"):
        read_annotations(bad)
    empty = tmp_path / "empty.csv"
    empty.write_text("999;Swiping Left\n")
    with pytest.raises(ValueError, match="no usable videos"):
        JesterDataset(jester_root, csv_path=empty)
