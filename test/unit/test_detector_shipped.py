"""The shipped detector (models/detector.pt): loads, its card is current, and it still detects."""

import pytest
import torch
from torchvision.ops import box_iou

from tnn_ros.data.scenes import SyntheticDetectionDataset
from tnn_ros.eval.accuracy import VAL_SEED_OFFSET, detector_map50
from tnn_ros.models import load_detector, shipped_model_path
from tnn_ros.throttle import count_macs
from tnn_ros.train.detector import build_parser

# A real regression (a broken file, decoder, level or training run) must fail; noise cannot, because
# the models are re-measured on the card's own seeded evaluation set, which is deterministic.
CARD_TOLERANCE = 0.03  # 3 points of mAP@0.5


def card_evaluation_set(card: dict, input_size: tuple[int, int]) -> SyntheticDetectionDataset:
    """The held-out scenes the card's accuracies were measured on (``tnn-train detector`` defaults)."""
    width, height = input_size
    count = build_parser().get_default("val_images")
    training = card["training"]
    seed = training.get("val_seed", training["seed"])  # a fine-tune keeps the scenes it started from
    return SyntheticDetectionDataset(count, width, height, seed=seed + VAL_SEED_OFFSET)


@pytest.fixture(scope="module")
def detector():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load_detector()
    torch.set_num_threads(previous)


def test_shipped_files_exist_and_are_small():
    weights = shipped_model_path("detector")
    card = weights.with_name("detector.card.json")
    assert weights.is_file() and card.is_file()
    assert weights.stat().st_size < 10 * 1024 * 1024


def test_card_matches_the_network(detector):
    card = detector.card
    assert card["num_levels"] == detector.num_levels == len(card["levels"])
    assert card["classes"] == detector.classes and tuple(card["input_size"]) == detector.input_size
    macs = count_macs(detector, detector.example_input())
    assert [row["macs"] for row in card["levels"]] == macs
    assert all(lo < hi for lo, hi in zip(macs, macs[1:]))
    assert all(row["latency_ms"] > 0 for row in card["levels"])
    assert card["baseline_accuracy"] is not None and card["training"]["command"].startswith(
        "tnn-train detector"
    )


def test_shipped_detector_meets_its_card_on_the_card_evaluation_set(detector):
    card = detector.card
    levels = [0, detector.num_levels - 1]
    measured = detector_map50(detector, card_evaluation_set(card, detector.input_size), levels=levels)
    for level, value in zip(levels, measured):
        stated = card["levels"][level]["accuracy"]
        assert value >= stated - CARD_TOLERANCE, f"level {level}: mAP@0.5 {value:.4f}, card says {stated}"
        # and the card is current: weights retrained without re-measuring the card fail here too
        assert value <= stated + CARD_TOLERANCE, f"level {level}: mAP@0.5 {value:.4f}, card says {stated}"


def test_predict_on_a_scene_finds_its_objects(detector):
    dataset = SyntheticDetectionDataset(1, 640, 480, seed=7 + VAL_SEED_OFFSET)
    rgb, boxes, labels = dataset.scene(0)
    detector.set_level(detector.num_levels - 1)
    detections = detector.predict(rgb, score_threshold=0.3)
    assert detections, "no detections on a plain synthetic scene"
    for det in detections:
        x1, y1, x2, y2 = det.box
        assert 0 <= x1 < x2 <= 640 and 0 <= y1 < y2 <= 480
    # boxes come back in the 640x480 image's pixels: most objects are found with the right class
    found = torch.tensor([d.box for d in detections])
    iou = box_iou(torch.from_numpy(boxes), found)
    hits = sum(
        any(iou[i, j] > 0.5 and detections[j].class_id == labels[i] for j in range(len(detections)))
        for i in range(len(labels))
    )
    assert hits >= max(1, len(labels) // 2), (hits, len(labels))
