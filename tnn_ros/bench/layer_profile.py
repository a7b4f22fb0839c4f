"""Where one level's time goes: time per layer on the torch and onnxruntime backends.

Layers are named by their module path in the torch model (``stem``, ``stages.1.0.conv1``,
``head_out`` ...) on both backends: the ONNX graphs keep the module scope in their node names
(``/net/stages.1.0/conv1/Conv``, ``/convs.0/Relu``), so one table compares the backends layer by
layer. Time that no gated layer accounts for is reported as ``(other)`` on torch (residual adds,
upsampling, pooling, reshapes, Python between ops) and under the op's name on onnxruntime
(``(other) Resize``); onnxruntime's layout conversions are ``(layout reorders)``. The onnxruntime
profile also sums the same kernel times per op type (``ops_ms``: ``Conv`` against the data movement
of ``Slice`` / ``Concat`` / ``Reshape`` / ``ReorderInput`` ...), which the per-layer view spreads over
the layers whose scope the copies carry.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from collections import defaultdict

import torch
from torch import Tensor

from ..throttle import GatedOp

GRAPH_SCOPE = "/net/"  # the module attribute of the per-level wrapper that graph_cache traces


def _rounded(layers: dict[str, float], repeats: int) -> dict[str, float]:
    ordered = sorted(layers.items(), key=lambda item: -item[1])
    return {name: round(total / repeats, 4) for name, total in ordered}


@torch.no_grad()
def torch_layer_profile(model, example: Tensor, level: int, repeats: int = 20) -> dict:
    """Mean ms per gated layer (forward hooks with ``perf_counter``) and the median forward ms.

    ``model`` is the torch ThrottleableModule. Hooks add a few microseconds per layer, so the layer
    sum is slightly above a plain forward; ``(other)`` is the rest of the forward.
    """
    totals: dict[str, float] = defaultdict(float)
    starts: dict[str, float] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, GatedOp):

            def pre(_module, _inputs, name=name):
                starts[name] = time.perf_counter()

            def post(_module, _inputs, _output, name=name):
                totals[name] += (time.perf_counter() - starts[name]) * 1000

            handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    previous = model.level
    model.set_level(level)
    forwards = []
    try:
        model(example)
        totals.clear()
        for _ in range(repeats):
            start = time.perf_counter()
            model(example)
            forwards.append((time.perf_counter() - start) * 1000)
    finally:
        for handle in handles:
            handle.remove()
        model.set_level(previous)
    mean_forward = statistics.fmean(forwards)
    totals["(other)"] = max(0.0, mean_forward * repeats - sum(totals.values()))
    return {
        "level": level,
        "forward_ms_median": round(statistics.median(forwards), 4),
        "layers_ms": _rounded(totals, repeats),
    }


def _layer_of_node(node_name: str, module_names: frozenset[str] | None = None) -> str:
    """Module path of an ONNX node (``/net/stages.1.0/conv1/Conv`` -> ``stages.1.0.conv1``).

    With ``module_names`` (the torch model's), a node is credited to the longest module path that
    prefixes its scope; nodes outside every module (e.g. ``/net/Slice_2/GatherSliceToSplitFusion``
    made by a fusion) are ``(other) <op>``.
    """
    node_name = node_name.removeprefix("fused ")  # nodes onnxruntime made by fusing others
    if node_name.startswith("/"):
        # "/net/<module path>/<op>" (the model traced inside the level wrapper) or "/<module path>/<op>"
        # (an export form that calls the model's modules itself, engines/export_forms.py)
        parts = node_name.removeprefix(GRAPH_SCOPE).removeprefix("/").split("/")
        scopes = parts[:-1]
        if module_names is not None:
            while scopes and ".".join(scopes) not in module_names:
                scopes = scopes[:-1]
        if scopes:
            return ".".join(scopes)
        return f"(other) {parts[0].split('_')[0]}"
    if node_name.startswith(("Reorder", "reorder")):
        return "(layout reorders)"
    return f"(other) {node_name}"


def ort_layer_profile(
    engine, example: Tensor, level: int, repeats: int = 20, module_names: frozenset[str] | None = None
) -> dict:
    """Mean ms per layer from onnxruntime's own profiler (a profiling copy of ``level``'s session).

    ``engine`` is the :class:`~tnn_ros.engines.ort_engine.OrtEngine`; the copy uses the same graph,
    options and providers. Kernel times are summed per layer (``layers_ms``) and per op type as
    onnxruntime ran it (``ops_ms``: ``Conv``, ``Slice``, ``ReorderInput``, ``FusedGemm`` ...; the
    same total); ``forward_ms_median`` is ORT's ``model_run`` duration.
    """
    import onnxruntime as ort

    from ..engines.ort_engine import session_options

    feed = engine.feed(example)
    with tempfile.TemporaryDirectory() as folder:
        options = session_options(
            engine.num_threads, engine.spinning, profile_prefix=os.path.join(folder, "ort")
        )
        session = ort.InferenceSession(str(engine.graph_paths[level]), options, providers=engine.providers)
        for _ in range(repeats + 1):
            session.run(None, feed)
        with open(session.end_profiling(), encoding="utf-8") as f:
            events = json.load(f)
    runs = sorted((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])
    # The first run allocates its buffers: leave it and its kernels out.
    warm_end = runs[0]["ts"] + runs[0]["dur"] if runs else 0
    totals: dict[str, float] = defaultdict(float)
    ops: dict[str, float] = defaultdict(float)
    for event in events:
        if (
            event.get("cat") == "Node"
            and event.get("name", "").endswith("_kernel_time")
            and event["ts"] >= warm_end
        ):
            layer = _layer_of_node(event["name"][: -len("_kernel_time")], module_names)
            totals[layer] += event["dur"] / 1000
            ops[event.get("args", {}).get("op_name", "?")] += event["dur"] / 1000
    measured = [e["dur"] / 1000 for e in runs[1:]]
    return {
        "level": level,
        "forward_ms_median": round(statistics.median(measured), 4) if measured else None,
        "layers_ms": _rounded(totals, max(1, len(measured))),
        "ops_ms": _rounded(ops, max(1, len(measured))),
    }
