"""Detector decoding == the straightforward reference (full-map max-pool peaks, top-k, torchvision NMS)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.ops as box_ops

from tnn_ros.models.detector import MAX_DETECTIONS, NMS_IOU, STRIDE, class_nms, decode


def reference_decode(heatmap_logits, distances, score_threshold, max_detections=MAX_DETECTIONS):
    """CenterNet decoding over the whole map with torch/torchvision ops (the former implementation)."""
    heat = torch.sigmoid(heatmap_logits)
    peaks = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat)
    n, c, h, w = heat.shape
    ys = (torch.arange(h, dtype=torch.float32) + 0.5) * STRIDE
    xs = (torch.arange(w, dtype=torch.float32) + 0.5) * STRIDE
    cx, cy = xs.view(1, -1).expand(h, w), ys.view(-1, 1).expand(h, w)
    boxes_all = torch.stack(
        [cx - distances[:, 0], cy - distances[:, 1], cx + distances[:, 2], cy + distances[:, 3]], 1
    ).flatten(2)
    results = []
    for i in range(n):
        scores, index = peaks[i].flatten().topk(min(max_detections, c * h * w))
        keep = scores >= score_threshold
        scores, index = scores[keep], index[keep]
        labels, cells = index // (h * w), index % (h * w)
        boxes = boxes_all[i][:, cells].T
        keep = box_ops.batched_nms(boxes, scores, labels, NMS_IOU)
        results.append((boxes[keep], scores[keep], labels[keep]))
    return results


def _maps(seed, n=2, c=5, h=30, w=40):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, h, w, generator=g) * 2 - 1
    distances = torch.rand(n, 4, h, w, generator=g) * 40
    return logits, distances


@pytest.mark.parametrize("threshold", [0.0, 0.05, 0.3, 0.7, 0.99])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_decode_matches_reference(seed, threshold):
    logits, distances = _maps(seed)
    for (b, s, c), (rb, rs, rc) in zip(
        decode(logits, distances, threshold), reference_decode(logits, distances, threshold)
    ):
        # Same detections, best first; equal float32 scores (saturated sigmoids) may come in either order.
        assert np.all(np.diff(s.numpy()) <= 0)
        got, expected = _canonical(b, s, c), _canonical(rb, rs, rc)
        assert [key for key, _ in got] == [key for key, _ in expected]
        assert [score for _, score in got] == pytest.approx([score for _, score in expected], abs=1e-6)
        assert b.dtype == torch.float32 and c.dtype == torch.int64


def _canonical(boxes, scores, labels):
    """(label, box) keys in a fixed order, with their scores."""
    return sorted(
        ((int(c), *(round(float(v), 2) for v in b)), float(s)) for b, s, c in zip(boxes, scores, labels)
    )


def test_decode_plateaus_and_empty_maps():
    # A 2x2 plateau of equal scores: every cell of it is a peak (max-pool equality), as in the reference.
    logits = torch.full((1, 2, 6, 6), -10.0)
    logits[0, 1, 2:4, 2:4] = 1.0
    distances = torch.full((1, 4, 6, 6), 4.0)
    ((b, s, c),) = decode(logits, distances, 0.5)
    ((rb, rs, rc),) = reference_decode(logits, distances, 0.5)
    assert sorted(c.tolist()) == sorted(rc.tolist()) and len(c) == len(rc)
    # Nothing above the threshold: empty tensors with the right shapes.
    ((b, s, c),) = decode(torch.full((1, 2, 6, 6), -10.0), distances, 0.5)
    assert b.shape == (0, 4) and s.shape == (0,) and c.shape == (0,)


def test_decode_keeps_at_most_max_detections():
    logits, distances = _maps(3, n=1, c=5, h=40, w=40)
    ((b, s, c),) = decode(logits, distances, 0.0, max_detections=7)
    ((rb, rs, rc),) = reference_decode(logits, distances, 0.0, max_detections=7)
    assert c.tolist() == rc.tolist() and len(c) <= 7
    torch.testing.assert_close(b, rb, atol=1e-4, rtol=0)
    assert np.all(np.diff(s.numpy()) <= 0)


@pytest.mark.parametrize("seed", range(6))
def test_class_nms_matches_torchvision_batched_nms(seed):
    """Crowded random boxes of 3 classes (many overlaps): the same kept set as torchvision's op."""
    rng = np.random.default_rng(seed)
    n = 60
    corners = rng.uniform(0, 8, (n, 2)).astype(np.float32)
    boxes = np.concatenate([corners, corners + rng.uniform(12, 20, (n, 2)).astype(np.float32)], 1)
    scores = rng.random(n).astype(np.float32)
    classes = rng.integers(0, 3, n)
    order = np.argsort(-scores, kind="stable")  # class_nms takes boxes best first
    boxes, scores, classes = boxes[order], scores[order], classes[order]
    expected = box_ops.batched_nms(
        torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(classes), NMS_IOU
    )
    got = class_nms(boxes, classes, NMS_IOU)
    assert sorted(got.tolist()) == sorted(expected.tolist())
    assert 0 < len(got) < n  # the case really suppresses


def test_class_nms_hand_computed():
    boxes = np.array(
        [
            [0, 0, 10, 10],  # kept (best)
            [1, 0, 11, 10],  # IoU 90/110 = 0.82 with box 0, same class: dropped
            [2, 0, 12, 10],  # IoU 0.67 with box 1 but box 1 is gone; IoU 80/120 = 0.67 with box 0: kept
            [0, 0, 10, 10],  # identical to box 0 but another class: kept
            [3, 0, 13, 10],  # IoU 90/110 = 0.82 with box 2 (kept): dropped; 70/130 with box 0
        ],
        np.float32,
    )
    classes = np.array([0, 0, 0, 1, 0])
    assert class_nms(boxes, classes, 0.7).tolist() == [0, 2, 3]
    assert class_nms(boxes, classes, 0.95).tolist() == [0, 1, 2, 3, 4]
    # Two empty boxes (IoU 0/0) never suppress each other, as in torchvision.
    empty = np.zeros((2, 4), np.float32)
    assert class_nms(empty, np.zeros(2, np.int64), 0.5).tolist() == [0, 1]
