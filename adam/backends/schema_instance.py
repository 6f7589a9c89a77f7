"""A valid instance of a JSON schema, for the echo backend: structured pipelines tested without a model.

The common keywords are supported (objects with properties and required, arrays with items and sizes, strings
with enum/const and lengths, integers and numbers with ranges, booleans, null, anyOf/oneOf, local $ref); a
schema using any other validation keyword is refused in one line (``unsupported``) rather than answered with
something that might not validate.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# keywords that only annotate, or that the instance built here satisfies whatever their value
_IGNORED = frozenset({
    "$schema", "$id", "$comment", "title", "description", "default", "examples", "deprecated", "readOnly",
    "writeOnly", "format", "additionalProperties", "unevaluatedProperties", "strict", "name", "$anchor",
    "contentMediaType", "contentEncoding",
})  # fmt: skip
_HANDLED = frozenset({
    "type", "properties", "required", "items", "minItems", "maxItems", "enum", "const", "minLength", "maxLength",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "anyOf", "oneOf", "$ref", "$defs", "definitions",
    "uniqueItems",
})  # fmt: skip


class UnsupportedSchema(ValueError):
    """A schema keyword the instance builder does not handle."""


def unsupported_keyword(schema: Any) -> str | None:
    """The first validation keyword of ``schema`` (at any depth) that instance() cannot satisfy; None: none."""
    stack = [schema]
    while stack:
        node = stack.pop()
        if not isinstance(node, Mapping):
            continue
        for key, value in node.items():
            if key in _IGNORED:
                continue
            if key not in _HANDLED:
                return key
            if key in ("properties", "$defs", "definitions"):
                stack.extend(value.values() if isinstance(value, Mapping) else ())
            elif key in ("anyOf", "oneOf"):
                stack.extend(value[:1] if isinstance(value, list) else ())
            elif key == "items":
                stack.append(value)
    return None


def instance(schema: Mapping[str, Any]) -> Any:
    """A value that validates against ``schema``; UnsupportedSchema when a keyword is beyond it."""
    keyword = unsupported_keyword(schema)
    if keyword is not None:
        raise UnsupportedSchema(f"the echo backend cannot build an instance of a schema using '{keyword}'")
    return _value(schema, schema, "value")


def _value(node: Any, root: Mapping[str, Any], name: str) -> Any:
    if node is True or node is None or node == {}:
        return name
    if not isinstance(node, Mapping):
        raise UnsupportedSchema("the echo backend cannot build an instance of a schema that is false")
    if "$ref" in node:
        return _value(_resolve(root, node["$ref"]), root, name)
    if "const" in node:
        return node["const"]
    if "enum" in node:
        return node["enum"][0]
    for key in ("anyOf", "oneOf"):
        if key in node:
            return _value(node[key][0], root, name)
    kind = node.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in node else "array" if "items" in node else "string"
    return _BUILDERS[kind](node, root, name)


def _object(node: Mapping[str, Any], root: Mapping[str, Any], name: str) -> dict[str, Any]:
    props = node.get("properties") or {}
    return {key: _value(sub, root, key) for key, sub in props.items()}


def _array(node: Mapping[str, Any], root: Mapping[str, Any], name: str) -> list[Any]:
    count = max(int(node.get("minItems", 1)), 0)
    count = min(count, int(node.get("maxItems", count)))
    item = _value(node.get("items", {}), root, name)
    if node.get("uniqueItems") and count > 1:
        raise UnsupportedSchema("the echo backend cannot build several unique items ('uniqueItems' with 'minItems')")
    return [item] * count


def _string(node: Mapping[str, Any], root: Mapping[str, Any], name: str) -> str:
    text = name or "text"
    low, high = int(node.get("minLength", 0)), node.get("maxLength")
    while len(text) < low:
        text += "x"
    return text if high is None else text[: int(high)]


def _number(node: Mapping[str, Any], root: Mapping[str, Any], name: str, *, integer: bool = False) -> float | int:
    step = 1 if integer else 0.5
    value: float = 0
    if "minimum" in node:
        value = node["minimum"]
    if "exclusiveMinimum" in node:
        value = max(value, node["exclusiveMinimum"] + step) if "minimum" in node else node["exclusiveMinimum"] + step
    if "maximum" in node and value > node["maximum"]:
        value = node["maximum"]
    if "exclusiveMaximum" in node and value >= node["exclusiveMaximum"]:
        value = node["exclusiveMaximum"] - step
    if integer:
        import math

        value = math.ceil(value) if "minimum" in node or "exclusiveMinimum" in node else math.floor(value)
        return int(value)
    return value


def _resolve(root: Mapping[str, Any], ref: str) -> Any:
    if not isinstance(ref, str) or not ref.startswith("#"):
        raise UnsupportedSchema(f"the echo backend resolves only local $ref, not {ref!r}")
    node: Any = root
    for part in [p for p in ref[1:].split("/") if p]:
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


_BUILDERS: dict[str, Any] = {
    "object": _object,
    "array": _array,
    "string": _string,
    "integer": lambda node, root, name: _number(node, root, name, integer=True),
    "number": _number,
    "boolean": lambda node, root, name: True,
    "null": lambda node, root, name: None,
}
