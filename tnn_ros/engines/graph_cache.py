"""Per-level static ONNX graphs of a throttleable model, exported once and cached by hash.

Each level is traced on its own (``torch.onnx.export``, TorchScript exporter): the gated ops run on
their eval caches, so the graph holds that level's sliced weights with BatchNorm already folded and
the skipped blocks are simply absent. What is traced is the model's export form
(:mod:`~tnn_ros.engines.export_forms`: the same function with graph-friendly ops, input in the memory
order the preprocessing produces). Graphs are written next to the model file in
``.tnn_engines/<model stem>/`` (or the user cache dir when that folder is not writable), each with a
JSON manifest holding its key (model file SHA-256, level, input shape, exporter version) and the
SHA-256 of the graph bytes. A graph whose key or bytes do not match is stale or corrupt: it is
rebuilt, and the caller is told so in one line.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from ..models.io import atomic_write
from .base import EngineError
from .export_forms import conv1_windows, export_form, graph_feed, input_memory_order

# Bump when the way graphs are produced changes (wrapper, exporter options, ops seen while tracing).
# 2: export_forms (input in the preprocessing's memory order, graph-friendly gesture/stem ops).
# 3: the gesture net's per-frame (temporal kernel 1) convs take their frames without a Slice.
# 4: a valid-plan gesture graph takes conv1's frame windows as its inputs (export_forms.graph_feed).
# 5: temporal convs on fewer than 16 channels per offset (the gesture net's conv2) run per offset.
EXPORTER_VERSION = 5
OPSET = 17
CACHE_FOLDER = ".tnn_engines"
INPUT_NAME = "input"


def exporter_tag() -> str:
    """Everything besides the weights that decides the exported bytes."""
    return f"tnn{EXPORTER_VERSION}-torch{torch.__version__}-opset{OPSET}"


def user_cache_dir() -> Path:
    """``$TNN_ROS_CACHE``, else ``$XDG_CACHE_HOME/tnn_ros``, else ``~/.cache/tnn_ros``."""
    if os.environ.get("TNN_ROS_CACHE"):
        return Path(os.environ["TNN_ROS_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tnn_ros"


def file_digest(paths: Sequence[str | os.PathLike]) -> str:
    """SHA-256 over the bytes of the existing files among ``paths`` (weights + card)."""
    sha = hashlib.sha256()
    for path in paths:
        path = Path(path)
        if path.is_file():
            sha.update(path.name.encode())
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    sha.update(block)
    return sha.hexdigest()


def state_digest(model: nn.Module) -> str:
    """SHA-256 over a model's state dict (for models that did not come from a file)."""
    sha = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        sha.update(name.encode())
        sha.update(str(tuple(tensor.shape)).encode())
        sha.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return sha.hexdigest()


def _sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _writable(folder: Path) -> bool:
    """Whether ``folder`` exists writable or can be created under a writable parent."""
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            return False
        probe = probe.parent
    return probe.is_dir() and os.access(probe, os.W_OK | os.X_OK)


@torch.no_grad()
def export_level(model: nn.Module, level: int, example: Tensor, path: str | os.PathLike) -> None:
    """Trace ``model`` at ``level`` on ``example`` and write the ONNX graph to ``path``.

    ``example`` has the model's logical input shape; the graph traced is the model's
    :func:`~tnn_ros.engines.export_forms.export_form` and its inputs are
    :func:`~tnn_ros.engines.export_forms.graph_feed` of ``example.permute(input_memory_order(model))``:
    the one input ``input``, or a valid-plan gesture net's conv1 windows ``input_0`` ...
    """
    if model.training:
        raise ValueError("export a model in eval mode (its per-level caches hold the folded weights)")
    outputs = model(example)
    count = len(outputs) if isinstance(outputs, (tuple, list)) else 1
    windows = conv1_windows(model, example.shape[0])
    inputs = graph_feed(example.permute(input_memory_order(model)).contiguous(), INPUT_NAME, windows)
    with export_form(model, level, batch=example.shape[0]) as graph, warnings.catch_warnings():
        graph.training = False  # not .eval(): that would rebuild every cache of the model again
        # The shape checks in forward are constant for a static graph: exactly what we want traced.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            tuple(inputs.values()),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=list(inputs),
            output_names=[f"output{i}" for i in range(count)],
            do_constant_folding=True,
        )


class GraphCache:
    """Where the per-level graphs of one model live and whether they are still valid.

    Args:
        model_digest: SHA-256 of the model file (or state dict) the graphs must come from.
        stem: model name used for the cache sub-folder (``detector`` for ``detector.pt``).
        input_shape: the static input shape the graphs are traced for.
        directories: folders to look in, preferred first; graphs are written to the first writable one.
        form: which graph of a level (``""``: the network's forward; ``"stream"``: one streaming step
            of the gesture net); part of the key and the file name, so forms never mix.
        form_version: bumped when the way a form's graphs are made changes (part of the key).
    """

    def __init__(
        self,
        model_digest: str,
        stem: str,
        input_shape: Sequence[int],
        directories: Sequence[str | os.PathLike],
        form: str = "",
        form_version: int = 0,
    ) -> None:
        if not directories:
            raise ValueError("GraphCache needs at least one directory")
        self.model_digest = model_digest
        self.stem = stem
        self.input_shape = [int(v) for v in input_shape]
        self.directories = [Path(d) / stem for d in directories]
        self.form = form
        self.form_version = int(form_version)

    def for_form(self, form: str, input_shape: Sequence[int], form_version: int = 0) -> GraphCache:
        """The cache of another graph form of the same model, in the same folders."""
        parents = [folder.parent for folder in self.directories]  # directories end in the stem
        return GraphCache(self.model_digest, self.stem, input_shape, parents, form, form_version)

    @classmethod
    def for_model_file(
        cls,
        model_path: str | os.PathLike,
        input_shape: Sequence[int],
        cache_dir: str | os.PathLike | None = None,
    ) -> GraphCache:
        """Cache of the model in ``model_path``: beside it, else in the user cache dir."""
        from ..models.io import card_path

        model_path = Path(model_path)
        digest = file_digest([model_path, card_path(model_path)])
        stem = model_path.name[:-3] if model_path.name.endswith(".pt") else model_path.name
        if cache_dir is not None:
            directories = [Path(cache_dir)]
        else:
            # The user cache is keyed by the digest too, so two models named detector.pt never mix.
            directories = [model_path.parent / CACHE_FOLDER, user_cache_dir() / "engines" / digest[:16]]
        return cls(digest, stem, input_shape, directories)

    def key(self, level: int) -> dict:
        """What a graph of ``level`` must have been made from."""
        key = {
            "model_sha256": self.model_digest,
            "level": int(level),
            "input_shape": self.input_shape,
            "exporter": exporter_tag(),
        }
        if self.form:  # the forward's key stays as it was, so existing caches stay valid
            key["form"] = self.form
            key["form_version"] = self.form_version
        return key

    def _name(self, level: int) -> str:
        shape = "x".join(str(v) for v in self.input_shape)
        prefix = f"{self.form}_" if self.form else ""
        return f"{prefix}level{level}_{shape}.onnx"

    def check(self, level: int) -> tuple[Path | None, str]:
        """Find a valid graph of ``level``: (path, "hit"), or (None, "miss" | reason it is unusable)."""
        reason = "miss"
        for folder in self.directories:
            path = folder / self._name(level)
            if not path.is_file():
                continue
            problem = self._problem(path, level)
            if problem is None:
                return path, "hit"
            reason = problem
        return None, reason

    def _problem(self, path: Path, level: int) -> str | None:
        manifest_path = path.with_suffix(".json")
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return f"{path}: no readable manifest"
        if not isinstance(manifest, dict) or manifest.get("key") != self.key(level):
            return f"{path}: stale (made from another model file or exporter)"
        if manifest.get("onnx_sha256") != _sha256_file(path):
            return f"{path}: corrupt (bytes do not match the manifest's SHA-256)"
        return None

    def write_folder(self) -> Path:
        """The folder new graphs go to (the first writable one)."""
        for folder in self.directories:
            if _writable(folder):
                return folder
        raise PermissionError(
            f"no writable folder for exported graphs among {', '.join(str(d) for d in self.directories)}"
        )

    def store(self, level: int, export: Callable[[str], None]) -> Path:
        """Export ``level`` with ``export(tmp_path)`` into the write folder; returns the graph path."""
        path = self.write_folder() / self._name(level)
        atomic_write(path, export)
        manifest = {"key": self.key(level), "onnx_sha256": _sha256_file(path)}

        def write_manifest(tmp: str) -> None:
            Path(tmp).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")

        atomic_write(path.with_suffix(".json"), write_manifest)
        return path


def cached_graph(
    cache: GraphCache,
    level: int,
    export: Callable[[str], None],
    what: str,
    events: collections.Counter,
    log: Callable[[str], None],
) -> Path:
    """The valid cached graph of ``level``, exported by ``export(tmp_path)`` when missing or stale.

    ``events`` counts hits, misses and rebuilds; a stale or corrupt graph is logged once. An export
    that fails raises EngineError naming ``what`` (e.g. ``"level 3"``) and the model.
    """
    path, status = cache.check(level)
    if path is not None:
        events["hit"] += 1
        return path
    if status == "miss":
        events["miss"] += 1
    else:
        events["rebuilt"] += 1
        log(f"{status}; rebuilding it")
    return export_graph(cache, level, export, what)


def export_graph(cache: GraphCache, level: int, export: Callable[[str], None], what: str) -> Path:
    """Export and store the graph of ``level``; any failure becomes one EngineError line."""
    try:
        return cache.store(level, export)
    except Exception as exc:
        raise EngineError(
            f"cannot export {what} of {cache.stem} to ONNX: {type(exc).__name__}: {exc}"
        ) from exc


def load_session(
    ort,
    path: Path,
    options,
    providers: Sequence[str],
    rebuild: Callable[[], Path],
    events: collections.Counter,
    log: Callable[[str], None],
) -> tuple[object, Path]:
    """An onnxruntime (the module ``ort``) session of ``path`` and the path it came from.

    A graph that passed its hash but does not load is rebuilt once by ``rebuild()``; a rebuilt graph
    that still does not load raises EngineError.
    """
    try:
        return ort.InferenceSession(str(path), options, providers=list(providers)), path
    except Exception as first:
        log(f"{path}: onnxruntime cannot load it ({type(first).__name__}); rebuilding it")
        events["rebuilt"] += 1
        path = rebuild()
        try:
            return ort.InferenceSession(str(path), options, providers=list(providers)), path
        except Exception as exc:
            raise EngineError(
                f"{path}: onnxruntime cannot load the rebuilt graph: {type(exc).__name__}: {exc}"
            ) from exc
