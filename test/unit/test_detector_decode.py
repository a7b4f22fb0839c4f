"""Detector decoding == the straightforward reference (full-map max-pool peaks, top-k, torchvision NMS)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision.ops as box_ops

from tnn_ros.models.detector import MAX_DETECTIONS, NMS_IOU, STRIDE, decode


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
