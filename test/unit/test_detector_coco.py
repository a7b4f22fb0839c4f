"""COCO-format folders: loading, box scaling, class mapping, and `tnn-train detector --data coco`."""

import json

import cv2
import numpy as np
import pytest

from tnn_ros.data.coco import CocoDatasetError, CocoDetectionDataset
from tnn_ros.sim.scenes import render_scene


def make_coco(folder, num_images=3, width=200, height=150):
    """A tiny COCO folder from synthetic scenes; COCO ids 7 / 3 on purpose (not contiguous, unsorted)."""
    images, annotations = [], []
    categories = [{"id": 7, "name": "ball"}, {"id": 3, "name": "box"}]
    for i in range(num_images):
        rgb, boxes, labels = render_scene(np.random.default_rng(i), width, height)
        name = f"img_{i}.png"
        cv2.imwrite(str(folder / name), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        images.append({"id": i + 1, "file_name": name, "width": width, "height": height})
        for j, (box, label) in enumerate(zip(boxes, labels)):
            x1, y1, x2, y2 = (float(v) for v in box)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": 7 if label % 2 else 3,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                }
            )
    annotations.append(
        {"id": 999, "image_id": 1, "category_id": 3, "bbox": [0, 0, 50, 50], "area": 2500, "iscrowd": 1}
    )
    path = folder / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def test_coco_dataset_scales_boxes_and_maps_classes(tmp_path):
    ann = make_coco(tmp_path)
    data = CocoDetectionDataset(tmp_path, ann, width=100, height=50)
    assert len(data) == 3 and data.classes == ["box", "ball"]  # sorted by COCO id: 3, 7
    image, target = data[0]
    assert image.shape == (3, 50, 100) and 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    _, boxes, labels = render_scene(np.random.default_rng(0), 200, 150)
    expected = boxes * np.array([0.5, 1 / 3, 0.5, 1 / 3], np.float32)
    np.testing.assert_allclose(target["boxes"].numpy(), expected, rtol=1e-5)  # the crowd box is dropped
    assert target["labels"].tolist() == [1 if label % 2 else 0 for label in labels]


def test_coco_errors_name_the_file(tmp_path):
    with pytest.raises(CocoDatasetError, match="not found"):
        CocoDetectionDataset(tmp_path, tmp_path / "none.json")
    ann = make_coco(tmp_path, num_images=1)
    (tmp_path / "img_0.png").unlink()
    with pytest.raises(CocoDatasetError, match="img_0.png"):
        CocoDetectionDataset(tmp_path, ann)[0]


def test_train_cli_on_coco_writes_model_and_card(tmp_path, capsys):
    from tnn_ros.models import load_detector
    from tnn_ros.train.cli import main

    ann = make_coco(tmp_path, num_images=4)
    out = tmp_path / "out" / "det.pt"
    argv = [
        "detector",
        "--data",
        "coco",
        "--coco-images",
        str(tmp_path),
        "--coco-annotations",
        str(ann),
        "--input-size",
        "96",
        "64",
        "--levels",
        "4",
        "--epochs",
        "1",
        "--batch-size",
        "2",
        "--threads",
        "1",
        "--output",
        str(out),
        "--calibrate-batches",
        "1",
        "--latency-threads",
        "1",
        "--latency-repeats",
        "2",
    ]
    assert main(argv) == 0
    card = json.loads((tmp_path / "out" / "det.card.json").read_text())
    assert card["classes"] == ["box", "ball"] and card["num_levels"] == 4 and len(card["levels"]) == 4
    assert card["training"]["command"].startswith("tnn-train detector --data coco")
    assert all(level["latency_ms"] > 0 for level in card["levels"])
    model = load_detector(str(out), warmup=False)
    assert model.input_size == (96, 64) and model.classes == ["box", "ball"]
    # resume continues from the checkpoint instead of starting over
    capsys.readouterr()
    assert main(argv + ["--resume", "--epochs", "2"]) == 0
    assert "at step 2" in capsys.readouterr().out
