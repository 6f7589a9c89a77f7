"""Structured output and log-probabilities, read once for every door: what a request may ask and what is refused.

A request constrains its answer in one of three ways, whichever door it came through:

- ``response_format``: ``{"type": "json_object"}`` (any JSON object) or ``{"type": "json_schema",
  "json_schema": {"name", "schema", "strict"}}`` (OpenAI's shape); ``{"type": "text"}`` asks for nothing;
- ``choice``: a list of labels, the answer is exactly one of them (vLLM's ``structured_outputs.choice``);
- a schema whose root is an ``enum``: the answer is one of its JSON values.

``logprobs`` / ``top_logprobs`` ask for each generated token's log-probability (and its most likely
alternatives), as OpenAI's chat API does. Everything is checked here (a malformed schema is the request's
400, worded the same at every door); whether the answering backend can honour it is the engine's question.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from adam.errors import ConfigError
from adam.protocol.refused import Refused

STRUCTURED = ("response_format", "choice", "structured_outputs", "logprobs", "top_logprobs")  # the fields read here
MAX_TOP_LOGPROBS = 20  # OpenAI's limit
MAX_CHOICES = 10_000  # labels in one choice list: llguidance compiles 10,000 in a third of a second, 100,000 not at all
# JSON nesting of a schema (objects and arrays): a real one is a few levels deep; jsonschema's checker recurses
# several Python frames per level and overflows the stack near 200, which must be the request's 400, not a 500
MAX_SCHEMA_DEPTH = 64
_STRUCTURED_OUTPUTS = ("choice", "json")  # the vLLM structured_outputs keys adam reads; others are refused
# A schema's `pattern` is the request's own regex, and an answer from a remote server is not held to it while it is
# made: Python's `re` could backtrack on it for hours, holding the GIL. Each search gets this long (the `regex`
# module's timeout), and an answer not checked in time is a schema mismatch that says so.
PATTERN_TIMEOUT_S = 0.25


def read_structured(src: Mapping[str, Any]) -> dict[str, Any]:
    """The constraint and log-probability params of a validated body or record (unset ones left out); Refused
    when they are malformed or contradict each other.

    Reads ``response_format``, ``choice``, vLLM's ``structured_outputs`` (``choice`` or ``json``), ``logprobs``
    and ``top_logprobs``; the result holds ``response_format`` (normalised), ``choice`` (a list of labels),
    ``logprobs`` (True) and ``top_logprobs`` (an int) where asked.
    """
    out: dict[str, Any] = {}
    response_format = normal_response_format(src.get("response_format"))
    choice = src.get("choice")
    outputs = src.get("structured_outputs")
    if outputs is not None:
        if not isinstance(outputs, Mapping):
            raise Refused(
                "'structured_outputs' must be an object such as {\"choice\": [...]}", param="structured_outputs"
            )
        asked = [key for key, value in outputs.items() if value is not None and value is not False]
        other = [key for key in asked if key not in _STRUCTURED_OUTPUTS]
        if other:
            raise Refused(
                f"structured_outputs.{other[0]} is not supported by this server: use choice or json "
                "(or response_format)",
                param="structured_outputs",
                code="unsupported",
            )
        if len(asked) > 1:
            raise Refused("give one of structured_outputs.choice or .json, not both", param="structured_outputs")
        if "json" in asked:
            if response_format is not None:
                raise Refused("give response_format or structured_outputs.json, not both", param="structured_outputs")
            schema = outputs["json"]
            if isinstance(schema, str):
                schema = _json_text(schema, "structured_outputs.json")
            response_format = normal_response_format(
                {"type": "json_schema", "json_schema": {"name": "structured_outputs", "schema": schema}}
            )
        if "choice" in asked:
            if choice is not None:
                raise Refused("give choice or structured_outputs.choice, not both", param="structured_outputs")
            choice = outputs["choice"]
    if choice is not None:
        out["choice"] = check_choice(choice)
        if response_format is not None:
            raise Refused("give choice or response_format, not both", param="choice")
    if response_format is not None:
        out["response_format"] = response_format
    out.update(_logprobs(src))
    return out


def normal_response_format(value: Any) -> dict[str, Any] | None:
    """A response_format as adam passes it on (None for none or ``text``); Refused when it is malformed.

    A json_schema one keeps OpenAI's shape, its schema checked against the JSON Schema meta-schema.
    """
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise Refused('\'response_format\' must be an object such as {"type": "json_object"}', param="response_format")
    kind = value.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind != "json_schema":
        raise Refused(
            f"response_format.type must be text, json_object or json_schema, got {json.dumps(kind)[:60]}",
            param="response_format",
        )
    spec = value.get("json_schema")
    if not isinstance(spec, Mapping) or not isinstance(spec.get("schema"), Mapping):
        raise Refused(
            "response_format type json_schema needs json_schema.schema, a JSON schema object",
            param="response_format",
        )
    schema = dict(spec["schema"])
    problem = schema_problem(schema)
    if problem is not None:
        raise Refused(
            f"response_format.json_schema.schema is not a valid JSON schema: {problem}", param="response_format"
        )
    out = {"name": str(spec.get("name") or "response"), "schema": schema}
    if spec.get("strict") is not None:
        out["strict"] = bool(spec["strict"])
    return {"type": "json_schema", "json_schema": out}


def schema_problem(schema: Mapping[str, Any]) -> str | None:
    """Why ``schema`` is not a valid JSON schema (its meta-schema's first complaint, or nested too deeply), or None."""
    from jsonschema.exceptions import SchemaError
    from jsonschema.validators import validator_for

    if nesting(schema) > MAX_SCHEMA_DEPTH:
        return f"it is nested more than {MAX_SCHEMA_DEPTH} levels deep"
    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as err:
        where = "/".join(str(p) for p in err.absolute_path)
        return f"{err.message}" + (f" (at {where})" if where else "")
    except RecursionError:
        return "it is nested too deeply to check"
    return None


def nesting(value: Any) -> int:
    """How deep objects and arrays nest in a JSON value (a scalar: 0), counted without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, Mapping) else node if isinstance(node, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def check_choice(value: Any) -> list[str]:
    """A choice list as given, checked: a non-empty list of at most MAX_CHOICES distinct non-empty strings."""
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise Refused("'choice' must be a non-empty list of non-empty strings", param="choice")
    if len(value) > MAX_CHOICES:
        raise Refused(f"'choice' lists {len(value)} labels: at most {MAX_CHOICES:,} are allowed", param="choice")
    if len(set(value)) != len(value):
        raise Refused("'choice' lists a label twice", param="choice")
    return list(value)


def _logprobs(src: Mapping[str, Any]) -> dict[str, Any]:
    want, top = src.get("logprobs"), src.get("top_logprobs")
    if top is not None:
        if top and not want:  # 0 asks for nothing, as OpenAI takes it
            raise Refused("top_logprobs needs logprobs: true", param="top_logprobs")
        if not 0 <= int(top) <= MAX_TOP_LOGPROBS:
            raise Refused(f"top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}", param="top_logprobs")
    if not want:
        return {}
    return {"logprobs": True, "top_logprobs": int(top or 0)}


def output_schema(response_format: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The JSON schema an answer must satisfy for a normalised response_format (None: no JSON asked)."""
    if not response_format:
        return None
    if response_format.get("type") == "json_object":
        return {"type": "object"}
    return dict(response_format["json_schema"]["schema"])


def check_output(text: str, *, response_format: Mapping[str, Any] | None, choice: Any) -> tuple[Any, str | None]:
    """(the parsed answer, None) when ``text`` satisfies the constraint, else (None, why not in one line).

    A choice answer is its label; a JSON answer is parsed and validated against its schema (jsonschema).
    """
    if choice:
        if text in choice:
            return text, None
        return None, f"the answer is not one of the {len(choice)} choices"
    schema = output_schema(response_format)
    if schema is None:
        return None, None
    try:
        value = json.loads(text)
    except ValueError as err:
        return None, f"the answer is not JSON ({err})"
    except RecursionError:
        return None, "the answer is JSON nested too deeply to read"
    from jsonschema.exceptions import best_match
    from jsonschema.validators import validator_for

    try:
        error = best_match(_checker(validator_for(schema))(schema).iter_errors(value))
    except RecursionError:  # a schema that refers to itself with nothing to stop it ({"$ref": "#"}), or a deep answer
        return None, "the answer cannot be checked: the schema or the answer nests too deeply"
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path)
        return None, f"the answer does not match the schema: {error.message}" + (f" (at {where})" if where else "")
    return value, None


class _Slow(Exception):
    """A pattern search that ran out of PATTERN_TIMEOUT_S (or a pattern the regex module cannot read)."""


def _search(pattern: str, text: str) -> bool:
    """Whether ``pattern`` matches somewhere in ``text``; _Slow, saying why in one line, when it cannot tell in time."""
    import regex

    try:
        return regex.search(pattern, text, timeout=PATTERN_TIMEOUT_S) is not None
    except TimeoutError as err:
        raise _Slow(f"{text[:40]!r} could not be checked against {pattern!r} within {PATTERN_TIMEOUT_S} s "
                    "(the pattern backtracks): simplify the pattern") from err  # fmt: skip
    except regex.error as err:  # a pattern `re` reads and `regex` does not: as jsonschema would fail it
        raise _Slow(f"the pattern {pattern!r} cannot be read: {err}") from err


def _pattern(validator: Any, patrn: str, instance: Any, schema: Any) -> Any:
    from jsonschema.exceptions import ValidationError

    if validator.is_type(instance, "string"):
        try:
            if not _search(patrn, instance):
                yield ValidationError(f"{instance!r} does not match {patrn!r}")
        except _Slow as slow:
            yield ValidationError(str(slow))


def _pattern_properties(validator: Any, patterns: dict[str, Any], instance: Any, schema: Any) -> Any:
    from jsonschema.exceptions import ValidationError

    if validator.is_type(instance, "object"):
        for patrn, subschema in patterns.items():
            for key, item in instance.items():
                try:
                    found = _search(patrn, key)
                except _Slow as slow:
                    yield ValidationError(str(slow))
                    continue
                if found:
                    yield from validator.descend(item, subschema, path=key, schema_path=patrn)


def _additional_properties(validator: Any, extra_schema: Any, instance: Any, schema: Any) -> Any:
    from jsonschema.exceptions import ValidationError

    if not validator.is_type(instance, "object"):
        return
    named, patterns, extras = schema.get("properties", {}), list(schema.get("patternProperties", {})), []
    for key in instance:
        if key in named:
            continue
        try:
            if any(_search(p, key) for p in patterns):
                continue
        except _Slow as slow:
            yield ValidationError(str(slow))
            continue
        extras.append(key)
    if validator.is_type(extra_schema, "object"):
        for key in extras:
            yield from validator.descend(instance[key], extra_schema, path=key)
    elif not extra_schema and extras:
        yield ValidationError(f"additional properties are not allowed ({', '.join(map(repr, sorted(extras)))})")


_TIMED_KEYWORDS = {
    "pattern": _pattern,
    "patternProperties": _pattern_properties,
    "additionalProperties": _additional_properties,
}


@cache
def _checker(base: Any) -> Any:
    """``base`` (a jsonschema validator class) with its regex keywords searching under PATTERN_TIMEOUT_S; made once
    per draft, not for every answer checked."""
    from jsonschema.validators import extend

    return extend(base, {k: v for k, v in _TIMED_KEYWORDS.items() if k in base.VALIDATORS})


def response_format_from_file(path: str | Path) -> dict[str, Any]:
    """job.schema: a JSON schema kept in a file, as the json_schema response_format every record gets."""
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as err:
        raise Refused(f"cannot read job.schema={path}: {err.strerror or err}", param="schema") from err
    schema = _json_text(text, f"job.schema={path}")
    if not isinstance(schema, dict):
        raise Refused(f"job.schema={path} must hold a JSON object (a JSON schema)", param="schema")
    problem = schema_problem(schema)
    if problem is not None:
        raise Refused(f"job.schema={path} is not a valid JSON schema: {problem}", param="schema")
    return {"type": "json_schema", "json_schema": {"name": file.stem, "schema": schema}}


def _json_text(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as err:
        raise Refused(f"{what} is not JSON: {err}", param="response_format") from err


def job_constraint(response_format: Any = None, schema: str | None = None, choice: Any = None) -> dict[str, Any]:
    """The constraint a job puts on every record (job.response_format, job.schema or job.choice), as the
    GenerationRequest fields it sets; ConfigError when it is malformed or more than one is set."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    def plain(value: Any) -> Any:
        return OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig | ListConfig) else value

    given = [name for name, value in (("response_format", response_format), ("schema", schema), ("choice", choice))
             if value]  # fmt: skip
    if len(given) > 1:
        raise ConfigError(f"set one of job.{given[0]} and job.{given[1]}, not both: each constrains every answer")
    try:
        if schema:
            return {"response_format": response_format_from_file(str(schema))}
        if response_format:
            return {"response_format": normal_response_format(plain(response_format))}
        if choice:
            return {"choice": tuple(check_choice(list(plain(choice))))}
    except Refused as err:
        if schema:  # its messages name the file already
            raise ConfigError(err.message) from err
        raise ConfigError(f"job.{given[0]}: {err.message}") from err
    return {}
