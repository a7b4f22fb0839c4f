"""Label-free adaptation (`tnn-train adapt`), its frame sources, and the bench on converted files.

A small MC3 (4-frame 32x32 clips, 4 levels, random init) keeps every CLI run to seconds.
"""

from __future__ import annotations

import hashlib
import json

import cv2
import numpy as np
import pytest
import torch
from rosbags.rosbag2 import StoragePlugin, Writer

from tnn_ros.bag.common import typestore_with
from tnn_ros.data.frames import FrameSourceError, open_frames


def _write_images(folder, count: int, seed: int = 0, size=(40, 32)) -> list[np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    frames = [rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8) for _ in range(count)]
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:04d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return frames


def _write_bag(path, frames: list[np.ndarray] | None, encoding: str = "bgr8", topics=("/camera/image_raw",)):
    """A bag with raw images on ``topics`` (or only a String topic when ``frames`` is None)."""
    store = typestore_with(["sensor_msgs/msg/Image", "std_msgs/msg/String"])
    Image, Header = store.types["sensor_msgs/msg/Image"], store.types["std_msgs/msg/Header"]
    Time, String = store.types["builtin_interfaces/msg/Time"], store.types["std_msgs/msg/String"]
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        chat = writer.add_connection("/chat", "std_msgs/msg/String", typestore=store)
        writer.write(chat, 1, store.serialize_cdr(String(data="hi"), "std_msgs/msg/String"))
        for topic in topics if frames is not None else ():
            conn = writer.add_connection(topic, "sensor_msgs/msg/Image", typestore=store)
            for i, rgb in enumerate(frames):
                # packed by hand (not by the codec under test): BGR byte order, one padding byte per row
                packed = rgb[:, :, ::-1] if encoding == "bgr8" else rgb
                rows = np.concatenate(
                    [packed.reshape(rgb.shape[0], -1), np.zeros((rgb.shape[0], 1), np.uint8)], axis=1
                )
                msg = Image(
                    header=Header(stamp=Time(sec=i, nanosec=0), frame_id="cam"),
                    height=rgb.shape[0],
                    width=rgb.shape[1],
                    encoding=encoding,
                    is_bigendian=0,
                    step=rows.shape[1],
                    data=np.ascontiguousarray(rows).reshape(-1),
                )
                writer.write(conn, 10 + i, store.serialize_cdr(msg, "sensor_msgs/msg/Image"))
    return path


BLACK = np.zeros((4, 4, 3), np.uint8)


# --- frame sources ----------------------------------------------------------------------------------


def test_image_folder_and_bag_give_the_same_rgb_frames(tmp_path):
    frames = _write_images(tmp_path / "imgs", 5)
    source = open_frames(tmp_path / "imgs")
    assert source.kind == "images" and source.count == 5
    assert all(np.array_equal(a, b) for a, b in zip(source.frames(), frames))
    bag = _write_bag(tmp_path / "bag", frames)
    source = open_frames(bag)
    assert (source.kind, source.topic, source.count) == ("bag", "/camera/image_raw", 5)
    got = list(source.frames(stride=2))
    assert len(got) == 3 and all(np.array_equal(a, b) for a, b in zip(got, frames[::2]))


@pytest.mark.parametrize(
    "make, topic, message",
    [
        (lambda p: p.mkdir() or p, None, "no image files"),
        (lambda p: _write_bag(p, None), None, "has no sensor_msgs/msg/Image topic"),
        (lambda p: _write_bag(p, [BLACK], topics=("/a", "/b")), None, "pick one with --topic"),
        (lambda p: _write_bag(p, [BLACK]), "/other", "no sensor_msgs/msg/Image topic '/other'"),
        (lambda p: p, None, "no such file or directory"),
    ],
)
def test_bad_frame_sources_raise_one_line(tmp_path, make, topic, message):
    path = make(tmp_path / "src")
    with pytest.raises(FrameSourceError, match=message) as info:
        open_frames(path, topic)
    assert "\n" not in str(info.value)


def test_bag_frames_in_an_encoding_the_node_rejects_fail_cleanly(tmp_path):
    bag = _write_bag(tmp_path / "bag", [np.zeros((4, 4, 3), np.uint8)], encoding="yuv422")
    with pytest.raises(FrameSourceError, match="unsupported encoding 'yuv422'"):
        list(open_frames(bag).frames())


# --- adapt CLI --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    from tnn_ros.train.cli import main

    folder = tmp_path_factory.mktemp("model")
    path = folder / "mc3.pt"
    code = main(
        [
            "convert",
            "--arch",
            "mc3_18",
            "--random-init",
            "-o",
            str(path),
            "--clip-length",
            "4",
            "--frame-size",
            "32",
            "32",
            "--num-levels",
            "4",
            "--eval-count",
            "2",
            "--latency-repeats",
            "1",
        ]
    )
    assert code == 0
    return path


def _adapt(argv, capsys):
    from tnn_ros.train.cli import main

    code = main(["adapt", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_adapt_norms_only_keeps_the_full_level_and_records_everything(small_model, tmp_path, capsys):
    _write_images(tmp_path / "frames", 24, size=(48, 40))
    out = tmp_path / "adapted.pt"
    code, stdout, err = _adapt(
        [
            str(small_model),
            "--frames",
            str(tmp_path / "frames"),
            "-o",
            str(out),
            "--steps",
            "3",
            "--batch-size",
            "2",
            "--trainable",
            "norms",
            "--holdout",
            "0.34",
            "--latency-repeats",
            "1",
            "--seed",
            "3",
        ],
        capsys,
    )
    assert code == 0, err
    card = json.loads(out.with_name("adapted.card.json").read_text())
    adaptation = card["adaptation"]
    assert adaptation["teacher_file_sha256"] == hashlib.sha256(small_model.read_bytes()).hexdigest()
    assert adaptation["full_level_max_abs_diff_vs_teacher"] == 0.0  # only lower levels' BN trained
    assert adaptation["frames"]["frames_available"] == 24
    assert adaptation["frames"]["inputs_used_for_training"] == 4  # 6 clips of 4 frames, 2 held out
    assert "--trainable norms" in adaptation["command"]
    for row in card["levels"]:
        assert {"agreement", "agreement_before_adaptation", "agreement_after_bn_recalibration"} <= row.keys()
    assert card["levels"][-1]["agreement"] == 1.0
    assert not out.with_name("adapted.pt.ckpt").exists()
    # the adapted file loads like any gesture model
    from tnn_ros.models import load_gesture

    assert load_gesture(str(out)).num_levels == 4


@pytest.mark.parametrize("full_level", ["keep", "adapt"])
def test_adapt_all_weights_keeps_the_full_level_unless_told(small_model, tmp_path, capsys, full_level):
    """--trainable all moves the shared conv weights. With --full-level keep (default) the top level
    reads its own frozen copy: the file's full level computes exactly what the input's does, the
    lower levels read changed weights, and the file loads with that layout. --full-level adapt
    shares one set, so the full level moves too."""
    from tnn_ros.models import load_gesture
    from tnn_ros.throttle import gated_ops

    _write_images(tmp_path / "frames", 24, size=(48, 40))
    out = tmp_path / "adapted.pt"
    argv = [str(small_model), "--frames", str(tmp_path / "frames"), "-o", str(out), "--steps", "3"]
    argv += ["--batch-size", "2", "--trainable", "all", "--lr", "1e-3", "--latency-repeats", "1"]
    code, _, err = _adapt([*argv, "--full-level", full_level], capsys)
    assert code == 0, err
    before, after = load_gesture(str(small_model)), load_gesture(str(out))
    clip = torch.randn(1, 3, 4, 32, 32, generator=torch.Generator().manual_seed(1))
    moved = [not torch.equal(a.weight, b.weight) for a, b in zip(gated_ops(before), gated_ops(after))]
    assert any(moved)  # the shared weights were trained
    card = json.loads(out.with_name("adapted.card.json").read_text())
    with torch.no_grad():
        before.set_level(3)
        after.set_level(3)
        full_before, full_after = before(clip), after(clip)
        before.set_level(0)
        after.set_level(0)
        assert not torch.equal(before(clip), after(clip))
    if full_level == "keep":
        assert card["architecture"]["top_level_weights"] == "own"
        assert all(op.has_top_level_weights for op in gated_ops(after))
        assert torch.equal(full_before, full_after)
        assert card["adaptation"]["full_level_max_abs_diff_vs_teacher"] == 0.0
    else:
        assert "top_level_weights" not in card["architecture"]
        assert not any(op.has_top_level_weights for op in gated_ops(after))
        assert not torch.equal(full_before, full_after)
        assert card["adaptation"]["full_level_max_abs_diff_vs_teacher"] > 0.0


def test_adapt_resumes_from_its_checkpoint(small_model, tmp_path, capsys, monkeypatch):
    import tnn_ros.train.adapt as adapt

    _write_images(tmp_path / "frames", 24, size=(48, 40))
    out = tmp_path / "adapted.pt"
    argv = [
        str(small_model),
        "--frames",
        str(tmp_path / "frames"),
        "-o",
        str(out),
        "--steps",
        "4",
        "--batch-size",
        "2",
        "--checkpoint-every",
        "2",
        "--latency-repeats",
        "1",
        "--trainable",
        "all",
    ]
    real_loss, calls = adapt.distill_loss, {"n": 0}

    def failing_loss(*a):
        calls["n"] += 1
        if calls["n"] > 5:  # 2 levels (lowest, a random lower one) a step: dies in step 3, after checkpoint 2
            raise KeyboardInterrupt
        return real_loss(*a)

    monkeypatch.setattr(adapt, "distill_loss", failing_loss)
    with pytest.raises(KeyboardInterrupt):
        _adapt(argv, capsys)
    assert out.with_name("adapted.pt.ckpt").is_file() and not out.exists()
    monkeypatch.setattr(adapt, "distill_loss", real_loss)
    code, stdout, err = _adapt([*argv, "--resume"], capsys)
    assert code == 0, err
    assert "at step 2" in stdout
    card = json.loads(out.with_name("adapted.card.json").read_text())
    assert len(card["levels"][0]) > 0 and card["levels"][0]["agreement_before_adaptation"] is not None


def test_adapt_bad_inputs_exit_2_without_files(small_model, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    string_bag = _write_bag(tmp_path / "bag", None)
    native = tmp_path / "native.pt"
    torch.save({}, native)
    native_card = {"name": "x", "architecture": {}, "classes": []}
    native.with_name("native.card.json").write_text(json.dumps(native_card))
    before = sorted(p.name for p in tmp_path.iterdir())
    for argv, message in [
        ([str(small_model), "--frames", str(tmp_path / "empty")], "no image files"),
        ([str(small_model), "--frames", str(string_bag)], "no sensor_msgs/msg/Image topic"),
        ([str(native), "--frames", str(tmp_path / "empty")], "not a converted torchvision model"),
    ]:
        code, _, err = _adapt([*argv, "-o", str(tmp_path / "out.pt")], capsys)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_bench_throttle_accepts_a_converted_model_file(small_model, tmp_path, capsys):
    from tnn_ros.bench.throttle_bench import main

    out = tmp_path / "bench.json"
    assert (
        main(
            [
                "--model",
                str(small_model),
                "--quick",
                "--repeats",
                "1",
                "--threads",
                "1",
                "--eval-images",
                "2",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    macs = [row["macs"] for row in result["levels"]]
    assert len(macs) == 4 and macs == sorted(set(macs))
    assert result["levels"][-1]["accuracy"] == 1.0
    assert "mc3_18" in result["reference"]["name"]
