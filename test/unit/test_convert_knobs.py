"""Input resolution and clip length / frame stride as knobs of converted models (issue 8, item 1).

Random-init torchvision networks on small inputs. Expectations come from the untouched torchvision
original run at the same resolution / on the same frames (the naive knob, a reference
implementation), from PyTorch's own FLOP counter (``torch.utils.flop_counter``, independent of the
repo's hook-based MAC counter), from brute-force dominance checks of the measured table and from
hand-written cases.
"""

from __future__ import annotations

import copy
import itertools
import json
import random

import numpy as np
import pytest
import torch
from cli_utils import run_train_cli
from torch.utils.flop_counter import FlopCounterMode

from tnn_ros.models.converted import convert
from tnn_ros.models.io import save_model
from tnn_ros.throttle import count_macs
from tnn_ros.throttle.convert import newest_frame_indices, pareto_front, thin_front

SSD = "ssdlite320_mobilenet_v3_large"
FRCNN = "fasterrcnn_mobilenet_v3_large_320_fpn"
_CACHE: dict[str, tuple] = {}


def _converted(arch: str):
    """(converted, original) with 4 width levels, converted once per session; plain levels on return."""
    if arch not in _CACHE:
        if arch.startswith(("r3d", "mc3", "r2plus1d")):
            model, original, _ = convert(
                arch,
                seed=0,
                options=_options(4),
                architecture={"clip_length": 8, "frame_size": [32, 32]},
                example=torch.zeros(2, 3, 8, 32, 32),
            )
        else:
            model, original, _ = convert(
                arch, seed=0, options=_options(4), example=torch.zeros(2, 3, 96, 128)
            )
        _CACHE[arch] = (model, original)
    model, original = _CACHE[arch]
    model.set_knob_levels(None)
    return model, original


def _options(levels: int):
    from tnn_ros.throttle.convert import ConvertOptions

    return ConvertOptions(num_levels=levels)


def _naive_resolution(original, resolution: int):
    """The original torchvision detector resizing its input to ``resolution`` (the naive knob)."""
    net = copy.deepcopy(original)
    transform = net.transform
    scale = resolution / min(transform.fixed_size or transform.min_size)
    transform.min_size = tuple(round(v * scale) for v in transform.min_size)
    transform.max_size = round(transform.max_size * scale)
    if transform.fixed_size is not None:
        transform.fixed_size = tuple(round(v * scale) for v in transform.fixed_size)
    return net


def _torch_macs(run) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        run()
    return counter.get_total_flops() // 2  # PyTorch counts a multiply-accumulate as 2 FLOPs


# --- selection helpers ------------------------------------------------------------------------------


def _dominated(i: int, costs, qualities) -> bool:
    return any(
        costs[j] <= costs[i]
        and qualities[j] >= qualities[i]
        and (costs[j] < costs[i] or qualities[j] > qualities[i])
        for j in range(len(costs))
    )


def test_pareto_front_is_exactly_the_non_dominated_points():
    rng = random.Random(0)
    for _ in range(200):
        n = rng.randrange(1, 12)
        costs = [rng.choice([1.0, 2.0, 3.0, 4.0, 5.0]) for _ in range(n)]
        qualities = [rng.choice([0.0, 0.25, 0.5, 1.0]) for _ in range(n)]
        front = pareto_front(costs, qualities)
        expected = {i for i in range(n) if not _dominated(i, costs, qualities)}
        # Of points equal in both coordinates exactly one is kept.
        assert {(costs[i], qualities[i]) for i in front} == {(costs[i], qualities[i]) for i in expected}
        assert len(front) == len({(costs[i], qualities[i]) for i in front})
        assert [costs[i] for i in front] == sorted(costs[i] for i in front)


def test_pareto_front_hand_case_and_nan():
    #            0    1    2    3    4
    costs = [10.0, 20.0, 15.0, 30.0, 5.0]
    quality = [0.5, 0.9, 0.4, 0.9, float("nan")]
    # 2 is beaten by 0 (cheaper, better), 3 by 1 (same quality, cheaper); NaN quality is worst.
    assert pareto_front(costs, quality) == [4, 0, 1]
    assert pareto_front([1.0, 2.0], [float("nan"), float("nan")]) == [0]


def test_thin_front_keeps_ends_and_spreads_in_cost():
    assert thin_front([1, 2, 3], 5) == [0, 1, 2]
    assert thin_front([0, 1, 2, 10, 11, 20], 3) == [0, 3, 5]  # middle target 10
    with pytest.raises(ValueError):
        thin_front([1, 2, 3], 1)


def test_newest_frame_indices():
    assert newest_frame_indices(16, 16, 1) == list(range(16))
    assert newest_frame_indices(16, 8, 1) == list(range(8, 16))
    assert newest_frame_indices(16, 8, 2) == [1, 3, 5, 7, 9, 11, 13, 15]
    assert newest_frame_indices(8, 3, 3) == [1, 4, 7]
    with pytest.raises(ValueError, match="span 17"):
        newest_frame_indices(16, 9, 2)


# --- detectors: resolution --------------------------------------------------------------------------


@pytest.mark.parametrize("arch", [SSD, FRCNN])
def test_resolution_levels_equal_the_original_at_that_resolution_and_count_its_macs(arch):
    model, original = _converted(arch)
    full = model.full_resolution
    top = model.width_levels - 1
    model.set_knob_levels(
        [
            {"width_level": 0, "resolution": 160},
            {"width_level": top, "resolution": 224},
            {"width_level": top, "resolution": full},
        ]
    )
    x = torch.rand(1, 3, 96, 128, generator=torch.Generator().manual_seed(1))
    macs = count_macs(model, x) if arch == SSD else None
    for level, resolution in ((1, 224), (2, full)):
        model.set_level(level)
        reference = _naive_resolution(original, resolution)
        with torch.no_grad():
            got, want = model(x)[0], reference(list(x))[0]
        assert got["boxes"].shape == want["boxes"].shape
        assert torch.allclose(got["boxes"], want["boxes"], atol=1e-3)
        assert torch.allclose(got["scores"], want["scores"], atol=1e-4)
        if macs is not None:  # Faster R-CNN's box head cost depends on the proposals that survive
            assert macs[level] == _torch_macs(lambda r=reference: r(list(x)))
    if macs is not None:
        model.set_level(0)
        assert macs[0] == _torch_macs(lambda: model(x))
        assert macs[0] < macs[1] < macs[2]
        # Resolution alone: (224/320)^2 of the full resolution's work, up to the SSD extras' rounding.
        assert 0.4 < macs[1] / macs[2] < 0.55
    model.set_level(0)
    with torch.no_grad():
        boxes = model(x)[0]["boxes"]
    assert (boxes[:, 2] <= 128 + 1e-3).all() and (boxes[:, 3] <= 96 + 1e-3).all()  # input pixels


def test_knob_levels_are_checked():
    model, _ = _converted(SSD)
    with pytest.raises(ValueError, match="top knob level must be the original"):
        model.set_knob_levels([{"width_level": 0, "resolution": 160}])
    with pytest.raises(ValueError, match="resolution 400"):
        model.set_knob_levels([{"width_level": 0, "resolution": 400}, {"width_level": 3, "resolution": 320}])
    with pytest.raises(ValueError, match="width_level 9"):
        model.set_knob_levels([{"width_level": 9, "resolution": 200}, {"width_level": 3, "resolution": 320}])
    with pytest.raises(ValueError, match="expected the keys"):
        model.set_knob_levels([{"width_level": 3, "clip_length": 8}])
    video, _ = _converted("r3d_18")
    with pytest.raises(ValueError, match="span"):
        video.set_knob_levels(
            [{"width_level": 0, "clip_length": 8, "frame_stride": 2}, video.knobs_of(video.num_levels - 1)]
        )


# --- video: clip length / frame stride --------------------------------------------------------------


def test_clip_levels_run_the_original_on_the_newest_frames_only():
    model, original = _converted("r3d_18")
    top = model.width_levels - 1
    model.set_knob_levels(
        [
            {"width_level": 0, "clip_length": 2, "frame_stride": 1},
            {"width_level": top, "clip_length": 4, "frame_stride": 2},
            {"width_level": top, "clip_length": 8, "frame_stride": 1},
        ]
    )
    assert model.clip_length == 8  # what a caller buffers stays the original's clip
    x = torch.randn(2, 3, 8, 32, 32, generator=torch.Generator().manual_seed(2))
    macs = count_macs(model, model.example_input())
    with torch.no_grad():
        model.set_level(1)
        assert torch.allclose(model(x), original(x[:, :, [1, 3, 5, 7]]), atol=1e-4)
        model.set_level(2)
        assert torch.allclose(model(x), original(x), atol=1e-4)
    example = model.example_input()
    assert macs[1] == _torch_macs(lambda: original(example[:, :, [1, 3, 5, 7]]))
    assert macs[2] == _torch_macs(lambda: original(example))
    model.set_level(0)
    assert macs[0] == _torch_macs(lambda: model(example))
    assert macs[0] < macs[1] < macs[2]


def test_gesture_recognizer_runs_every_clip_level(tmp_path):
    from tnn_ros.models import load_gesture
    from tnn_ros.models.gesture_recognizer import GestureRecognizer

    model, _ = _converted("r3d_18")
    top = model.width_levels - 1
    knobs = [
        {"width_level": 0, "clip_length": 2, "frame_stride": 3},
        {"width_level": 1, "clip_length": 4, "frame_stride": 1},
        {"width_level": top, "clip_length": 8, "frame_stride": 1},
    ]
    model.set_knob_levels(knobs)
    path = tmp_path / "video.pt"
    save_model(model, path, {"name": "video", "architecture": model.architecture, "classes": model.classes})
    loaded = load_gesture(str(path))
    assert loaded.num_levels == 3 and [loaded.knobs_of(k) for k in range(3)] == knobs
    recognizer = GestureRecognizer(loaded, stride=1, smoothing=1)
    frames = np.random.default_rng(0).integers(0, 255, (12, 40, 48, 3), dtype=np.uint8)
    for level in range(3):
        loaded.set_level(level)
        recognizer.reset()
        results = [recognizer.push(f) for f in frames]
        assert results[6] is None and results[7] is not None  # buffers the full clip at every level
        model.set_level(level)
        clip = model.preprocess(model.frames_to_clip(list(frames[-8:])))
        with torch.no_grad():
            expected = torch.softmax(model(clip)[0], 0)
        got = np.array([results[-1].probabilities[c] for c in loaded.labels])
        assert np.allclose(got, expected.numpy(), atol=1e-5)


# --- the CLI: measured Pareto set -------------------------------------------------------------------


VIDEO_ARGV = [
    "convert",
    "--arch",
    "r3d_18",
    "--random-init",
    "--clip-length",
    "4",
    "--frame-size",
    "32",
    "32",
    "--num-levels",
    "3",
    "--eval-count",
    "6",
    "--latency-repeats",
    "1",
]


def test_cli_levels_are_the_pareto_set_of_the_measured_candidates(tmp_path, capsys):
    from tnn_ros.models import load_gesture

    out = tmp_path / "r3d.pt"
    code, stdout, err = run_train_cli(
        VIDEO_ARGV + ["-o", str(out), "--clip-lengths", "2", "--frame-strides", "1,2"], capsys
    )
    assert code == 0, err
    card = json.loads((tmp_path / "r3d.card.json").read_text())
    candidates = card["knobs"]["candidates"]
    # 3 width levels x {4x1, 2x1, 2x2} (4 frames at stride 2 do not fit into a 4-frame clip).
    configs = {(c["width_level"], c["clip_length"], c["frame_stride"]) for c in candidates}
    assert configs == set(itertools.product(range(3), [4, 2], [1, 2])) - {(k, 4, 2) for k in range(3)}
    full = candidates[-1]
    assert (full["width_level"], full["clip_length"], full["frame_stride"]) == (2, 4, 1)
    assert full["agreement"] == 1.0
    levels = card["levels"]
    assert _is_pareto_selection(candidates, levels, "latency_ms")
    assert [r["level"] for r in levels] == list(range(len(levels)))
    assert levels[-1]["clip_length"] == 4 and levels[-1]["mac_ratio"] == 1.0
    assert sum(c["chosen"] for c in candidates) == len(levels)
    # The same table selected by MACs (the --select-by macs rule), checked the same way.
    from tnn_ros.train.convert import select_knob_levels

    for cost in ("macs", "cpu_ms"):
        selected = [candidates[i] for i in select_knob_levels(candidates, cost, None)]
        assert _is_pareto_selection(candidates, selected, cost)
    # MACs of a clip level: the loaded model's forward counted by PyTorch's own counter.
    model = load_gesture(str(out))
    assert model.num_levels == len(levels)
    example = model.example_input()
    for level, row in enumerate(levels):
        assert model.knobs_of(level) == {k: row[k] for k in ("width_level", "clip_length", "frame_stride")}
        model.set_level(level)
        assert row["macs"] == _torch_macs(lambda: model(example))
    assert "w2 (1.00) 4x1" in stdout


def _is_pareto_selection(candidates: list[dict], levels: list[dict], cost: str) -> bool:
    """Brute force: levels = the full candidate on top of every non-dominated cheaper one, by cost."""
    full = candidates[-1]
    cheaper = [c for c in candidates[:-1] if c[cost] < full[cost]]
    costs = [c[cost] for c in cheaper]
    quality = [c["agreement"] for c in cheaper]
    optimal = {(c[cost], c["agreement"]) for i, c in enumerate(cheaper) if not _dominated(i, costs, quality)}
    below = levels[:-1]
    knobs = ("width_level", "clip_length", "frame_stride")
    return (
        [levels[-1][k] for k in knobs] == [full[k] for k in knobs]
        and {(r[cost], r["agreement"]) for r in below} == optimal
        and len(below) == len(optimal)
        and [r[cost] for r in below] == sorted(r[cost] for r in below)
        and all(a["agreement"] < b["agreement"] for a, b in zip(below, below[1:]))
    )


def test_cli_select_by_macs_with_max_levels(tmp_path, capsys):
    out = tmp_path / "r3d.pt"
    code, _, err = run_train_cli(
        VIDEO_ARGV + ["-o", str(out), "--clip-lengths", "2,1", "--select-by", "macs", "--max-levels", "2"],
        capsys,
    )
    assert code == 0, err
    card = json.loads((tmp_path / "r3d.card.json").read_text())
    cheapest = min(c["macs"] for c in card["knobs"]["candidates"])
    assert len(card["levels"]) == 2 and card["levels"][0]["macs"] == cheapest
    assert card["levels"][1]["mac_ratio"] == 1.0


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--resolutions", "256"], "--resolutions is for detectors"),
        (["--clip-lengths", "9"], "clip length 9 exceeds the clip"),
        (["--clip-lengths", "2", "--max-levels", "1"], "--max-levels must be >= 2"),
        (["--clip-lengths", "2,x"], "comma-separated integers"),
    ],
)
def test_cli_bad_knobs_exit_2_without_output(extra, message, tmp_path, capsys):
    out = tmp_path / "bad.pt"
    with pytest.raises(SystemExit) if "x" in extra[-1] else _no_raise():
        code, _, err = run_train_cli(VIDEO_ARGV + ["-o", str(out), *extra], capsys)
        assert code == 2 and message in err
    if "x" in extra[-1]:
        assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


class _no_raise:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# --- adapt keeps (or re-selects) the knob levels -----------------------------------------------------


def test_adapt_works_on_width_levels_and_keeps_or_reselects_the_knob_levels(tmp_path, capsys):
    import cv2

    from tnn_ros.models import load_gesture

    converted = tmp_path / "mc3.pt"
    argv = ["convert", "--arch", "mc3_18", *VIDEO_ARGV[3:], "-o", str(converted)]
    code, _, err = run_train_cli(argv + ["--clip-lengths", "2", "--select-by", "macs"], capsys)
    assert code == 0, err
    knob_levels = json.loads((tmp_path / "mc3.card.json").read_text())["architecture"]["knob_levels"]
    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(0)
    for i in range(24):
        cv2.imwrite(str(frames / f"{i:04d}.png"), rng.integers(0, 255, (40, 48, 3), dtype=np.uint8))
    common = ["--frames", str(frames), "--steps", "2", "--batch-size", "2", "--holdout", "0.34"]
    common += ["--latency-repeats", "1"]
    kept, reselected = tmp_path / "kept.pt", tmp_path / "reselected.pt"
    code, _, err = run_train_cli(["adapt", str(converted), "-o", str(kept), *common], capsys)
    assert code == 0, err
    card = json.loads((tmp_path / "kept.card.json").read_text())
    assert card["architecture"]["knob_levels"] == knob_levels
    assert len(card["levels"]) == len(knob_levels) and card["levels"][-1]["agreement"] == 1.0
    assert [r["width_level"] for r in card["adaptation"]["width_levels"]] == [0, 1, 2]
    before, after = load_gesture(str(converted)), load_gesture(str(kept))
    clip = torch.randn(1, 3, 4, 32, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert torch.equal(before(clip), after(clip))  # top level: the original, untouched
    code, _, err = run_train_cli(
        [
            "adapt",
            str(converted),
            "-o",
            str(reselected),
            *common,
            "--clip-lengths",
            "2,1",
            "--select-by",
            "macs",
        ],
        capsys,
    )
    assert code == 0, err
    card = json.loads((tmp_path / "reselected.card.json").read_text())
    assert {c["clip_length"] for c in card["knobs"]["candidates"]} == {1, 2, 4}
    assert _is_pareto_selection(card["knobs"]["candidates"], card["levels"], "macs")
    assert load_gesture(str(reselected)).num_levels == len(card["levels"])


def test_perception_pipeline_loads_knob_level_files(tmp_path):
    """The node's loader runs detector and video net files whose levels carry resolution / clip knobs."""
    from tnn_ros.perception.loading import load_models

    detector, _ = _converted(SSD)
    detector.set_knob_levels(
        [{"width_level": 0, "resolution": 128}, {"width_level": 2, "resolution": 224}, detector.knobs_of(3)]
    )
    video, _ = _converted("r3d_18")
    video.set_knob_levels([{"width_level": 1, "clip_length": 2, "frame_stride": 2}, video.knobs_of(3)])
    paths = {}
    for name, model in (("det", detector), ("vid", video)):
        paths[name] = tmp_path / f"{name}.pt"
        save_model(
            model, paths[name], {"name": name, "architecture": model.architecture, "classes": model.classes}
        )
    pipeline = load_models(str(paths["det"]), str(paths["vid"]), stride=1, smoothing=1)
    assert pipeline.detector.num_levels == 3 and pipeline.gesture_recognizer.net.num_levels == 2
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (10, 120, 160, 3), dtype=np.uint8)
    results = [pipeline.process(frame, 0.34, 0.0) for frame in frames]
    assert {r.level for r in results} == {0}  # u 0.34 of 3 levels: level 0 (128 px, width level 0)
    assert all(d.label in detector.classes for r in results for d in r.detections)
    gestures = [r.gesture for r in results if r.gesture is not None]
    assert gestures and all(g.label in video.classes for g in gestures)
    with torch.no_grad():
        detector.set_level(0)
        expected = detector.predict(frames[-1], score_threshold=0.0)
    assert [(d.label, d.box) for d in results[-1].detections] == [(d.label, d.box) for d in expected]
