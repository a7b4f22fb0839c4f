"""Inference engines: onnxruntime per-level graphs == torch per level, graph cache, fallbacks."""

import sys

import numpy as np
import pytest
import torch

from tnn_ros.engines import BACKENDS, EngineError, create_engine
from tnn_ros.engines import graph_cache as graph_cache_module
from tnn_ros.models import save_model
from tnn_ros.models.detector import ThrottleableDetector
from tnn_ros.models.gesture import ThrottleableGestureNet
from tnn_ros.sim.scenes import CLASSES, render_scene
from tnn_ros.throttle import count_level_costs

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

DETECTOR = {
    "input_size": [96, 64],
    "num_levels": 4,
    "stem_channels": 16,
    "stage_channels": [16, 32, 64],
    "channel_multiple": 8,
    "neck_channels": 32,
    "block_min_levels": [[1], [0, 2], [0, 1]],
}
GESTURE = {
    "clip_length": 4,
    "frame_size": [12, 10],
    "num_levels": 4,
    "conv1": 8,
    "stages": [[16], [24]],
    "fc": [16],
    "min_fraction": 0.5,
}
GESTURE_CLASSES = ["no_gesture", "swipe_left", "push"]
TOLERANCE = 1e-4  # the bound on |onnxruntime - torch| per output element


def _random_bn(net):
    """Non-trivial BN statistics (set before eval() folds them), so folding errors would show."""
    for module in net.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return net.eval()


def tiny_detector(seed=0):
    torch.manual_seed(seed)
    return _random_bn(ThrottleableDetector(list(CLASSES), DETECTOR))


def tiny_gesture(seed=0):
    torch.manual_seed(seed)
    return _random_bn(ThrottleableGestureNet(GESTURE_CLASSES, GESTURE))


def _save(model, path, name):
    save_model(model, path, {"name": name, "architecture": model.architecture, "classes": model.classes})
    return path


@pytest.fixture(scope="module")
def detector_on_ort(tmp_path_factory):
    """(torch model, onnxruntime EngineModel) of one tiny detector, exported once for this module."""
    model = tiny_detector()
    path = _save(model, tmp_path_factory.mktemp("shared") / "detector.pt", "detector")
    return model, create_engine(model, "onnxruntime", model_path=path)


def _outputs(result):
    return result if isinstance(result, tuple) else (result,)


def _max_difference(model, engine, inputs):
    worst = 0.0
    for level in range(model.num_levels):
        model.set_level(level)
        engine.set_level(level)
        with torch.no_grad():
            expected = _outputs(model(inputs))
        got = _outputs(engine(inputs))
        assert [tuple(t.shape) for t in got] == [tuple(t.shape) for t in expected]
        worst = max(worst, max(float((a - b).abs().max()) for a, b in zip(got, expected)))
    return worst


def tiny_gesture_valid(seed=0):
    """The no-temporal-padding architecture the streaming recognizer runs (kernels 3 and 1, pools 2/1)."""
    torch.manual_seed(seed)
    architecture = {**GESTURE, "clip_length": 6, "temporal": "valid"}  # kernels 3, 3, 1; pools 2, 1
    return _random_bn(ThrottleableGestureNet(GESTURE_CLASSES, architecture))


def tiny_gesture_gated_conv1(seed=0):
    """The valid net with conv1 gated too: 2 channels at level 0, so fewer than 8 feed convs.0."""
    torch.manual_seed(seed)
    architecture = {**GESTURE, "clip_length": 6, "temporal": "valid", "conv1_min_width": 2}
    return _random_bn(ThrottleableGestureNet(GESTURE_CLASSES, architecture))


def tiny_gesture_strided_conv1(seed=0):
    """The valid net whose lowest 2 levels run conv1 at spatial stride 2 without pool1."""
    torch.manual_seed(seed)
    architecture = {**GESTURE, "clip_length": 6, "temporal": "valid", "conv1_stride_levels": 2}
    return _random_bn(ThrottleableGestureNet(GESTURE_CLASSES, architecture))


# The valid net with 32-wide gated layers: room for width options below level 1's 16 channels.
GESTURE_WIDE = {**GESTURE, "clip_length": 6, "temporal": "valid", "stages": [[32], [32]], "fc": [32]}


def tiny_gesture_blocked_widths(seed=0):
    """The valid net with gated widths in multiples of 16 (channel_multiple): 16 / 32 at levels 0-1."""
    torch.manual_seed(seed)
    return _random_bn(ThrottleableGestureNet(GESTURE_CLASSES, {**GESTURE_WIDE, "channel_multiple": 16}))


def tiny_gesture_cheap_lowest_level(seed=0):
    """The valid net whose level 0 alone is narrower (lowest_fraction) and runs conv1 at stride 2."""
    torch.manual_seed(seed)
    cheap = {"lowest_fraction": 0.125, "conv1_stride_levels": 1, "min_fraction": 0.5}
    return _random_bn(ThrottleableGestureNet(GESTURE_CLASSES, {**GESTURE_WIDE, **cheap}))


@pytest.mark.parametrize(
    "make, name",
    [
        (tiny_detector, "detector"),
        (tiny_gesture, "gesture"),
        (tiny_gesture_valid, "gesture"),
        (tiny_gesture_gated_conv1, "gesture"),
        (tiny_gesture_strided_conv1, "gesture"),
        (tiny_gesture_blocked_widths, "gesture"),
        (tiny_gesture_cheap_lowest_level, "gesture"),
    ],
)
def test_onnxruntime_matches_torch_at_every_level(tmp_path, make, name):
    model = make()
    engine = create_engine(model, "onnxruntime", model_path=_save(model, tmp_path / f"{name}.pt", name))
    assert engine.backend == "onnxruntime" and engine.provider.endswith("ExecutionProvider")
    assert engine.engine_info()["cache_events"] == {"miss": model.num_levels}
    inputs = torch.randn(model.example_input().shape, generator=torch.Generator().manual_seed(1))
    assert _max_difference(model, engine, inputs) <= TOLERANCE


def test_each_level_graph_holds_only_its_sliced_weights(detector_on_ort):
    """Lower levels are smaller graphs: the weights are sliced and skipped blocks are absent."""
    import onnx

    model, engine = detector_on_ort
    sizes = []
    for path in engine.engine.graph_paths:
        graph = onnx.load(str(path)).graph
        # Weights are initializers or Constant nodes (the caches are plain tensors, not parameters).
        tensors = [
            *graph.initializer,
            *(a.t for n in graph.node if n.op_type == "Constant" for a in n.attribute if a.name == "value"),
        ]
        sizes.append(sum(int(np.prod(t.dims)) for t in tensors))
        assert not any(node.op_type == "BatchNormalization" for node in graph.node)  # folded
    assert all(a < b for a, b in zip(sizes, sizes[1:]))
    # count_level_costs counts the weights + biases each level executes, from the executed shapes;
    # a graph holds exactly those plus a few shape constants (the upsampling, the pixel stem's reshape).
    costs = count_level_costs(model, model.example_input())
    for size, cost in zip(sizes, costs):
        assert cost.params <= size <= cost.params + 24


def test_detector_predict_is_the_same_on_both_backends(detector_on_ort):
    model, ort_engine = detector_on_ort
    torch_engine = create_engine(model, "torch")
    image = render_scene(np.random.default_rng(3), 150, 100)[0]
    for level in range(model.num_levels):
        torch_engine.set_level(level)
        ort_engine.set_level(level)
        a = torch_engine.predict(image, score_threshold=0.0)
        b = ort_engine.predict(image, score_threshold=0.0)
        assert len(a) == len(b) > 0
        for da, db in zip(a, b):
            assert da.class_id == db.class_id
            assert da.score == pytest.approx(db.score, abs=1e-4)
            assert da.box == pytest.approx(db.box, abs=1e-3)


def test_gesture_predict_clip_is_the_same_on_both_backends(tmp_path):
    net = tiny_gesture()
    engine = create_engine(net, "onnxruntime", model_path=_save(net, tmp_path / "g.pt", "gesture"))
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (30, 40, 3), dtype=np.uint8) for _ in range(net.clip_length)]
    for level in range(net.num_levels):
        net.set_level(level)
        engine.set_level(level)
        np.testing.assert_allclose(engine.predict_clip(frames), net.predict_clip(frames), atol=1e-5)
    # The facade reads the net's own attributes (the recognizer and pipeline need them).
    assert engine.frame_size == net.frame_size and engine.clip_length == net.clip_length


def test_cache_hit_then_stale_model_then_corrupt_graph(tmp_path):
    path = _save(tiny_detector(0), tmp_path / "detector.pt", "detector")
    model = tiny_detector(0)
    first = create_engine(model, "onnxruntime", model_path=path)
    assert first.engine_info()["cache_events"] == {"miss": 4}
    assert first.engine.graph_paths[0].parent == tmp_path / ".tnn_engines" / "detector"
    second = create_engine(model, "onnxruntime", model_path=path)
    assert second.engine_info()["cache_events"] == {"hit": 4}

    # The model file changes (retrained): every graph is stale by hash and rebuilt from the new weights.
    retrained = tiny_detector(1)
    _save(retrained, path, "detector")
    lines = []
    third = create_engine(retrained, "onnxruntime", model_path=path, log=lines.append)
    assert third.engine_info()["cache_events"] == {"rebuilt": 4}
    assert len(lines) == 4 and all("stale" in line for line in lines)
    inputs = torch.rand(retrained.example_input().shape)
    assert _max_difference(retrained, third, inputs) <= TOLERANCE

    # A graph damaged on disk: its bytes no longer match the manifest, so it is rebuilt.
    graph = third.engine.graph_paths[2]
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF
    graph.write_bytes(bytes(data))
    lines.clear()
    fourth = create_engine(retrained, "onnxruntime", model_path=path, log=lines.append)
    assert fourth.engine_info()["cache_events"] == {"hit": 3, "rebuilt": 1}
    assert len(lines) == 1 and "corrupt" in lines[0] and "level2" in lines[0]
    assert _max_difference(retrained, fourth, inputs) <= TOLERANCE


def test_graph_that_hashes_fine_but_does_not_load_is_rebuilt(tmp_path):
    """A manifest rewritten for garbage bytes (hash matches) still cannot fool the engine."""
    import hashlib
    import json

    model = tiny_detector()
    path = _save(model, tmp_path / "detector.pt", "detector")
    graph = create_engine(model, "onnxruntime", model_path=path).engine.graph_paths[0]
    graph.write_bytes(b"not an onnx graph")
    manifest = graph.with_suffix(".json")
    content = json.loads(manifest.read_text())
    content["onnx_sha256"] = hashlib.sha256(b"not an onnx graph").hexdigest()
    manifest.write_text(json.dumps(content))
    lines = []
    engine = create_engine(model, "onnxruntime", model_path=path, log=lines.append)
    assert len(lines) == 1 and "cannot load" in lines[0]
    assert _max_difference(model, engine, torch.rand(model.example_input().shape)) <= TOLERANCE


def test_read_only_model_folder_uses_the_user_cache(tmp_path, monkeypatch):
    model = tiny_detector()
    path = _save(model, tmp_path / "models" / "detector.pt", "detector")
    monkeypatch.setenv("TNN_ROS_CACHE", str(tmp_path / "user"))
    real = graph_cache_module._writable
    monkeypatch.setattr(
        graph_cache_module, "_writable", lambda folder: "models" not in folder.parts and real(folder)
    )
    engine = create_engine(model, "onnxruntime", model_path=path)
    assert all((tmp_path / "user") in p.parents for p in engine.engine.graph_paths)
    assert not (tmp_path / "models" / ".tnn_engines").exists()
    assert create_engine(model, "onnxruntime", model_path=path).engine_info()["cache_events"] == {"hit": 4}


def test_unwritable_everywhere_is_refused_with_one_line(tmp_path, monkeypatch):
    model = tiny_detector()
    path = _save(model, tmp_path / "detector.pt", "detector")
    monkeypatch.setattr(graph_cache_module, "_writable", lambda folder: False)
    with pytest.raises(EngineError, match="cannot export level 0") as info:
        create_engine(model, "onnxruntime", model_path=path)
    assert "\n" not in str(info.value)


def test_missing_onnxruntime_falls_back_to_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` raises ImportError
    model = tiny_detector()
    lines = []
    engine = create_engine(model, "onnxruntime", log=lines.append)
    assert engine.backend == "torch"
    assert len(lines) == 1 and "onnxruntime is not installed" in lines[0] and "torch backend" in lines[0]
    assert engine.engine_info()["fallback_reason"] == lines[0]
    inputs = torch.rand(model.example_input().shape)
    assert _max_difference(model, engine, inputs) == 0.0


def test_level_interface_and_bad_arguments(detector_on_ort):
    model, engine = detector_on_ort
    assert engine.num_levels == 4 and engine.set_utilization(0.3) == 0 and engine.level == 0
    assert engine.utilization_of(3) == 1.0
    with pytest.raises(ValueError, match="out of range"):
        engine.set_level(4)
    with pytest.raises(ValueError, match="int"):
        engine.set_level(1.5)
    with pytest.raises(ValueError, match="shape"):
        engine(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="backend must be one of"):
        create_engine(model, "tensorflow")
    assert BACKENDS == ("torch", "onnxruntime")


def test_session_options_follow_the_node_threads():
    from tnn_ros.engines.ort_engine import available_providers, session_options

    options = session_options(3, spinning=False)
    assert options.intra_op_num_threads == 3 and options.inter_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    spinning = session_options(1, spinning=True)
    assert spinning.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    assert available_providers()[-1] == "CPUExecutionProvider"
    with pytest.raises(ValueError):
        session_options(0)


def test_perception_models_load_on_the_backend_parameter(tmp_path):
    """The node's loader: both models on onnxruntime, same frame results as torch, info for diagnostics."""
    from tnn_ros.perception import loading as perception

    detector_path = _save(tiny_detector(), tmp_path / "detector.pt", "detector")
    gesture_path = _save(tiny_gesture(), tmp_path / "gesture.pt", "gesture")
    pipelines = {
        backend: perception.load_models(
            str(detector_path), str(gesture_path), stride=1, smoothing=1, backend=backend
        )
        for backend in BACKENDS
    }
    info = perception.engine_info(pipelines["onnxruntime"])
    assert info == {"backend": "onnxruntime", "provider": "CPUExecutionProvider"}
    assert pipelines["onnxruntime"].gesture_recognizer.net.backend == "onnxruntime"
    assert perception.engine_info(None) == {"backend": "none", "provider": "none"}
    rng = np.random.default_rng(1)
    frames = [render_scene(rng, 120, 90)[0] for _ in range(GESTURE["clip_length"] + 1)]
    for utilization in (0.25, 1.0):
        results = {}
        for backend, pipeline in pipelines.items():
            pipeline.reset_gesture()
            results[backend] = [pipeline.process(f, utilization, score_threshold=0.05) for f in frames]
        for a, b in zip(results["torch"], results["onnxruntime"]):
            assert a.level == b.level
            assert [d.class_id for d in a.detections] == [d.class_id for d in b.detections]
            assert (a.gesture is None) == (b.gesture is None)
            if a.gesture is not None:
                assert a.gesture.probabilities == pytest.approx(b.gesture.probabilities, abs=1e-5)


@pytest.mark.long
@pytest.mark.parametrize("name", ["detector", "gesture"])
def test_shipped_models_match_torch_on_onnxruntime(tmp_path, name):
    """The shipped models, every level, exported fresh (minutes on a 2-core machine)."""
    from tnn_ros.models import load_detector, load_gesture, shipped_model_path

    model = load_detector() if name == "detector" else load_gesture()
    engine = create_engine(model, "onnxruntime", model_path=shipped_model_path(name), cache_dir=tmp_path)
    inputs = torch.rand(model.example_input().shape, generator=torch.Generator().manual_seed(2))
    assert _max_difference(model, engine, inputs) <= TOLERANCE


def test_graph_inputs_are_the_preprocessed_buffers(detector_on_ort, tmp_path):
    """Graphs take the preprocessing's memory order, so a preprocessed frame is fed without a copy."""
    import onnx

    model, engine = detector_on_ort
    graph = onnx.load(str(engine.engine.graph_paths[0])).graph
    width, height = model.input_size
    assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim] == [1, height, width, 3]
    assert not any(node.op_type == "Transpose" for node in graph.node)
    frame = model.preprocess(render_scene(np.random.default_rng(0), width, height)[0])
    assert np.shares_memory(engine.engine.feed(frame)["input"], frame.numpy())

    net = tiny_gesture()
    gesture = create_engine(net, "onnxruntime", model_path=_save(net, tmp_path / "g.pt", "gesture"))
    width, height = net.frame_size
    clips = torch.zeros(1, net.clip_length, height, width, 3, dtype=torch.uint8)
    clip = net.preprocess(clips)
    feed = gesture.engine.feed(clip)["input"]
    assert feed.shape == (1, net.clip_length, height, width, 3)
    assert np.shares_memory(feed, clip.numpy())
    # A valid-plan net takes conv1's three frame windows instead: views of the same buffer (frames
    # d .. d + T - 3), which the graph no longer slices (a Slice copied them).
    valid = tiny_gesture_valid()
    windows = create_engine(valid, "onnxruntime", model_path=_save(valid, tmp_path / "v.pt", "gesture"))
    pixels = torch.randint(0, 256, (1, valid.clip_length, height, width, 3), dtype=torch.uint8)
    clip = valid.preprocess(pixels)
    feed = windows.engine.feed(clip)
    count = valid.clip_length - 2
    assert list(feed) == ["input_0", "input_1", "input_2"]
    frames = clip.permute(0, 2, 3, 4, 1).numpy()  # (1, T, H, W, 3), the buffer itself
    for offset, window in enumerate(feed.values()):
        assert window.shape == (count, 1, height, width * 3) and np.shares_memory(window, frames)
        np.testing.assert_array_equal(window, frames[0, offset : offset + count].reshape(window.shape))
    graph = onnx.load(str(windows.engine.graph_paths[0])).graph
    assert [i.name for i in graph.input] == list(feed)
    assert not any(node.op_type == "Slice" and node.name.startswith("/conv1/") for node in graph.node)
    # A logical-order (contiguous NCHW) input is still right, just copied.
    inputs = torch.randn(model.example_input().shape)
    assert _max_difference(model, engine, inputs) <= TOLERANCE


@pytest.mark.parametrize("stride, padding", [(2, 1), (1, 1), ((2, 1), (0, 2))])
def test_conv_on_interleaved_pixels_equals_conv2d(stride, padding):
    from tnn_ros.engines.export_forms import conv_on_interleaved_pixels

    g = torch.Generator().manual_seed(0)
    image = torch.randn(2, 9, 11, 3, generator=g).permute(0, 3, 1, 2)  # channels-last, as preprocessed
    weight, bias = torch.randn(5, 3, 3, 3, generator=g), torch.randn(5, generator=g)
    expected = torch.nn.functional.conv2d(image, weight, bias, stride=stride, padding=padding)
    got = conv_on_interleaved_pixels(image, weight, bias, stride, padding)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "temporal_padding, channels, temporal_kernel",
    [(1, 3, 3), (1, 8, 3), (0, 3, 3), (0, 16, 3), (0, 16, 1), (0, 3, 1)],
)
def test_frames_conv_equals_conv3d(temporal_padding, channels, temporal_kernel):
    """The 4-D frame-major conv == F.conv3d with (pt, 1, 1) padding, on its folded weight.

    Kernel 1 (the "valid" plan's per-frame convs) takes the frames as they are, without windows.
    """
    from tnn_ros.engines.export_forms import frames_conv
    from tnn_ros.models.gesture import fold_temporal_weight

    g = torch.Generator().manual_seed(1)
    batch, frames = 2, 5
    clips = torch.randn(batch, channels, frames, 6, 7, generator=g)
    weight = torch.randn(4, channels, temporal_kernel, 3, 3, generator=g)
    bias = torch.randn(4, generator=g)
    expected = torch.nn.functional.conv3d(clips, weight, bias, padding=(temporal_padding, 1, 1))
    x = clips.permute(0, 2, 1, 3, 4).reshape(batch * frames, channels, 6, 7)
    if channels < 8:  # the RGB path reads channels-last frames (as preprocessed)
        x = x.contiguous(memory_format=torch.channels_last)
    out = frames_conv(x, fold_temporal_weight(weight), bias, padding=(temporal_padding, 1, 1), batch=batch)
    got = out.reshape(batch, -1, 4, 6, 7).permute(0, 2, 1, 3, 4)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-5)


def test_per_frame_convs_are_fed_their_frames_without_a_slice(tmp_path):
    """A temporal kernel of 1 (the valid plan's late convs) makes every frame its own window: the
    graph feeds the conv its input as it is. A Slice there copied every frame and kept onnxruntime
    from leaving the activations in its blocked layout between those convs (docs/engines.md)."""
    import onnx

    from tnn_ros.engines.graph_cache import export_level
    from tnn_ros.models.gesture import temporal_plan

    net = tiny_gesture_valid()
    kernels = temporal_plan(net.architecture).kernels[1:]  # of convs.0, convs.1, ...
    assert 1 in kernels and 3 in kernels
    path = tmp_path / "level0.onnx"
    export_level(net, 0, net.example_input(), str(path))
    slices = {node.name for node in onnx.load(str(path)).graph.node if node.op_type == "Slice"}
    for index, kernel in enumerate(kernels):
        sliced = any(name.startswith(f"/convs.{index}/") for name in slices)
        assert sliced == (kernel == 3), (index, kernel, sorted(slices))


def test_temporal_conv_on_few_channels_runs_per_offset(tmp_path):
    """conv2 reads conv1's 8 channels from 3 frames: 24 stacked channels are not a whole number of
    onnxruntime's 16-channel blocks, so the graph runs one conv per offset and sums them (no Concat)."""
    import onnx

    from tnn_ros.engines.export_forms import SPLIT_OFFSETS_BELOW
    from tnn_ros.engines.graph_cache import export_level

    net = tiny_gesture_valid()
    top = net.num_levels - 1
    assert net.conv1.out_channels < SPLIT_OFFSETS_BELOW
    path = tmp_path / "top.onnx"
    export_level(net, top, net.example_input(), str(path))
    nodes = [n for n in onnx.load(str(path)).graph.node if n.name.startswith("/convs.0/")]
    assert [n.op_type for n in nodes].count("Conv") == 3
    assert not any(n.op_type == "Concat" for n in nodes)


@pytest.mark.parametrize("temporal", [1, 2])
def test_frames_pool_equals_max_pool3d(temporal):
    from tnn_ros.engines.export_forms import frames_pool

    g = torch.Generator().manual_seed(2)
    clips = torch.randn(2, 3, 4, 5, 7, generator=g)  # odd H, W: ceil mode
    expected = torch.nn.functional.max_pool3d(clips, (temporal, 2, 2), ceil_mode=True)
    x = clips.permute(0, 2, 1, 3, 4).reshape(8, 3, 5, 7)
    got = frames_pool(x, temporal, batch=2).reshape(2, -1, 3, 3, 4).permute(0, 2, 1, 3, 4)
    torch.testing.assert_close(got, expected, atol=0, rtol=0)


def test_softplus_by_exp_log_equals_softplus():
    from tnn_ros.engines.export_forms import softplus_by_exp_log

    x = torch.cat([torch.linspace(-100, 100, 2001), torch.tensor([0.0, 1e-8, -1e-8, 19.9, 20.1, 88.0, 89.0])])
    torch.testing.assert_close(softplus_by_exp_log(x), torch.nn.functional.softplus(x), atol=1e-6, rtol=1e-6)
