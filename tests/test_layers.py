"""The packages of adam/ are floors: imports at module level point down, or stay on their floor, and never loop.

Imports inside functions are the lazy ones (torch, Hydra's compose, a job's own modules) and are not counted: they
run when called, so they make no cycle at import time and are how an upper floor is reached from below on purpose.
"""

from __future__ import annotations

import ast
from pathlib import Path

ADAM = Path(__file__).resolve().parents[1] / "adam"

# Lowest first. Packages on one floor may import each other (their modules may not loop; the cycle test checks).
FLOORS: list[set[str]] = [
    {"errors", "atomic", "paths", "hashing", "moved_modules"},  # the ground floor: no adam import but errors
    {"settings"},  # the typed config: schemas, checks, the conf/ groups (catalog)
    {"planning"},  # what chooses a model: sizes, hardware, tiers, the memory plan; reads settings only
    # records in and out, the wire format, the models: the OpenAI/Ollama bodies (protocol) wrap backend results and
    # parse io's records, io's readers speak the protocol, and backends use protocol.structured for output schemas.
    {"io", "protocol", "backends"},
    {"engine", "sharing"},  # per-request rules over a backend; exporting and registering models
    # a run drives jobs (runner -> jobs.kinds), and jobs use the run's parts (signals, locks, shard checks)
    {"jobs", "run"},
    {"server"},
    {"__main__", "manager"},  # the face; adam/__init__.py is the package itself (see _floor)
]
# The root may hold the face and the ground floor only; everything else lives in a package that says what it is.
ROOT_MODULES = {"__init__", "__main__", "manager", "errors", "atomic", "paths", "hashing", "moved_modules"}


def _module_name(path: Path) -> str:
    parts = ["adam", *path.relative_to(ADAM).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:]) if "." in name else Path()
    return (ADAM / rel).with_suffix(".py").is_file() or (ADAM / rel / "__init__.py").is_file()


def _top_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Imports run when the module is imported: its body, and inside top-level if/try, but not TYPE_CHECKING."""
    found: list[ast.Import | ast.ImportFrom] = []
    stack: list[ast.stmt] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
            stack += node.body + node.orelse
        elif isinstance(node, ast.Try):
            stack += node.body + node.orelse + node.finalbody + [s for h in node.handlers for s in h.body]
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the adam modules it imports at module level (``from pkg import mod`` names the module)."""
    graph: dict[str, set[str]] = {}
    for path in ADAM.rglob("*.py"):
        if "conf" in path.relative_to(ADAM).parts:
            continue
        name = _module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in _top_level_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.split(".")[0] == "adam"}
                continue
            base = node.module or ""
            if node.level:
                base = ".".join(
                    [*package.split(".")[: len(package.split(".")) - node.level + 1], *filter(None, [base])]
                )
            if base.split(".")[0] != "adam":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.add(sub if _is_module(sub) else base)
        graph[name] = targets - {name}
    return graph


def _floor(module: str) -> int | None:
    """The floor of a module; None for the package ``adam`` itself, which Python runs before any submodule."""
    parts = module.split(".")
    if len(parts) == 1:
        return None
    return next(i for i, floor in enumerate(FLOORS) if parts[1] in floor)


def test_every_package_and_root_module_has_a_floor() -> None:
    named = set().union(*FLOORS)
    here = {p.stem for p in ADAM.glob("*.py")} | {p.name for p in ADAM.iterdir() if (p / "__init__.py").is_file()}
    assert here - {"__init__", "conf"} == named


def test_the_root_holds_only_the_face_and_the_ground_floor() -> None:
    assert {p.stem for p in ADAM.glob("*.py")} <= ROOT_MODULES


def test_imports_between_packages_point_down() -> None:
    upward = [
        f"{module} (floor {_floor(module)}) imports {target} (floor {_floor(target)})"
        for module, targets in sorted(import_graph().items())
        for target in sorted(targets)
        if _floor(module) is not None and _floor(target) is not None and _floor(target) > _floor(module)  # type: ignore[operator]
    ]
    assert not upward, "\n".join(upward)


def test_no_import_cycles_at_module_level() -> None:
    graph = import_graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_the_graph_holds_the_real_imports() -> None:
    """The graph is real: the runner's imports are found, so an empty graph cannot pass the tests above."""
    graph = import_graph()
    assert "adam.jobs.kinds" in graph["adam.run.runner"] and "adam.errors" in graph["adam.run.runner"]
    assert _floor("adam.errors") < _floor("adam.run.runner") < _floor("adam.server.app")  # type: ignore[operator]
