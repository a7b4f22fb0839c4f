"""The onnxruntime gesture stream (one stream-step graph per level) against the torch clip model."""

import sys

import numpy as np
import pytest
import torch
from model_utils import randomize_batchnorm

from tnn_ros.engines import create_engine
from tnn_ros.models import save_model
from tnn_ros.models.gesture import ThrottleableGestureNet
from tnn_ros.models.gesture_recognizer import GestureRecognizer

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

# temporal="valid" (streamable): kernels 3,3,3,3,1,1 / pools 2,2,1,1 over 16 frames, as the shipped net
SMALL = {
    "temporal": "valid",
    "clip_length": 16,
    "frame_size": [24, 20],
    "num_levels": 3,
    "conv1": 8,
    "stages": [[16], [16, 16], [24], [24]],
    "fc": [32, 32],
    "min_fraction": 0.5,
}
CLASSES = ["no_gesture", "swipe_left", "push"]
TOLERANCE = 1e-4


def _net(seed: int = 0, arch: dict = SMALL) -> ThrottleableGestureNet:
    torch.manual_seed(seed)
    return randomize_batchnorm(ThrottleableGestureNet(CLASSES, arch))


def _save(net, path):
    save_model(net, path, {"name": "gesture", "architecture": net.architecture, "classes": net.classes})
    return path


def _frames(count: int, seed: int = 0, size=(24, 20)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, size[1], size[0], 3), dtype=np.uint8)


def _clip_logits(net, frames: np.ndarray, level: int) -> torch.Tensor:
    """The reference: the torch clip model (C3D forward over the whole clip) at ``level``."""
    previous = net.level
    net.set_level(level)
    with torch.no_grad():
        logits = net(net.preprocess(torch.from_numpy(frames)[None]))[0]
    net.set_level(previous)
    return logits


@pytest.fixture(scope="module")
def net_on_ort(tmp_path_factory):
    """(torch net, onnxruntime facade, stream sessions) of one small net, exported once."""
    net = _net()
    path = _save(net, tmp_path_factory.mktemp("stream") / "gesture.pt")
    facade = create_engine(net, "onnxruntime", model_path=path)
    facade.engine.gesture_stream(net)
    return net, facade


def _check_stream(net, stream, frames, levels):
    """Push ``frames`` at ``levels``; every result must equal the clip model on the last 16 frames."""
    length = net.clip_length
    compared = 0
    for i, (frame, level) in enumerate(zip(frames, levels)):
        out = stream.push(frame, level=level)
        if i < length - 1:
            assert out is None
            continue
        torch.testing.assert_close(
            out, _clip_logits(net, frames[i - length + 1 : i + 1], level), atol=TOLERANCE, rtol=TOLERANCE
        )
        compared += 1
    return compared


@pytest.mark.parametrize("level", [0, 2])  # lowest and full
def test_every_frame_equals_the_clip_model(net_on_ort, level):
    net, facade = net_on_ort
    stream = facade.engine.gesture_stream(net)
    assert type(stream).__name__ == "OrtGestureStream"
    frames = _frames(24, seed=level)
    assert _check_stream(net, stream, frames, [level] * len(frames)) == 24 - 15
    assert stream.replays == 0


def test_level_changes_and_reset(net_on_ort):
    net, facade = net_on_ort
    stream = facade.engine.gesture_stream(net)
    frames = _frames(40, seed=7)
    # a change before the clip is full (replayed step by step), then changes with a full clip (prime graph)
    levels = [2] * 5 + [1] * 13 + [0] * 5 + [1] + [2] * 3 + [0] * 13
    assert _check_stream(net, stream, frames, levels) == 40 - 15
    assert stream.replays == 5
    stream.reset()  # forgets frames and histories: the next clip starts from scratch
    assert not stream.ready
    assert _check_stream(net, stream, np.ascontiguousarray(frames[::-1]), [0] * 20 + [2] * 20) == 40 - 15


def test_strided_conv1_levels_stream_the_clip_results(tmp_path):
    """conv1_stride_levels: level 0 runs conv1 at stride 2 without pool1 (odd frame size: ceil)."""
    net = _net(arch={**SMALL, "frame_size": [23, 19], "conv1_stride_levels": 1})
    facade = create_engine(net, "onnxruntime", model_path=_save(net, tmp_path / "gesture.pt"))
    stream = facade.engine.gesture_stream(net)
    assert type(stream).__name__ == "OrtGestureStream"
    frames = _frames(44, seed=3, size=(23, 19))
    levels = [0] * 20 + [2] * 12 + [0] * 12  # steps at both, primes into both
    assert _check_stream(net, stream, frames, levels) == 44 - 15
    assert stream.replays == 2


WIDE_STAGES = [[32], [32, 32], [32], [32]]  # SMALL's stages, wide enough for the width options


def test_blocked_widths_stream_the_clip_results(tmp_path):
    """channel_multiple 16: the gated widths are 16 / 32 / 32 at levels 0-2 (the shipped net's kind)."""
    net = _net(arch={**SMALL, "stages": WIDE_STAGES, "channel_multiple": 16})
    assert net.convs[0].out_widths == [16, 32, 32]
    facade = create_engine(net, "onnxruntime", model_path=_save(net, tmp_path / "gesture.pt"))
    stream = facade.engine.gesture_stream(net)
    frames = _frames(36, seed=5)
    assert _check_stream(net, stream, frames, [0] * 24 + [1] * 12) == 36 - 15


def test_cheap_lowest_level_streams_the_clip_results(tmp_path):
    """lowest_fraction + conv1_stride_levels 1: level 0 narrower and strided, the others as they were."""
    net = _net(arch={**SMALL, "stages": WIDE_STAGES, "lowest_fraction": 0.25, "conv1_stride_levels": 1})
    assert net.convs[0].out_widths == [8, 24, 32] and net.conv1_strided(0) and not net.conv1_strided(1)
    facade = create_engine(net, "onnxruntime", model_path=_save(net, tmp_path / "gesture.pt"))
    stream = facade.engine.gesture_stream(net)
    frames = _frames(40, seed=6)
    assert _check_stream(net, stream, frames, [0] * 20 + [1] * 12 + [0] * 8) == 40 - 15


def test_frames_without_a_result_run_only_the_trunk(net_on_ort):
    net, facade = net_on_ort
    stream = facade.engine.gesture_stream(net)
    frames = _frames(30, seed=9)
    for i, frame in enumerate(frames):
        wanted = i % 5 == 4
        out = stream.push(frame, level=1, result=wanted)
        if not wanted or i < 15:
            assert out is None
        else:  # the histories kept up although the head did not run on the frames in between
            torch.testing.assert_close(
                out, _clip_logits(net, frames[i - 15 : i + 1], 1), atol=1e-4, rtol=1e-4
            )


@pytest.mark.parametrize("level", [0, 2])
def test_step_trunk_and_prime_graphs_equal_the_clip_model(net_on_ort, level):
    """The three graphs of a level, run directly: prime and step logits are the clip model's, the
    fused step graph's entries are the trunk graph's, and the step after a prime continues it."""
    net, facade = net_on_ort
    sessions = facade.engine._stream_sessions
    signature = sessions.signatures[level]
    frames = _frames(17, seed=20 + level)
    stream = facade.engine.gesture_stream(net)
    pixels = np.concatenate([stream.preprocess_frame(frame) for frame in frames])  # (17, H, W, 3)

    prime = sessions.primes[level].run(signature.prime_output_names, {"frames": pixels[:16]})
    torch.testing.assert_close(
        torch.from_numpy(prime[0][0]), _clip_logits(net, frames[:16], level), atol=TOLERANCE, rtol=TOLERANCE
    )
    # the step on frame 17 reads single positions of the histories the prime left
    histories = dict(zip(signature.entry_layers, prime[1:]))
    histories[0] = pixels[16 - signature.history_shapes[0][0] : 16]  # conv1 remembers frames
    feed = {"frame": pixels[16:17]}
    for layer, positions in zip(signature.history_layers, signature.tap_positions):
        feed.update((f"tap{layer}_{p}", histories[layer][p : p + 1]) for p in positions)
    logits, *entries = sessions.steps[level].run(None, feed)
    torch.testing.assert_close(
        torch.from_numpy(logits[0]), _clip_logits(net, frames[1:17], level), atol=TOLERANCE, rtol=TOLERANCE
    )
    trunk_feed = {name: feed[name] for name in signature.trunk_input_names}
    trunk_entries = sessions.trunks[level].run(signature.entry_names, trunk_feed)
    assert len(trunk_entries) == len(entries) == len(signature.entry_layers)
    for a, b in zip(trunk_entries, entries):
        np.testing.assert_allclose(a, b, atol=1e-5)
    # the entries are the newest positions of the histories a prime over frames 2..17 leaves
    later = sessions.primes[level].run(signature.prime_output_names, {"frames": pixels[1:17]})
    for entry, history in zip(entries, later[1:]):
        np.testing.assert_allclose(entry[0], history[-1], atol=TOLERANCE)


def test_histories_hold_only_the_levels_channels(net_on_ort):
    net, facade = net_on_ort
    signatures = facade.engine._stream_sessions.signatures
    lowest, full = signatures[0], signatures[-1]
    assert lowest.history_layers == full.history_layers
    assert lowest.history_shapes[0] == full.history_shapes[0] == (2, 20, 24, 3)  # conv1: RGB frames
    # a gated layer's history is narrower at the lowest level
    assert any(lo[1] < hi[1] for lo, hi in zip(lowest.history_shapes[1:], full.history_shapes[1:]))


def test_torch_tensor_frames_as_the_torch_stream_takes_them(net_on_ort):
    from tnn_ros.models.gesture_streaming import StreamingGestureNet

    net, facade = net_on_ort
    ort_stream, torch_stream = facade.engine.gesture_stream(net), StreamingGestureNet(net)
    for frame in _frames(17, seed=3):
        tensor = torch_stream.preprocess_frame(frame)
        a, b = ort_stream.push_tensor(tensor, level=1), torch_stream.push_tensor(tensor, level=1)
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, atol=TOLERANCE, rtol=TOLERANCE)
    with pytest.raises(ValueError):
        ort_stream.push_tensor(torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError):
        ort_stream.push(np.zeros((5, 5), np.uint8))


TWO_LEVELS = {**SMALL, "num_levels": 2}  # fewer exports: this test builds every graph three times


def test_stale_and_corrupt_stream_graphs_are_rebuilt(tmp_path):
    path = _save(_net(0, TWO_LEVELS), tmp_path / "gesture.pt")
    net = _net(0, TWO_LEVELS)
    first = create_engine(net, "onnxruntime", model_path=path)
    first.engine.gesture_stream(net)
    sessions = first.engine._stream_sessions
    assert sessions.cache_events == {"miss": 6}  # trunk, step and prime of 2 levels
    assert all(p.parent == tmp_path / ".tnn_engines" / "gesture" for p in sessions.graph_paths)
    names = sorted(p.name.split("_")[0] for p in sessions.graph_paths)
    assert names == ["stream"] * 2 + ["streamprime"] * 2 + ["streamstep"] * 2
    second = create_engine(net, "onnxruntime", model_path=path)
    second.engine.gesture_stream(net)
    assert second.engine._stream_sessions.cache_events == {"hit": 6}

    # The model file changes: the stream graphs are stale by hash and rebuilt from the new weights.
    retrained = _net(1, TWO_LEVELS)
    _save(retrained, path)
    lines = []
    third = create_engine(retrained, "onnxruntime", model_path=path, log=lines.append)
    stream = third.engine.gesture_stream(retrained)
    assert third.engine._stream_sessions.cache_events == {"rebuilt": 6}
    stream_lines = [line for line in lines if "/stream" in line]
    assert len(stream_lines) == 6 and all("stale" in line for line in stream_lines)
    frames = _frames(17, seed=5)
    assert _check_stream(retrained, stream, frames, [1] * 17) == 2

    # Damaged bytes on disk: detected by the manifest's hash and rebuilt.
    graph = third.engine._stream_sessions.graph_paths[0]
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF
    graph.write_bytes(bytes(data))
    lines.clear()
    fourth = create_engine(retrained, "onnxruntime", model_path=path, log=lines.append)
    stream = fourth.engine.gesture_stream(retrained)
    assert fourth.engine._stream_sessions.cache_events == {"hit": 5, "rebuilt": 1}
    assert len(lines) == 1 and "corrupt" in lines[0] and "stream_level0" in lines[0]
    assert _check_stream(retrained, stream, frames, [0] * 17) == 2


def test_stream_graphs_of_an_older_form_version_are_rebuilt(tmp_path):
    """Graphs cached by an older checkout (form version 3: trunk + head) are stale, not reused."""
    import json

    path = _save(_net(0, TWO_LEVELS), tmp_path / "gesture.pt")
    net = _net(0, TWO_LEVELS)
    create_engine(net, "onnxruntime", model_path=path).engine.gesture_stream(net)
    for manifest in (tmp_path / ".tnn_engines" / "gesture").glob("stream*.json"):
        content = json.loads(manifest.read_text())
        content["key"]["form_version"] = 3
        manifest.write_text(json.dumps(content))
    lines = []
    again = create_engine(net, "onnxruntime", model_path=path, log=lines.append)
    stream = again.engine.gesture_stream(net)
    assert again.engine._stream_sessions.cache_events == {"rebuilt": 6}
    assert sum("stale" in line for line in lines) == 6
    assert _check_stream(net, stream, _frames(17, seed=4), [1] * 17) == 2


# --- the recognizer on the onnxruntime stream ---------------------------------------------------------


def _recognizer_probabilities(recognizer, set_level, frames, levels):
    results = []
    for frame, level in zip(frames, levels):
        set_level(level)
        result = recognizer.push(frame)
        results.append(None if result is None else np.array(list(result.probabilities.values())))
    return results


def test_recognizer_streams_on_onnxruntime_with_the_clip_results(net_on_ort):
    net, facade = net_on_ort
    frames = _frames(36, seed=11)
    levels = [2] * 20 + [0] * 16  # a level change mid-stream
    streamed = GestureRecognizer(facade, stride=2, smoothing=1)
    assert streamed.streaming and streamed.stream_backend == "onnxruntime"
    # Reference: whole clips through the torch net, as the recognizer runs them without streaming.
    clipped = GestureRecognizer(net, stride=2, smoothing=1, streaming=False)
    assert clipped.stream_backend == "none"
    got = _recognizer_probabilities(streamed, facade.set_level, frames, levels)
    want = _recognizer_probabilities(clipped, net.set_level, frames, levels)
    assert [g is None for g in got] == [w is None for w in want]
    pairs = [(g, w) for g, w in zip(got, want) if w is not None]
    assert len(pairs) == (36 - 16) // 2 + 1
    for g, w in pairs:
        np.testing.assert_allclose(g, w, atol=TOLERANCE)


def test_stream_graphs_that_cannot_be_built_stream_on_torch(monkeypatch, tmp_path):
    from tnn_ros.engines import ort_stream

    net = _net(2)
    lines = []
    facade = create_engine(net, "onnxruntime", model_path=_save(net, tmp_path / "g.pt"), log=lines.append)

    def broken(*args, **kwargs):
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(ort_stream, "export_stream_step", broken)
    recognizer = GestureRecognizer(facade, stride=1, smoothing=1)
    assert recognizer.streaming and recognizer.stream_backend == "torch"
    assert "exporter exploded" in recognizer.stream_fallback_reason
    assert len(lines) == 1 and "streaming on torch" in lines[0] and "\n" not in lines[0]
    frames = _frames(16, seed=2)
    for frame in frames[:-1]:
        assert recognizer.push(frame) is None
    got = recognizer.push(frames[-1]).probabilities
    want = torch.softmax(_clip_logits(net, frames, facade.level), dim=0).numpy()
    np.testing.assert_allclose(list(got.values()), want, atol=TOLERANCE)


def test_missing_onnxruntime_streams_on_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` raises ImportError
    net = _net(3)
    lines = []
    facade = create_engine(net, "onnxruntime", log=lines.append)
    recognizer = GestureRecognizer(facade, stride=1, smoothing=1)
    assert facade.backend == "torch" and len(lines) == 1 and "onnxruntime is not installed" in lines[0]
    assert recognizer.streaming and recognizer.stream_backend == "torch"


def test_streaming_bench_section_times_both_backends(net_on_ort):
    from tnn_ros.bench.streaming_bench import measure_streaming_backends
    from tnn_ros.models.gesture_streaming import streaming_macs

    net, facade = net_on_ort
    section = measure_streaming_backends(net, facade, repeats=2)
    assert section["backend"] == "onnxruntime" and section["threads"] == 1
    for rows in (section["levels"], section["torch"]["levels"]):
        assert sorted(rows) == ["0", "2"]  # lowest and full
        for level, row in rows.items():
            assert row["per_frame_macs"] == streaming_macs(net, int(level))
            for key in ("per_frame_ms_median", "clip_ms_median", "ratio", "level_change_ms_median"):
                assert row[key] > 0
    row = section["levels"]["2"]
    assert row["trunk_only_ms_median"] > 0 and row["step_run_ms_median"] > 0


def test_perception_pipeline_streams_on_the_backend_parameter(tmp_path):
    """What the node's configure builds: the recognizer streams on onnxruntime; a rebuild reuses it."""
    from tnn_ros.models.detector import ThrottleableDetector
    from tnn_ros.perception.loading import load_models
    from tnn_ros.sim.scenes import CLASSES as DETECTOR_CLASSES

    torch.manual_seed(0)
    detector = ThrottleableDetector(
        list(DETECTOR_CLASSES),
        {"input_size": [96, 64], "num_levels": 4, "stem_channels": 16, "stage_channels": [16, 32, 64],
         "channel_multiple": 8, "neck_channels": 32, "block_min_levels": [[1], [0, 2], [0, 1]]},
    ).eval()  # fmt: skip
    detector_path = tmp_path / "detector.pt"
    save_model(
        detector,
        detector_path,
        {"name": "detector", "architecture": detector.architecture, "classes": detector.classes},
    )
    gesture_path = _save(_net(4, TWO_LEVELS), tmp_path / "gesture.pt")
    pipeline = load_models(str(detector_path), str(gesture_path), stride=2, backend="onnxruntime")
    recognizer = pipeline.gesture_recognizer
    assert recognizer.streaming and recognizer.stream_backend == "onnxruntime"
    sessions = recognizer.net.engine._stream_sessions
    pipeline.set_gesture_stride(3)  # a new recognizer around the same engine: same sessions
    assert pipeline.gesture_recognizer.stream_backend == "onnxruntime"
    assert pipeline.gesture_recognizer._stream.sessions is sessions
    pipeline.set_gesture_streaming(False)
    assert pipeline.gesture_recognizer.stream_backend == "none"
    on_torch = load_models(str(detector_path), str(gesture_path), stride=2, backend="torch")
    assert on_torch.gesture_recognizer.stream_backend == "torch"
