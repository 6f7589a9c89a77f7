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


MAX_NODES = 10_000  # values (and array items) one instance may hold: a hostile minItems must not fill memory
MAX_TEXT = 100_000  # characters a built string may need (minLength)
MAX_DEPTH = 32  # values nested in values, $ref followed: a schema that refers to itself must stop somewhere
OPTIONAL_DEPTH = 4  # optional properties are built this deep only, so a tree's optional children end the tree


class UnsupportedSchema(ValueError):
    """A schema keyword the instance builder does not handle, or a schema it cannot build a value of."""


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
    """A value that validates against ``schema``; UnsupportedSchema (one line) when a keyword is beyond it, or when
    it has no value small enough to build (an empty enum, a $ref to nowhere, recursion without end, huge sizes)."""
    keyword = unsupported_keyword(schema)
    if keyword is not None:
        raise UnsupportedSchema(f"the echo backend cannot build an instance of a schema using '{keyword}'")
    return _Builder(schema).value(schema, "value", 0)


class _Builder:
    """Builds one instance of ``root``, counting what it builds against MAX_NODES."""

    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root
        self.nodes = 0

    def value(self, node: Any, name: str, depth: int) -> Any:
        self.nodes += 1
        if depth > MAX_DEPTH:
            raise UnsupportedSchema(
                f"the echo backend cannot build an instance of this schema: it nests (or refers to itself) more "
                f"than {MAX_DEPTH} levels deep"
            )
        if self.nodes > MAX_NODES:
            raise UnsupportedSchema(f"the echo backend builds instances of at most {MAX_NODES:,} values")
        if node is True or node is None or node == {}:
            return name
        if not isinstance(node, Mapping):
            raise UnsupportedSchema("the echo backend cannot build an instance of a schema that is false")
        if "$ref" in node:
            return self.value(_resolve(self.root, node["$ref"]), name, depth + 1)
        if "const" in node:
            return node["const"]
        if "enum" in node:
            if not node["enum"]:
                raise UnsupportedSchema("the schema has an empty enum: no value is valid")
            return node["enum"][0]
        for key in ("anyOf", "oneOf"):
            if key in node:
                return self.value(node[key][0], name, depth + 1)
        kind = node.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind is None:
            kind = "object" if "properties" in node else "array" if "items" in node else "string"
        return _BUILDERS[kind](self, node, name, depth)

    def object(self, node: Mapping[str, Any], name: str, depth: int) -> dict[str, Any]:
        props = node.get("properties") or {}
        required = set(node.get("required") or ())
        return {
            key: self.value(sub, key, depth + 1)
            for key, sub in props.items()
            if key in required or depth < OPTIONAL_DEPTH
        }

    def array(self, node: Mapping[str, Any], name: str, depth: int) -> list[Any]:
        low, high = int(node.get("minItems", 1 if depth < OPTIONAL_DEPTH else 0)), node.get("maxItems")
        if high is not None and low > int(high):
            raise UnsupportedSchema(f"the schema asks for minItems {low} > maxItems {high}: no array is valid")
        count = max(low, 0) if high is None else min(max(low, 0), int(high))
        if count > 1 and node.get("uniqueItems"):
            raise UnsupportedSchema("the echo backend cannot build several unique items (uniqueItems with minItems)")
        if count > MAX_NODES:
            raise UnsupportedSchema(f"the echo backend builds instances of at most {MAX_NODES:,} values")
        if count == 0:
            return []
        item = self.value(node.get("items", {}), name, depth + 1)
        self.nodes += count - 1
        if self.nodes > MAX_NODES:
            raise UnsupportedSchema(f"the echo backend builds instances of at most {MAX_NODES:,} values")
        return [item] * count

    def string(self, node: Mapping[str, Any], name: str, depth: int) -> str:
        text = name or "text"
        low, high = int(node.get("minLength", 0)), node.get("maxLength")
        if high is not None and low > int(high):
            raise UnsupportedSchema(f"the schema asks for minLength {low} > maxLength {high}: no string is valid")
        if low > MAX_TEXT:
            raise UnsupportedSchema(f"the echo backend builds strings of at most {MAX_TEXT:,} characters (minLength)")
        text += "x" * max(low - len(text), 0)
        return text if high is None else text[: int(high)]


def _number(node: Mapping[str, Any], *, integer: bool = False) -> float | int:
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


def _resolve(root: Mapping[str, Any], ref: Any) -> Any:
    if not isinstance(ref, str) or not ref.startswith("#"):
        raise UnsupportedSchema(f"the echo backend resolves only local $ref, not {str(ref)[:100]!r}")
    node: Any = root
    try:
        for part in [p for p in ref[1:].split("/") if p]:
            key = part.replace("~1", "/").replace("~0", "~")
            node = node[int(key)] if isinstance(node, list) else node[key]
    except (KeyError, IndexError, TypeError, ValueError):
        raise UnsupportedSchema(f"$ref {ref[:100]!r} points at nothing in the schema") from None
    return node


_BUILDERS: dict[str, Any] = {
    "object": _Builder.object,
    "array": _Builder.array,
    "string": _Builder.string,
    "integer": lambda builder, node, name, depth: _number(node, integer=True),
    "number": lambda builder, node, name, depth: _number(node),
    "boolean": lambda builder, node, name, depth: True,
    "null": lambda builder, node, name, depth: None,
}
