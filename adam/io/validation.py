"""The JSON Schemas in adam/io/schemas/ (the input contract) and one readable message per invalid record.

Every record is checked, so the schema is also compiled into plain Python predicates (about ten
times faster than walking it with jsonschema); jsonschema runs only on records that fail, to pick
the error to report. The compiler knows the few keywords the schema files use and refuses others.

Each schema is plain Draft 2020-12 with two annotation keywords of ours, which validators ignore:
``x-error`` on a property says what a valid value looks like ("a number between 0 and 2") and
becomes "'temperature' must be a number between 0 and 2, got \"hot\""; ``x-message`` is the whole
message for a failing keyword in the same schema object (a string for any keyword, or a mapping
from keyword to message).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from importlib import resources
from typing import Any, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

Check = Callable[[Any], bool]
SchemaName = Literal["generate", "embed", "openai_request"]
SCHEMA_NAMES: tuple[SchemaName, ...] = ("generate", "embed", "openai_request")
_GOT_CHARS = 60  # how much of an offending value a message quotes


@cache
def load_schema(name: SchemaName) -> dict[str, Any]:
    """The schema document adam/io/schemas/<name>.json."""
    text = resources.files("adam.io").joinpath("schemas", f"{name}.json").read_text(encoding="utf-8")
    doc: dict[str, Any] = json.loads(text)
    return doc


@cache
def _validator(name: SchemaName) -> Draft202012Validator:
    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def check(name: SchemaName, instance: Any, *, rename: Mapping[str, str] | None = None) -> str | None:
    """None if ``instance`` is valid, else one sentence saying what to fix.

    ``rename`` maps the schema's field names to the names the input uses (``{"prompt": "question"}``
    when job.text_field=question), so the message names the field the user wrote.
    """
    if _fast_check(name)(instance):
        return None
    error = best_match(_validator(name).iter_errors(instance))
    if error is None:  # jsonschema has the last word; tests keep the two in agreement
        return None
    return _message(load_schema(name), error, instance, dict(rename or {}))


def check_split(name: SchemaName, instance: Any, inner: str) -> tuple[str | None, str | None]:
    """``check``, telling where the problem is: (a problem outside ``instance[inner]``, a problem within it).

    Within is a value inside the ``inner`` object (a body's temperature out of range, its messages
    missing); outside is everything else, ``inner`` missing or not an object included. At most one of
    the two is set: a problem outside wins.
    """
    if _fast_check(name)(instance):
        return None, None
    errors = list(_validator(name).iter_errors(instance))
    outside = [e for e in errors if not _within(e, inner)]
    error = best_match(outside or errors)
    if error is None:
        return None, None
    message = _message(load_schema(name), error, instance, {})
    return (message, None) if outside else (None, message)


def _within(error: ValidationError, inner: str) -> bool:
    path = list(error.absolute_path)
    return bool(path) and path[0] == inner and (len(path) > 1 or error.validator != "type")


def is_valid(name: SchemaName, instance: Any) -> bool:
    """Whether ``instance`` is valid, by the compiled check alone (what check() tries first)."""
    return _fast_check(name)(instance)


def _message(root: dict[str, Any], error: ValidationError, instance: Any, rename: dict[str, str]) -> str:
    path = list(error.absolute_path)
    custom = error.schema.get("x-message") if isinstance(error.schema, dict) else None
    if isinstance(custom, Mapping):
        custom = custom.get(str(error.validator))
    if isinstance(custom, str):
        return _rename_quoted(custom, rename)
    if error.validator == "required":
        missing = next((m for m in error.validator_value if m not in (error.instance or {})), "?")
        if not path:
            return f"missing {_quote([missing], rename)}"
        return f"{_quote(path, rename)} is missing '{missing}'"
    if error.validator == "minLength" and error.instance == "":
        return f"{_quote(path, rename)} is empty"
    found = _x_error(root, path)
    if found is not None:
        text, depth = found
        value = _value_at(instance, path[:depth])
        return f"{_quote(path[:depth], rename)} must be {text}, got {_short_json(value)}"
    if path:
        return f"{_quote(path, rename)}: {error.message}"
    return error.message


def _x_error(root: dict[str, Any], path: Sequence[str | int]) -> tuple[str, int] | None:
    """The deepest ``x-error`` on the way down ``path``, and how deep it sits."""
    node: Any = root
    found: tuple[str, int] | None = None
    for depth, key in enumerate(path, start=1):
        node = _deref(root, node)
        node = node.get("items") if isinstance(key, int) else node.get("properties", {}).get(key)
        if not isinstance(node, dict):
            break
        node = _deref(root, node)
        if isinstance(node.get("x-error"), str):
            found = (node["x-error"], depth)
    return found


def _deref(root: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if not (isinstance(ref, str) and ref.startswith("#/")):
        return node
    target: Any = root
    for part in ref[2:].split("/"):
        target = target[part]
    return target


def _value_at(instance: Any, path: Sequence[str | int]) -> Any:
    for key in path:
        instance = instance[key]
    return instance


def _quote(path: Sequence[str | int], rename: Mapping[str, str]) -> str:
    """A path as the user would write it: 'messages[0].content', 'body.temperature'."""
    out = ""
    for i, key in enumerate(path):
        if isinstance(key, int):
            out += f"[{key}]"
        else:
            name = rename.get(key, key) if i == 0 else key
            out += f".{name}" if out else name
    return f"'{out}'"


def _rename_quoted(message: str, rename: Mapping[str, str]) -> str:
    for old, new in rename.items():
        message = message.replace(f"'{old}'", f"'{new}'")
    return message


def _short_json(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= _GOT_CHARS else text[: _GOT_CHARS - 3] + "..."


# ---------------------------------------------------------------------- compiled fast path
_ANNOTATIONS = frozenset({"$schema", "$id", "$comment", "$defs", "title", "description", "x-error", "x-message"})
_TYPE_CHECKS: dict[str, Check] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "null": lambda v: v is None,
    "boolean": lambda v: isinstance(v, bool),
}


@cache
def _fast_check(name: SchemaName) -> Check:
    root = load_schema(name)
    return _compile(root, root)


def _compile(node: Mapping[str, Any], root: Mapping[str, Any]) -> Check:
    """A predicate equivalent to the schema ``node`` for the keywords adam's schemas use."""
    checks: list[Check] = []
    for key, value in node.items():
        if key in _ANNOTATIONS or key in ("then", "else"):  # then/else are read with their "if"
            continue
        build = _KEYWORDS.get(key)
        if build is None:
            raise NotImplementedError(f"schema keyword {key!r} has no compiled check; add one in {__name__}")
        checks.append(build(value, node, root))
    if len(checks) == 1:
        return checks[0]
    return lambda v: all(check(v) for check in checks)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _equal(a: Any, b: Any) -> bool:
    """JSON equality as JSON Schema means it: true is not 1, 1 is 1.0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, dict)) or isinstance(b, (list, dict)):
        return False
    return bool(a == b)


def _k_type(value: Any, node: Any, root: Any) -> Check:
    tests = [_TYPE_CHECKS[t] for t in ([value] if isinstance(value, str) else value)]
    return lambda v: any(t(v) for t in tests)


def _k_properties(value: Any, node: Any, root: Any) -> Check:
    subs = {name: _compile(sub, root) for name, sub in value.items()}
    return lambda v: not isinstance(v, dict) or all(sub(v[k]) for k, sub in subs.items() if k in v)


def _k_items(value: Any, node: Any, root: Any) -> Check:
    sub = _compile(value, root)
    return lambda v: not isinstance(v, list) or all(sub(x) for x in v)


def _k_ref(value: Any, node: Any, root: Any) -> Check:
    if not value.startswith("#/"):
        raise NotImplementedError(f"only local $refs are compiled, not {value!r}")
    target = root
    for part in value[2:].split("/"):
        target = target[part]
    compiled: list[Check] = []  # compiled on first use, so a recursive $ref cannot loop here

    def check(v: Any) -> bool:
        if not compiled:
            compiled.append(_compile(target, root))
        return compiled[0](v)

    return check


def _k_if(value: Any, node: Any, root: Any) -> Check:
    cond, then, other = (
        _compile(value, root),
        _compile(node.get("then", {}), root),
        _compile(node.get("else", {}), root),
    )
    return lambda v: then(v) if cond(v) else other(v)


def _k_all_of(value: Any, node: Any, root: Any) -> Check:
    subs = [_compile(sub, root) for sub in value]
    return lambda v: all(sub(v) for sub in subs)


def _k_not(value: Any, node: Any, root: Any) -> Check:
    sub = _compile(value, root)
    return lambda v: not sub(v)


_KEYWORDS: dict[str, Callable[[Any, Any, Any], Check]] = {
    "type": _k_type,
    "properties": _k_properties,
    "items": _k_items,
    "$ref": _k_ref,
    "if": _k_if,
    "allOf": _k_all_of,
    "not": _k_not,
    "required": lambda value, node, root: lambda v: not isinstance(v, dict) or all(k in v for k in value),
    "enum": lambda value, node, root: lambda v: any(_equal(v, e) for e in value),
    "const": lambda value, node, root: lambda v: _equal(v, value),
    "minLength": lambda value, node, root: lambda v: not isinstance(v, str) or len(v) >= value,
    "minItems": lambda value, node, root: lambda v: not isinstance(v, list) or len(v) >= value,
    "maxItems": lambda value, node, root: lambda v: not isinstance(v, list) or len(v) <= value,
    # written as jsonschema compares (fail only when the bound is broken), so the two agree even on NaN
    "minimum": lambda value, node, root: lambda v: not _is_number(v) or not v < value,
    "maximum": lambda value, node, root: lambda v: not _is_number(v) or not v > value,
    "exclusiveMinimum": lambda value, node, root: lambda v: not _is_number(v) or not v <= value,
    "exclusiveMaximum": lambda value, node, root: lambda v: not _is_number(v) or not v >= value,
}
