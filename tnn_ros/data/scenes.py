"""The synthetic detection scenes of :mod:`tnn_ros.sim.scenes` as a torch data set (training, evaluation)."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from tnn_ros.sim.scenes import CLASSES, render_scene


class SyntheticDetectionDataset(Dataset):
    """``num_images`` seeded scenes: item i -> (float image 3xHxW in [0, 1], {"boxes", "labels"})."""

    classes = CLASSES

    def __init__(self, num_images: int, width: int = 320, height: int = 240, seed: int = 0) -> None:
        if num_images < 1:
            raise ValueError(f"num_images must be >= 1, got {num_images}")
        self.num_images, self.width, self.height, self.seed = num_images, width, height, seed

    def __len__(self) -> int:
        return self.num_images

    def scene(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The raw (rgb, boxes, labels) of item ``index``."""
        if not 0 <= index < self.num_images:
            raise IndexError(index)
        return render_scene(np.random.default_rng((self.seed, index)), self.width, self.height)

    def __getitem__(self, index: int):
        rgb, boxes, labels = self.scene(index)
        image = torch.from_numpy(rgb).permute(2, 0, 1).float().div_(255.0)
        return image, {"boxes": torch.from_numpy(boxes), "labels": torch.from_numpy(labels)}


def collate_detections(batch: list) -> tuple:
    """DataLoader collate for detection items: stacked images, and per-image box / label lists."""
    images = torch.stack([item[0] for item in batch])
    return images, ([item[1]["boxes"] for item in batch], [item[1]["labels"] for item in batch])
