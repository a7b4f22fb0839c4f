"""Loader for Jester-style gesture videos (20BN Jester layout) to train on real data.

Expected layout under ``root`` (the layout of the Jester v1 download; other names work too)::

    root/
      jester-v1-train.csv        "video_id;label" per line, e.g. "34870;Swiping Left"
      jester-v1-validation.csv   same format   (or train.csv / validation.csv)
      jester-v1-labels.csv       optional: one label per line (fixes the class order)
      20bn-jester-v1/<video_id>/00001.jpg 00002.jpg ...   (or root/<video_id>/...)

Labels are normalised to snake case ("No gesture" -> "no_gesture", "Swiping Left" ->
"swiping_left"). ``no_gesture`` is always a class (the recognizer falls back to it). Each item samples
``clip_length`` frames spread evenly over the video (with a random offset when training) and resizes
them to ``frame_size``; rows whose folder is missing or holds no frames are skipped and counted.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ..sim.gestures import NO_GESTURE

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
VIDEO_DIR_NAMES = ("20bn-jester-v1", "videos", "frames", ".")


def normalize_label(label: str) -> str:
    """Jester label to class name: "Swiping Left" -> "swiping_left", "No gesture" -> "no_gesture"."""
    return re.sub(r"[^0-9a-z]+", "_", label.strip().lower()).strip("_")


def _find_csv(root: Path, split: str) -> Path:
    for name in (f"jester-v1-{split}.csv", f"{split}.csv"):
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(f"no {split} CSV in {root} (looked for jester-v1-{split}.csv and {split}.csv)")


def read_annotations(csv_path: str | Path) -> list[tuple[str, str]]:
    """Rows ``(video_id, normalised label)`` of a "video_id;label" CSV; malformed lines raise ValueError."""
    rows = []
    with open(csv_path, newline="") as handle:
        for number, row in enumerate(csv.reader(handle, delimiter=";"), start=1):
            if not row or not "".join(row).strip():
                continue
            if len(row) != 2 or not row[0].strip() or not row[1].strip():
                raise ValueError(f"{csv_path}:{number}: expected 'video_id;label', got {';'.join(row)!r}")
            rows.append((row[0].strip(), normalize_label(row[1])))
    return rows


def sample_indices(num_frames: int, clip_length: int, offset: float = 0.5) -> np.ndarray:
    """``clip_length`` frame indices spread evenly over ``num_frames`` (repeats when the video is short).

    ``offset`` in [0, 1) places the samples inside their segment (0.5 = centre; random when training).
    """
    if num_frames < 1:
        raise ValueError("a video needs at least one frame")
    positions = (np.arange(clip_length) + offset) * num_frames / clip_length
    return np.clip(positions.astype(int), 0, num_frames - 1)


class JesterDataset(Dataset):
    """Jester-style clips: item ``i`` is ``(uint8 tensor (T, H, W, 3) RGB, class index)``.

    Args:
        root: dataset folder (see the module docstring).
        split: "train" or "validation" (picks the CSV); or give ``csv_path``.
        clip_length / frame_size: frames per clip and (width, height) after resizing.
        classes: class order to use (e.g. the training set's for validation); default: the labels file
            if present, else the sorted labels of the CSV, plus ``no_gesture``. Rows of other labels are
            skipped (train on a subset by listing it).
        random_offset: jitter the sampled frame positions (training); uses ``seed`` and the index.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        clip_length: int = 16,
        frame_size: tuple[int, int] = (48, 48),
        classes: Sequence[str] | None = None,
        csv_path: str | Path | None = None,
        random_offset: bool = False,
        seed: int = 0,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"Jester root {self.root} is not a folder")
        self.clip_length = int(clip_length)
        self.frame_size = (int(frame_size[0]), int(frame_size[1]))
        self.random_offset = random_offset
        self.seed = seed
        self.epoch = 0  # bump to get other random offsets per epoch
        rows = read_annotations(csv_path or _find_csv(self.root, split))
        self.classes = self._classes(classes, rows)
        index = {name: i for i, name in enumerate(self.classes)}
        self.videos: list[tuple[list[Path], int]] = []
        self.skipped_label = self.skipped_missing = 0
        for video_id, label in rows:
            if label not in index:
                self.skipped_label += 1
                continue
            frames = self._frames_of(video_id)
            if not frames:
                self.skipped_missing += 1
                continue
            self.videos.append((frames, index[label]))
        if not self.videos:
            raise ValueError(
                f"no usable videos in {self.root} ({self.skipped_missing} missing or empty, "
                f"{self.skipped_label} with labels outside {self.classes})"
            )

    def _classes(self, classes: Sequence[str] | None, rows: list[tuple[str, str]]) -> list[str]:
        if classes is not None:
            names = [normalize_label(c) for c in classes]
        else:
            labels_file = self.root / "jester-v1-labels.csv"
            if labels_file.is_file():
                lines = labels_file.read_text().splitlines()
                names = [normalize_label(line) for line in lines if line.strip()]
            else:
                names = sorted({label for _, label in rows})
        if NO_GESTURE not in names:
            names.append(NO_GESTURE)
        return names

    def _frames_of(self, video_id: str) -> list[Path]:
        for folder in VIDEO_DIR_NAMES:
            directory = self.root / folder / video_id
            if directory.is_dir():
                return sorted(p for p in directory.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
        return []

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        frames, label = self.videos[index]
        offset = 0.5
        if self.random_offset:
            offset = float(np.random.default_rng([self.seed, self.epoch, index]).uniform(0.0, 0.999))
        clip = np.empty((self.clip_length, self.frame_size[1], self.frame_size[0], 3), np.uint8)
        previous = None
        for i, frame_index in enumerate(sample_indices(len(frames), self.clip_length, offset)):
            image = cv2.imread(str(frames[frame_index]), cv2.IMREAD_COLOR)
            if image is None:  # unreadable file: repeat the previous frame rather than fail the epoch
                if previous is None:
                    image = self._first_readable(frames)
                else:
                    clip[i] = previous
                    continue
            previous = cv2.resize(
                cv2.cvtColor(image, cv2.COLOR_BGR2RGB), self.frame_size, interpolation=cv2.INTER_AREA
            )
            clip[i] = previous
        return torch.from_numpy(clip), label

    @staticmethod
    def _first_readable(frames: list[Path]) -> np.ndarray:
        for path in frames:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is not None:
                return image
        raise ValueError(f"no readable frame in {frames[0].parent}")
