"""The package's layers, checked from the source: imports point down, never in a cycle.

Every import of a `tnn_ros` module is read with `ast`, including the ones inside functions (a
function-level import hides a cycle from Python but not from the next reader). The allowed
directions are the ones docs/architecture.md draws.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[2] / "tnn_ros"

# Sub-package -> the sub-packages it may import (besides itself), as docs/architecture.md draws them.
# Runtime bottom up, then tooling, which may use the whole runtime but is never imported by it.
RUNTIME = {
    "throttle": set(),
    "control": set(),
    "resources": set(),
    "sim": set(),
    "models": {"throttle", "sim"},
    "engines": {"throttle", "models"},
    "perception": {"throttle", "models", "engines", "sim"},
}
RUNTIME["nodes"] = set(RUNTIME)
TOOLING_ORDER = ["bag", "data", "eval", "demo", "train", "bench"]  # each may import the ones before it
ALLOWED: dict[str, set[str]] = {
    **RUNTIME,
    **{name: set(RUNTIME) | {"nodes"} | set(TOOLING_ORDER[:i]) for i, name in enumerate(TOOLING_ORDER)},
}
# Plain modules at the package root, importable from every layer (no imports of their own).
ROOT_MODULES = {"paths", "topics"}
ROS_FREE = (set(RUNTIME) - {"nodes"}) | {"data", "eval", "train"}


def _subpackage(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "tnn_ros" or len(parts) < 2 or parts[1] in ROOT_MODULES:
        return None
    return parts[1]


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE_DIR.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, int]]:
    """Every absolute or relative module that `path` imports, with its line number."""
    tree = ast.parse(path.read_text(), filename=str(path))
    own = _module_name(path).split(".")
    package = own if path.name == "__init__.py" else own[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((module, node.lineno))
    return found


def _sources() -> list[Path]:
    return sorted(p for p in PACKAGE_DIR.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_subpackage_has_a_layer():
    subpackages = {p.name for p in PACKAGE_DIR.iterdir() if (p / "__init__.py").exists()}
    assert subpackages <= set(ALLOWED), f"add {subpackages - set(ALLOWED)} to ALLOWED and the docs"
    modules = {p.stem for p in PACKAGE_DIR.glob("*.py")} - {"__init__"}
    assert modules <= ROOT_MODULES, f"root modules {modules - ROOT_MODULES}: put them in a layer"
    for module in ROOT_MODULES:
        own = [m for m, _ in _imports(PACKAGE_DIR / f"{module}.py") if m.startswith("tnn_ros")]
        assert not own, f"root module {module} must not import the package: {own}"


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(PACKAGE_DIR)))
def test_imports_point_down(path):
    own = _subpackage(_module_name(path))
    if own is None:
        return
    wrong = []
    rel = str(path.relative_to(PACKAGE_DIR))
    for module, line in _imports(path):
        target = _subpackage(module)
        if target is not None and target != own and target not in ALLOWED[own]:
            wrong.append(f"{rel}:{line} imports {module} ({own} -> {target})")
        if own in ROS_FREE and module.split(".")[0] in {"rclpy", "launch", "launch_ros"}:
            wrong.append(f"{path.name}:{line} imports {module} in the ROS-free {own} layer")
    assert not wrong, "\n".join(wrong)


def find_cycle() -> list[str]:
    """One import cycle between tnn_ros modules (as a path), or [] when there is none."""
    graph: dict[str, set[str]] = {}
    for path in _sources():
        name = _module_name(path)
        graph[name] = {m for m, _ in _imports(path) if m.startswith("tnn_ros.") and m != name}
    modules = set(graph)

    def resolve(module: str) -> str | None:
        # `from tnn_ros.x import y` may name a module or an attribute of the package x.
        while module and module not in modules:
            module = module.rpartition(".")[0]
        return module or None

    edges = {m: {t for t in map(resolve, targets) if t and t != m} for m, targets in graph.items()}
    # A package's __init__ importing its own submodules is not a cycle of design; skip those edges.
    edges = {m: {t for t in ts if not t.startswith(m + ".")} for m, ts in edges.items()}
    visiting, done, cycle = set(), set(), []

    def visit(node: str, stack: list[str]) -> bool:
        visiting.add(node)
        stack.append(node)
        for nxt in sorted(edges[node]):
            if nxt in visiting:
                cycle.extend(stack[stack.index(nxt) :] + [nxt])
                return True
            if nxt not in done and visit(nxt, stack):
                return True
        visiting.discard(node)
        done.add(node)
        stack.pop()
        return False

    for start in sorted(edges):
        if start not in done and visit(start, []):
            break
    return cycle


def test_no_module_import_cycle():
    cycle = find_cycle()
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_checker_finds_a_cycle_hidden_in_a_function(tmp_path, monkeypatch):
    # The check itself must catch the kind of hidden import it was written for.
    pkg = tmp_path / "tnn_ros"
    for sub in ("bench", "train"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "bench" / "timing.py").write_text("from tnn_ros.train.loop import evaluate\n")
    (pkg / "train" / "loop.py").write_text("def evaluate():\n    from tnn_ros.bench.timing import x\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE_DIR", pkg)
    assert ("tnn_ros.bench.timing", 2) in _imports(pkg / "train" / "loop.py")
    assert find_cycle() == ["tnn_ros.bench.timing", "tnn_ros.train.loop", "tnn_ros.bench.timing"]


def test_sim_camera_starts_without_torch():
    # The simulated camera renders with numpy + OpenCV only: importing torch costs it ~700 MB and seconds.
    import subprocess

    code = (
        "import sys, tnn_ros.nodes.sim_camera\n"
        "print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
