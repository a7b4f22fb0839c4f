"""Throttleable detector: levels, decoding, model files, training smoke test, COCO loader."""

import json

import numpy as np
import pytest
import torch

from tnn_ros.data.scenes import SyntheticDetectionDataset
from tnn_ros.models import ModelFileError, load_detector, save_model
from tnn_ros.models.detector import STRIDE, ThrottleableDetector, decode
from tnn_ros.sim.scenes import CLASSES, SceneSequence, render_scene
from tnn_ros.throttle import count_macs, gated_ops
from tnn_ros.train.common import TrainConfig, calibrate_bn, train
from tnn_ros.train.detector import build_targets, detection_distill, detection_loss

# Small enough for a unit test, same structure as the shipped model.
TINY = {
    "input_size": [96, 64],
    "num_levels": 4,
    "stem_channels": 16,
    "stage_channels": [16, 32, 64],
    "channel_multiple": 8,
    "neck_channels": 32,
    "block_min_levels": [[1], [0, 2], [0, 1]],
}


def tiny_detector(seed=0):
    torch.manual_seed(seed)
    return ThrottleableDetector(list(CLASSES), TINY)


def test_scenes_are_deterministic_and_boxes_inside():
    a = render_scene(np.random.default_rng(5), 160, 120)
    b = render_scene(np.random.default_rng(5), 160, 120)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and np.array_equal(a[2], b[2])
    rgb, boxes, labels = a
    assert rgb.shape == (120, 160, 3) and rgb.dtype == np.uint8
    assert len(boxes) == len(labels) >= 1
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 160).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 3] <= 120).all() and (boxes[:, 2] > boxes[:, 0]).all()
    assert set(labels.tolist()) <= set(range(len(CLASSES)))
    seq = SceneSequence(3, 160, 120)
    f0, f1 = seq.frame(0.0), seq.frame(1.0)
    assert not np.array_equal(f0[1], f1[1])  # objects move
    assert np.array_equal(seq.frame(1.0)[1], f1[1])


def test_macs_strictly_decrease_and_output_interface_is_fixed():
    model = tiny_detector().eval()
    x = model.example_input()
    macs = count_macs(model, x)
    assert all(lo < hi for lo, hi in zip(macs, macs[1:])), macs
    shapes = set()
    with torch.no_grad():
        for level in range(model.num_levels):
            model.set_level(level)
            heat, dist = model(x)
            shapes.add((tuple(heat.shape), tuple(dist.shape)))
    assert shapes == {((1, len(CLASSES), 64 // STRIDE, 96 // STRIDE), (1, 4, 64 // STRIDE, 96 // STRIDE))}


def test_targets_decode_back_to_ground_truth():
    boxes = torch.tensor([[10.0, 6.0, 50.0, 40.0], [60.0, 20.0, 90.0, 60.0]])
    labels = torch.tensor([1, 3])
    t = build_targets([boxes], [labels], len(CLASSES), 64 // STRIDE, 96 // STRIDE)
    heat_logits = torch.logit(t["heatmap"].clamp(1e-6, 1 - 1e-6))
    # distances that reproduce each target box from every cell that regresses it
    ys = (torch.arange(64 // STRIDE) + 0.5) * STRIDE
    xs = (torch.arange(96 // STRIDE) + 0.5) * STRIDE
    b = t["boxes"][0]
    dist = torch.stack(
        [xs.view(1, -1) - b[0], ys.view(-1, 1) - b[1], b[2] - xs.view(1, -1), b[3] - ys.view(-1, 1)]
    )
    ((got_boxes, scores, got_labels),) = decode(heat_logits, dist.unsqueeze(0), 0.5)
    order = torch.argsort(got_labels)
    torch.testing.assert_close(got_boxes[order], boxes)
    assert got_labels[order].tolist() == [1, 3]


def test_predict_maps_boxes_to_the_input_image(monkeypatch):
    model = tiny_detector().eval()
    h, w = 64 // STRIDE, 96 // STRIDE
    heat = torch.full((1, len(CLASSES), h, w), -10.0)
    heat[0, 2, 3, 4] = 5.0  # one object of class 2 at cell (x=4, y=3): centre (36, 28) in net pixels
    dist = torch.zeros(1, 4, h, w)
    dist[0, :, 3, 4] = torch.tensor([6.0, 8.0, 10.0, 12.0])  # box (30, 20, 46, 40) in net pixels
    monkeypatch.setattr(model, "forward", lambda images: (heat, dist))
    image = np.zeros((128, 288, 3), np.uint8)  # 3x wider, 2x taller than the net input
    (det,) = model.predict(image, score_threshold=0.5)
    assert det.class_id == 2 and det.label == CLASSES[2] and det.score > 0.99
    assert det.box == pytest.approx((90.0, 40.0, 138.0, 80.0))
    with pytest.raises(ValueError):
        model.predict(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError):
        model.predict(np.zeros((10, 10, 3), np.float32))


def test_save_load_round_trip(tmp_path):
    model = tiny_detector().eval()
    path = tmp_path / "det.pt"
    save_model(
        model, path, {"name": "detector", "architecture": model.architecture, "classes": model.classes}
    )
    loaded = load_detector(str(path))
    x = torch.rand(1, 3, 64, 96)
    for level in (0, 3):
        model.set_level(level)
        loaded.set_level(level)
        with torch.no_grad():
            for a, b in zip(model(x), loaded(x)):
                torch.testing.assert_close(a, b)
    assert loaded.classes == list(CLASSES) and loaded.input_size == (96, 64)
    assert not loaded.training


def test_bad_model_files_raise_clear_errors(tmp_path):
    model = tiny_detector().eval()
    path = tmp_path / "det.pt"
    card = {"name": "detector", "architecture": model.architecture, "classes": model.classes}
    save_model(model, path, card)
    # mismatched: the card says wider stages than the weights have
    bad_card = dict(card, architecture={**model.architecture, "stage_channels": [16, 32, 48]})
    (tmp_path / "det.card.json").write_text(json.dumps(bad_card))
    with pytest.raises(ModelFileError, match=r"det\.pt.*shape mismatch"):
        load_detector(str(path))
    (tmp_path / "det.card.json").write_text(json.dumps(dict(card, classes=["a", "b"])))
    with pytest.raises(ModelFileError, match="shape mismatch"):
        load_detector(str(path))
    (tmp_path / "det.card.json").write_text("{not json")
    with pytest.raises(ModelFileError, match=r"det\.card\.json.*JSON"):
        load_detector(str(path))
    (tmp_path / "det.card.json").write_text(json.dumps({"name": "detector"}))
    with pytest.raises(ModelFileError, match="lacks architecture"):
        load_detector(str(path))
    (tmp_path / "det.card.json").write_text(json.dumps(dict(card, num_levels=7)))
    with pytest.raises(ModelFileError, match="num_levels"):
        load_detector(str(path))
    (tmp_path / "det.card.json").write_text(json.dumps(card))
    path.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(ModelFileError, match=r"det\.pt.*not a readable weights file"):
        load_detector(str(path))
    with pytest.raises(ModelFileError, match="not found"):
        load_detector(str(tmp_path / "missing.pt"))


def test_a_few_training_steps_reduce_the_loss():
    model = tiny_detector()
    dataset = SyntheticDetectionDataset(4, 96, 64, seed=3)
    images = torch.stack([dataset[i][0] for i in range(4)])
    boxes = [dataset[i][1]["boxes"] for i in range(4)]
    labels = [dataset[i][1]["labels"] for i in range(4)]
    targets = build_targets(boxes, labels, len(CLASSES), 64 // STRIDE, 96 // STRIDE)

    def batches():
        while True:
            yield images, targets

    def losses_at_full_and_lowest():
        model.train()
        with torch.no_grad():
            values = []
            for level in (model.num_levels - 1, 0):
                model.set_level(level)
                values.append(float(detection_loss(model(images), targets)[0]))
        return values

    before = losses_at_full_and_lowest()
    config = TrainConfig(steps=25, lr=3e-3, warmup_steps=2, log_every=25, num_random_levels=1)
    result = train(model, batches(), detection_loss, config, distill_fn=detection_distill)
    assert result.steps == 25
    calibrate_bn(model, batches(), num_batches=1)
    assert not model.training
    after = losses_at_full_and_lowest()
    assert after[0] < 0.7 * before[0] and after[1] < 0.7 * before[1], (before, after)


def test_caches_rebuilt_once_per_eval_not_per_switch():
    model = tiny_detector().eval()
    builds = sum(op.cache_builds for op in gated_ops(model))
    model.warmup()
    for u in np.linspace(0, 1, 11):
        model.set_utilization(float(u))
    assert sum(op.cache_builds for op in gated_ops(model)) == builds


def test_switching_level_from_another_thread_never_breaks_a_forward():
    import threading

    model = tiny_detector().eval()
    x = model.example_input()
    stop = threading.Event()

    def switch():
        level = 0
        while not stop.is_set():
            model.set_level(level)
            level = (level + 1) % model.num_levels

    thread = threading.Thread(target=switch)
    thread.start()
    try:
        with torch.no_grad():
            for _ in range(40):
                heat, _ = model(x)
                assert heat.shape[1] == len(CLASSES)
    finally:
        stop.set()
        thread.join()
