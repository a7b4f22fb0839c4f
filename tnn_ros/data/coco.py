"""COCO-format detection folders (an image folder + an ``instances`` JSON) for ``tnn-train detector``.

Images are resized (stretched) to the network input, as ``ThrottleableDetector.predict`` does, and
boxes are scaled with them. Categories become contiguous class ids in the order of their COCO ids.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset


class CocoDatasetError(ValueError):
    """The annotation file or an image of a COCO folder is unusable; the message names it."""


class CocoDetectionDataset(Dataset):
    """Item i -> (float image 3xHxW in [0, 1] at the network input, {"boxes" xyxy, "labels"}).

    Args:
        images_dir: folder the ``file_name`` entries are relative to.
        annotations: COCO instances JSON (``images``, ``annotations``, ``categories``).
        width, height: network input size.
        include_empty: keep images without (non-crowd) annotations as pure negatives.
    """

    def __init__(
        self,
        images_dir: str | os.PathLike,
        annotations: str | os.PathLike,
        width: int = 320,
        height: int = 240,
        include_empty: bool = True,
    ) -> None:
        from pycocotools.coco import COCO

        self.images_dir = Path(images_dir)
        self.width, self.height = width, height
        if not Path(annotations).is_file():
            raise CocoDatasetError(f"{annotations}: annotation file not found")
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
                self.coco = COCO(str(annotations))
        except Exception as exc:
            raise CocoDatasetError(f"{annotations}: not a COCO annotation file ({exc})") from exc
        categories = sorted(self.coco.loadCats(self.coco.getCatIds()), key=lambda c: c["id"])
        if not categories:
            raise CocoDatasetError(f"{annotations}: no categories")
        self.classes = [c["name"] for c in categories]
        self.label_of = {c["id"]: i for i, c in enumerate(categories)}
        self.image_ids = [
            i
            for i in sorted(self.coco.getImgIds())
            if include_empty or self.coco.getAnnIds(imgIds=i, iscrowd=False)
        ]
        if not self.image_ids:
            raise CocoDatasetError(f"{annotations}: no usable images")

    def __len__(self) -> int:
        return len(self.image_ids)

    def scene(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rgb at the network input, boxes xyxy float32 scaled with it, labels int64) of item ``index``."""
        info = self.coco.loadImgs(self.image_ids[index])[0]
        path = self.images_dir / info["file_name"]
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise CocoDatasetError(f"{path}: missing or unreadable image")
        h, w = bgr.shape[:2]
        rgb = cv2.resize(
            cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (self.width, self.height), interpolation=cv2.INTER_AREA
        )
        boxes, labels = [], []
        for ann in self.coco.loadAnns(self.coco.getAnnIds(imgIds=info["id"], iscrowd=False)):
            x, y, bw, bh = ann["bbox"]
            x1, y1, x2, y2 = max(x, 0.0), max(y, 0.0), min(x + bw, w), min(y + bh, h)
            if x2 - x1 < 1 or y2 - y1 < 1:
                continue
            sx, sy = self.width / w, self.height / h
            boxes.append([x1 * sx, y1 * sy, x2 * sx, y2 * sy])
            labels.append(self.label_of[ann["category_id"]])
        return rgb, np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels, np.int64)

    def __getitem__(self, index: int):
        rgb, boxes, labels = self.scene(index)
        image = torch.from_numpy(rgb).permute(2, 0, 1).float().div_(255.0)
        return image, {"boxes": torch.from_numpy(boxes), "labels": torch.from_numpy(labels)}
