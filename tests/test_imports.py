"""The import graph under adam/ is a tree: no cycles (lazy imports too), lower layers never import upper ones."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from helpers import REPO

PACKAGE = REPO / "adam"
# Layers from the bottom: a module may import its own layer and the ones below, never one above.
LOWER = ("adam.errors", "adam.settings.config", "adam.io", "adam.protocol", "adam.hashing", "adam.settings.catalog")
UPPER = ("adam.jobs", "adam.run.runner", "adam.server", "adam.manager", "adam.__main__")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """adam modules ``path`` imports anywhere in it (top level, functions, TYPE_CHECKING blocks)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `from adam.x import y`: y is a name, x the module
                target = target.rpartition(".")[0]
            if target and target != name and target.startswith("adam"):
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    known = set(files)
    graph = {name: _imports(path, name, known) for name, path in files.items()}
    # importing adam.a.b runs adam/__init__ and adam/a/__init__ first, but that is not an edge we write
    return {name: {t for t in targets if not name.startswith(t + ".")} for name, targets in graph.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_import_graph_has_no_cycle() -> None:
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_lower_layers_never_import_upper_ones() -> None:
    bad = [
        f"{name} imports {target}"
        for name, targets in _graph().items()
        if name.startswith(LOWER)
        for target in targets
        if target.startswith(UPPER)
    ]
    assert bad == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_help_imports_neither_torch_nor_an_engine() -> None:
    code = (
        "import sys, runpy; sys.argv=['adam','--help']\n"
        "try:\n    runpy.run_module('adam', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "engines = ('torch', 'transformers', 'llama_cpp', 'openai', 'fastapi', 'onnxruntime', 'onnx', 'onnxscript')\n"
        "heavy = [m for m in engines if m in sys.modules]\n"
        "print('HEAVY', heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert "HEAVY []" in out.stdout, out.stdout[-500:] + out.stderr[-2000:]


def test_the_documented_import_paths_still_work() -> None:
    import importlib

    for module, name in (
        ("adam", "ModelManager"),
        ("adam.io.embed_store", "EmbeddingStore"),
        ("adam.run.sweep", "SweepReport"),  # named in conf/hydra/callbacks/sweep_report.yaml
        ("adam.backends.ollama", "OllamaBackend"),  # named in share.ollama and in users' configs
        ("adam.backends.openai", "OpenAIBackend"),
        ("adam.engine", "Engine"),
    ):
        assert isinstance(getattr(importlib.import_module(module), name), type), f"{module}.{name}"
