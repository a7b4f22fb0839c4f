"""Accuracy per level from real labels (COCO json, Jester csv) in the converted model's card.

The labels are made so that the answer is known without the code under test: they are the
untouched torchvision original's own predictions, so the full level (= the original) must score
exactly 1.0, and a label changed on purpose must cost exactly its share.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import torch
from cli_utils import run_train_cli

from tnn_ros.models.converted import VIDEO_MEAN, VIDEO_STD, convert
from tnn_ros.sim.scenes import render_scene
from tnn_ros.throttle.convert import ConvertOptions


def test_coco_labels_give_each_level_an_accuracy(tmp_path, capsys):
    arch = "ssdlite320_mobilenet_v3_large"
    # The CLI's --random-init --seed 0 original (the number of levels does not touch it).
    _, original, meta = convert(arch, seed=0, options=ConvertOptions(num_levels=2))
    names = meta["categories"]
    images_dir = tmp_path / "images"
    images_dir.mkdir()
    rng = np.random.default_rng(0)
    coco = {"images": [], "annotations": [], "categories": []}
    used = set()
    for i in range(3):
        rgb = render_scene(rng, 640, 480)[0]
        cv2.imwrite(str(images_dir / f"{i}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        coco["images"].append({"id": i + 1, "file_name": f"{i}.png", "width": 640, "height": 480})
        image = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0
        with torch.no_grad():
            det = original([image])[0]
        for box, score, label in zip(det["boxes"], det["scores"], det["labels"]):
            name = names[int(label)]
            if score < 0.3 or name == "N/A":
                continue
            x1, y1, x2, y2 = (float(v) for v in box)
            if x2 - x1 < 1 or y2 - y1 < 1:
                continue
            used.add(int(label))
            coco["annotations"].append(
                {
                    "id": len(coco["annotations"]) + 1,
                    "image_id": i + 1,
                    "category_id": int(label),
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                }
            )
    assert coco["annotations"], "the random original detects nothing on these scenes"
    coco["categories"] = [{"id": c, "name": names[c]} for c in sorted(used)]
    coco["categories"].append({"id": 999, "name": "unicorn"})  # a category the model does not know
    coco["annotations"].append({**coco["annotations"][0], "id": 10_000, "category_id": 999})
    annotations = tmp_path / "instances.json"
    annotations.write_text(json.dumps(coco))
    out = tmp_path / "ssd.pt"
    argv = ["convert", "--arch", arch, "--random-init", "-o", str(out), "--num-levels", "2"]
    argv += ["--eval-count", "2", "--latency-repeats", "1"]
    code, stdout, err = run_train_cli(
        argv + ["--coco-json", str(annotations), "--coco-images", str(images_dir)], capsys
    )
    assert code == 0, err
    card = json.loads((tmp_path / "ssd.card.json").read_text())
    assert card["labeled"]["images"] == 3
    assert card["labeled"]["boxes"] == len(coco["annotations"]) - 1
    assert card["labeled"]["boxes_dropped_unknown_category"] == 1
    assert card["levels"][-1]["accuracy"] == 1.0  # the full level is the original that made the labels
    assert 0.0 <= card["levels"][0]["accuracy"] <= 1.0
    assert "COCO labels" in card["accuracy_metric"] and "accuracy" in stdout
    # Half-given labels and the other task's labels: one line, exit 2, nothing written.
    for extra, message in (
        (["--coco-json", str(annotations)], "go together"),
        (["--jester-csv", "x.csv", "--jester-dir", "x"], "for video nets"),
    ):
        bad = tmp_path / "bad" / "m.pt"
        code, _, err = run_train_cli(argv[:5] + [str(bad)] + argv[6:] + extra, capsys)
        assert code == 2 and message in err
        assert not bad.parent.exists()


def test_jester_labels_give_each_level_an_accuracy(tmp_path, capsys):
    classes = ["swiping_left", "swiping_right", "thumb_up"]
    small = {"clip_length": 4, "frame_size": [32, 32]}
    _, original, _ = convert(
        "r3d_18", seed=0, options=ConvertOptions(num_levels=3), architecture=small, classes=classes
    )
    root = tmp_path / "jester"
    rng = np.random.default_rng(1)
    rows = []
    mean = torch.tensor(VIDEO_MEAN).view(3, 1, 1, 1)
    std = torch.tensor(VIDEO_STD).view(3, 1, 1, 1)
    for video in range(6):
        folder = root / "20bn-jester-v1" / str(100 + video)
        folder.mkdir(parents=True)
        frames = rng.integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)  # 4 frames: the clip is the video
        for k, frame in enumerate(frames):
            cv2.imwrite(str(folder / f"{k + 1:05d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        clip = (torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 255.0 - mean) / std
        with torch.no_grad():
            predicted = int(original(clip[None]).argmax(1))
        rows.append((100 + video, classes[predicted]))
    # One row gets a label the original did not predict, one a label the model does not know.
    wrong = classes[(classes.index(rows[0][1]) + 1) % 3]
    lines = [f"{rows[0][0]};{wrong.replace('_', ' ').title()}"]
    lines += [f"{vid};{label.replace('_', ' ').title()}" for vid, label in rows[1:5]]
    lines += [f"{rows[5][0]};Drumming Fingers"]
    csv_path = root / "validation.csv"
    csv_path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "r3d.pt"
    code, stdout, err = run_train_cli(
        [
            "convert",
            "--arch",
            "r3d_18",
            "--random-init",
            "-o",
            str(out),
            "--classes",
            ",".join(classes),
            "--clip-length",
            "4",
            "--frame-size",
            "32",
            "32",
            "--num-levels",
            "3",
            "--eval-count",
            "2",
            "--latency-repeats",
            "1",
            "--jester-csv",
            str(csv_path),
            "--jester-dir",
            str(root),
            "--clip-lengths",
            "2",
            "--select-by",
            "macs",
        ],
        capsys,
    )
    assert code == 0, err
    card = json.loads((tmp_path / "r3d.card.json").read_text())
    assert card["labeled"]["clips"] == 5 and card["labeled"]["rows_skipped_unknown_label"] == 1
    assert card["levels"][-1]["accuracy"] == 0.8  # 4 of 5 labels are the original's own answer
    assert all(0.0 <= row["accuracy"] <= 1.0 for row in card["levels"])
    assert "Jester labels" in card["accuracy_metric"]


def test_jester_labels_the_model_does_not_know_are_one_clear_line(tmp_path):
    import argparse

    import pytest

    from tnn_ros.train.convert import labeled_inputs

    model, _, _ = convert(
        "r3d_18",
        seed=0,
        options=ConvertOptions(num_levels=2),
        architecture={"clip_length": 4, "frame_size": [32, 32]},
    )
    csv_path = tmp_path / "validation.csv"
    csv_path.write_text("1;Swiping Left\n2;Thumb Up\n")
    args = argparse.Namespace(
        coco_json=None, coco_images=None, jester_csv=str(csv_path), jester_dir=str(tmp_path), label_count=10
    )
    with pytest.raises(ValueError, match="none of its 2 rows has a label of the model") as error:
        labeled_inputs(model, args)  # a Kinetics-400 net knows no Jester gesture
    assert "\n" not in str(error.value) and len(str(error.value)) < 300
    csv_path.write_text("1;Abseiling\n")  # a label it knows, but no frame folder
    with pytest.raises(ValueError, match="no usable videos") as error:
        labeled_inputs(model, args)
    assert len(str(error.value)) < 300
