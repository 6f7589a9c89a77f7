"""Defaults are written once, in the typed schemas (STYLE.md: "Defaults once").

The YAML in conf/ holds only what differs from the schema it extends (and interpolations); code reads the
config, or the schema, instead of stating a schema's number again. Each test names the place to fix.
"""

from __future__ import annotations

import ast
import dataclasses
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import REPO
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from adam.backends.schemas import BACKENDS, backend_schema
from adam.settings.catalog import CONFIG_MODULE
from adam.settings.config import AdamConfig, DomainSpec, HardwareSpec, ShareSpec, SizeSpec
from adam.settings.job_schemas import JOB_SCHEMAS

GROUPS = ("size", "domain", "hardware", "job", "backend")


def _doc(group: str | None, name: str) -> dict[str, Any]:
    folder = resources.files(CONFIG_MODULE)
    path = folder.joinpath(f"{name}.yaml") if group is None else folder.joinpath(group, f"{name}.yaml")
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def _files() -> list[tuple[str | None, str]]:
    folder = resources.files(CONFIG_MODULE)
    found: list[tuple[str | None, str]] = [(None, "config")]
    for group in GROUPS:
        found += sorted(
            (group, p.name.removesuffix(".yaml")) for p in folder.joinpath(group).iterdir() if p.name.endswith(".yaml")
        )
    return found


def _inherited(group: str | None, doc: dict[str, Any]) -> dict[str, Any]:
    """What a file starts from: the schemas and same-group files in its defaults list (``base_x``, ``cpu``), merged."""
    node = OmegaConf.create({})
    for entry in doc.get("defaults", []):
        if not isinstance(entry, str) or entry == "_self_":
            continue  # {override /size@...: minilm} picks another group's option: not this node's values
        if entry.startswith("base_") or entry == "adam_schema":
            path = entry if group is None else f"{group}/{entry}"
            node = OmegaConf.merge(node, ConfigStore.instance().load(f"{path}.yaml").node)
        else:
            node = OmegaConf.merge(node, _own(group, entry))
    return OmegaConf.to_container(node, resolve=False, enum_to_str=True)  # type: ignore[return-value]


def _own(group: str | None, name: str) -> Any:
    """A group file with what it extends merged under it."""
    doc = _doc(group, name)
    values = {k: v for k, v in doc.items() if k != "defaults"}
    return OmegaConf.merge(_inherited(group, doc), values)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return bool(a == b)


def _repeats(written: dict[str, Any], inherited: Any, prefix: str = "") -> list[str]:
    """Keys of ``written`` whose value is the one inherited anyway (interpolations are never repeats)."""
    found = []
    for key, value in written.items():
        if key in ("defaults", "_target_") or not isinstance(inherited, dict) or key not in inherited:
            continue  # a backend file names its constructor (STYLE.md: a backend file is a constructor call)
        if "${" in str(value):
            continue
        if isinstance(value, dict) and isinstance(inherited[key], dict):
            found += _repeats(value, inherited[key], f"{prefix}{key}.")
        elif _same(value, inherited[key]):
            found.append(f"{prefix}{key}: {value!r}")
    return found


@pytest.mark.parametrize(("group", "name"), _files(), ids=lambda v: str(v))
def test_a_yaml_file_writes_only_what_differs_from_what_it_extends(group: str | None, name: str) -> None:
    doc = _doc(group, name)
    where = "conf/config.yaml" if group is None else f"conf/{group}/{name}.yaml"
    repeats = _repeats(doc, _inherited(group, doc))
    assert repeats == [], f"{where} repeats the default of the schema (or file) it extends: {repeats}"


def test_the_check_sees_a_repeat_and_a_nested_one() -> None:
    """The check itself can fail: a domain restating temperature, a root restating share.register."""
    domain = {"defaults": ["base_domain", "_self_"], "name": "x", "temperature": DomainSpec.temperature, "top_p": 0.5}
    assert _repeats(domain, _inherited("domain", domain)) == [f"temperature: {DomainSpec.temperature!r}"]
    root = {"defaults": ["adam_schema"], "share": {"register": True, "store": "/s"}}
    assert _repeats(root, _inherited(None, root)) == ["share.register: True"]
    gpu = {"defaults": ["cpu", "_self_"], "name": "g", "dtype": "float32", "device": "cuda"}
    assert _repeats(gpu, _inherited("hardware", gpu)) == ["dtype: 'float32'"]  # cpu.yaml's, not the schema's


def test_the_batch_size_size_auto_plans_for_is_the_schemas() -> None:
    from adam.planning.size_catalog import default_batch

    assert default_batch("generate") == JOB_SCHEMAS["generate"].batch_size  # type: ignore[attr-defined]
    assert default_batch("embed") == JOB_SCHEMAS["embed"].batch_size  # type: ignore[attr-defined]


def test_a_bare_engine_answers_as_the_default_domain() -> None:
    """Engine(backend) samples as `python -m adam` with domain=general does: its settings are DomainSpec's."""
    from adam.engine import Settings
    from adam.settings.job_schemas import GenerateJob

    bare = Settings()
    general = Settings.from_config(GenerateJob(name="generate", input="-"), _domain("general"))
    assert bare == general
    assert (bare.temperature, bare.top_p, bare.max_tokens) == (
        DomainSpec.temperature,
        DomainSpec.top_p,
        DomainSpec.max_tokens,
    )


def _domain(name: str) -> DomainSpec:
    node = OmegaConf.merge(
        OmegaConf.structured(DomainSpec), {k: v for k, v in _doc("domain", name).items() if k != "defaults"}
    )
    return OmegaConf.to_object(node)  # type: ignore[return-value]


def test_the_server_options_are_the_serve_jobs() -> None:
    """ServeOptions holds a ServeJob: the app's limits are job=serve's, with no copy of their defaults."""
    from adam.server.state import ServeOptions
    from adam.settings.job_schemas import ServeJob

    options = ServeOptions.of(max_batch=3)
    assert options.job.max_batch == 3 and options.job.batch_wait_ms == ServeJob.batch_wait_ms
    own = {f.name for f in dataclasses.fields(ServeOptions)}
    assert not own & {f.name for f in dataclasses.fields(ServeJob)} - {"job"}, "a ServeJob key copied into ServeOptions"


# The modules whose literals *are* the defaults: the schemas, and the backends' constructors
# (adam/backends/schemas.py).
SOURCES = {"adam/settings/config.py", "adam/settings/job_schemas.py"}
# Same name and number as a schema default, but another thing: why each one is not a copy.
NOT_COPIES = {
    ("adam/backends/llamacpp_probe.py", "timeout"): "the probe subprocess's limit, not a backend's request timeout",
}


def _schema_defaults() -> dict[str, set[tuple[float, str]]]:
    schemas = [SizeSpec, DomainSpec, HardwareSpec, ShareSpec, AdamConfig, *JOB_SCHEMAS.values()]
    schemas += [backend_schema(cls) for cls in BACKENDS.values()]
    defaults: dict[str, set[tuple[float, str]]] = {}
    for schema in schemas:
        for f in dataclasses.fields(schema):
            if isinstance(f.default, int | float) and not isinstance(f.default, bool):
                defaults.setdefault(f.name, set()).add((f.default, schema.__name__))
    return defaults


def _number(node: ast.AST) -> float | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _number(node.operand)
        return None if inner is None else -inner
    return None


def _stated_defaults(tree: ast.AST) -> list[tuple[int, str, float]]:
    """(line, name, number) for each numeric default of a parameter or a class field."""
    stated: list[tuple[int, str, float]] = []
    for node in ast.walk(tree):
        pairs: list[tuple[str, ast.AST]] = []
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            args = node.args
            positional = (args.posonlyargs + args.args)[len(args.posonlyargs + args.args) - len(args.defaults) :]
            pairs += [(a.arg, d) for a, d in zip(positional, args.defaults, strict=True)]
            pairs += [(a.arg, d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is not None]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            pairs.append((node.target.id, node.value))
        for name, default in pairs:
            number = _number(default)
            if number is not None:
                stated.append((getattr(default, "lineno", 0), name, number))
    return stated


def _backend_classes() -> dict[str, set[str]]:
    """{module path: class names} of the classes whose constructors are the backend schemas."""
    found: dict[str, set[str]] = {}
    for cls in BACKENDS.values():
        found.setdefault(cls.__module__.replace(".", "/") + ".py", set()).add(cls.__name__)
    return found


def _constructor_methods_skipped(path: str, tree: ast.AST) -> ast.AST:
    """The module without the __init__ of its backend classes (those defaults are the schema)."""
    names = _backend_classes().get(path, set())
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name in names:
            node.body = [b for b in node.body if not (isinstance(b, ast.FunctionDef) and b.name == "__init__")]
    return tree


def test_code_states_no_default_a_schema_holds() -> None:
    defaults = _schema_defaults()
    copies = []
    for file in sorted((REPO / "adam").rglob("*.py")):
        path = file.relative_to(REPO).as_posix()
        if path in SOURCES:
            continue
        tree = _constructor_methods_skipped(path, ast.parse(file.read_text(encoding="utf-8")))
        for line, name, number in _stated_defaults(tree):
            same = sorted(s for value, s in defaults.get(name, ()) if value == number)
            if same and (path, name) not in NOT_COPIES:
                copies.append(f"{path}:{line} {name}={number} (the default of {', '.join(same)})")
    assert copies == [], "code restates a schema default; read it from the config or the schema:\n" + "\n".join(copies)


def test_the_code_check_sees_a_copy() -> None:
    tree = ast.parse("class Opts:\n    max_batch: int = 32\n\ndef f(*, temperature: float = 0.7) -> None: ...\n")
    assert sorted(n for _, n, _ in _stated_defaults(tree)) == ["max_batch", "temperature"]
    assert (32, "ServeJob") in _schema_defaults()["max_batch"]


def test_the_checked_paths_exist() -> None:
    for path, _ in NOT_COPIES:
        assert (REPO / path).is_file(), path
    assert all((REPO / p).is_file() for p in SOURCES)
    assert Path(REPO / "conf").is_dir()
