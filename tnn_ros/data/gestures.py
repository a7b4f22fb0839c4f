"""The synthetic gesture clips of :mod:`tnn_ros.sim.gestures` as a torch data set (training, evaluation)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from tnn_ros.sim.gestures import GESTURE_CLASSES, _check_label, render_clip


def label_cycle(classes: Sequence[str], class_repeats: Mapping[str, int] | None = None) -> list[int]:
    """Class indices in the order clips cycle through them.

    Each class once per cycle, or ``class_repeats[name]`` times in a row: weights a class the net
    reads poorly without a random sampler, so clip ``i`` still depends only on ``(seed, i)``.
    """
    repeats = dict(class_repeats or {})
    unknown = sorted(set(repeats) - set(classes))
    if unknown:
        raise ValueError(f"class_repeats names unknown classes {unknown}; expected some of {list(classes)}")
    for name, count in repeats.items():
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise ValueError(f"class_repeats[{name!r}] must be an integer >= 1, got {count!r}")
    return [i for i, name in enumerate(classes) for _ in range(repeats.get(name, 1))]


class SyntheticGestureDataset(Dataset):
    """``num_clips`` seeded synthetic clips; item ``i`` is ``(clip, label_index)``.

    ``clip`` is a uint8 tensor (T, H, W, 3) (the model converts it, see
    :meth:`~tnn_ros.models.gesture.ThrottleableGestureNet.preprocess`). Clip ``i`` depends only on
    ``(seed, i)``, so any subset or order renders the same clips; labels cycle through the classes so
    every class is equally frequent (``class_repeats``: see :func:`label_cycle`). Clips are rendered
    on demand (about 1 ms per 48x48 frame).
    """

    def __init__(
        self,
        num_clips: int,
        seed: int = 0,
        clip_length: int = 16,
        frame_size: tuple[int, int] = (48, 48),
        classes: Sequence[str] = GESTURE_CLASSES,
        class_repeats: Mapping[str, int] | None = None,
    ) -> None:
        if num_clips < 1:
            raise ValueError(f"num_clips must be >= 1, got {num_clips}")
        for label in classes:
            _check_label(label)
        self.num_clips = int(num_clips)
        self.seed = int(seed)
        self.clip_length = int(clip_length)
        self.frame_size = (int(frame_size[0]), int(frame_size[1]))
        self.classes = list(classes)
        self._labels = label_cycle(self.classes, class_repeats)

    def __len__(self) -> int:
        return self.num_clips

    def label_of(self, index: int) -> int:
        """Class index of clip ``index`` (no rendering)."""
        return self._labels[index % len(self._labels)]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= index < self.num_clips:
            raise IndexError(f"clip {index} out of range [0, {self.num_clips})")
        label = self.label_of(index)
        rng = np.random.default_rng([self.seed, index])
        clip = render_clip(rng, self.classes[label], self.clip_length, *self.frame_size)
        return torch.from_numpy(clip), label
