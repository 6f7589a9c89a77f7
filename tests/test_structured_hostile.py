"""Hostile constraints: recursive and dangling $ref, empty enums, huge sizes, deep nesting, huge choice lists. Each is
a one-line refusal (an error line in a job, the request's 400 over HTTP), never a traceback, a hang or a 500."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jsonschema
import pytest
from helpers import compose_cfg, read_jsonl, write_jsonl

from adam.backends.constraints import schema_problem as guide_problem
from adam.backends.schema_instance import UnsupportedSchema, instance
from adam.errors import ExitCode
from adam.protocol.refused import Refused
from adam.protocol.structured import MAX_CHOICES, check_output, read_structured
from adam.run.runner import run


def _rf(schema: object) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}


def _deep(levels: int) -> dict:
    schema: dict = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"a": schema}, "required": ["a"]}
    return schema


RECURSIVE = {"type": "object", "properties": {"a": {"$ref": "#"}}, "required": ["a"]}
HOSTILE = {  # name: (schema, what the echo backend says)
    "self": ({"$ref": "#"}, "refers to itself"),
    "recursive": (RECURSIVE, "refers to itself"),
    "dangling": ({"$ref": "#/$defs/nope"}, "points at nothing"),
    "empty_enum": ({"enum": []}, "empty enum"),
    "long_string": ({"type": "string", "minLength": 10**9}, "at most 100,000 characters"),
    "many_items": ({"type": "array", "items": {"type": "integer"}, "minItems": 10**9}, "at most 10,000 values"),
    "min_over_max": ({"type": "array", "minItems": 5, "maxItems": 2}, "minItems 5 > maxItems 2"),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_echo_refuses_a_schema_it_cannot_build_in_one_line_and_fast(name: str) -> None:
    schema, said = HOSTILE[name]
    started = time.perf_counter()
    with pytest.raises(UnsupportedSchema, match=said) as caught:
        instance(schema)
    assert time.perf_counter() - started < 2 and "\n" not in str(caught.value)


def test_echo_ends_a_tree_at_its_optional_children() -> None:
    tree = {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}},
                },
                "required": ["name"],
            }
        },
        "$ref": "#/$defs/node",
    }
    value = instance(tree)
    jsonschema.validate(value, tree)
    assert value["kids"] and value["kids"][0]["name"] == "name"


def test_a_deeply_nested_schema_is_refused_not_a_recursion_error() -> None:
    with pytest.raises(Refused, match="nested more than 64 levels deep"):
        read_structured({"response_format": _rf(_deep(200))})
    read_structured({"response_format": _rf(_deep(20))})  # a deep but sane one is read


def test_llguidance_problems_are_one_line() -> None:
    problem = guide_problem({"type": "string", "pattern": "(("})
    assert problem is not None and "unclosed group" in problem and "\n" not in problem
    assert "nests too deeply" in (guide_problem(_deep(3000)) or "")


def test_a_choice_list_too_long_to_compile_is_refused() -> None:
    with pytest.raises(Refused, match="at most 10,000"):
        read_structured({"choice": [f"label {i}" for i in range(MAX_CHOICES + 1)]})
    assert len(read_structured({"choice": [f"label {i}" for i in range(MAX_CHOICES)]})["choice"]) == MAX_CHOICES


def test_an_answer_too_deep_or_a_schema_without_end_is_a_mismatch_not_a_crash() -> None:
    value, problem = check_output("[" * 5000 + "]" * 5000, response_format={"type": "json_object"}, choice=None)
    assert value is None and "nested too deeply" in (problem or "")
    value, problem = check_output("1", response_format=_rf({"$ref": "#"}), choice=None)
    assert value is None and "nests too deeply" in (problem or "")


def test_a_pattern_that_backtracks_is_a_mismatch_that_says_so_not_a_hang() -> None:
    """An answer from a remote server is checked here, not held to the pattern while it was made: Python's `re`
    (and the `regex` module) doubles its time with each a of ^(a|a)*$ against a's and a '!' (26: 5 s, 40: a day);
    each search gets PATTERN_TIMEOUT_S."""
    slow, text = "^(a|a)*$", "a" * 26 + "!"
    value, problem = check_output(
        json.dumps(text), response_format=_rf({"type": "string", "pattern": slow}), choice=None
    )
    assert value is None and problem is not None and "could not be checked against '^(a|a)*$'" in problem
    keyed = {"type": "object", "patternProperties": {slow: {"type": "integer"}}, "additionalProperties": False}
    value, problem = check_output(json.dumps({text: 1}), response_format=_rf(keyed), choice=None)
    assert value is None and problem is not None and "the pattern backtracks" in problem
    # patterns that answer quickly keep their meaning
    fine = {"type": "object", "properties": {"code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]+$"}},
            "patternProperties": {"^x-": {"type": "integer"}}, "additionalProperties": False}  # fmt: skip
    assert check_output('{"code": "ABC-12", "x-n": 3}', response_format=_rf(fine), choice=None) == (
        {"code": "ABC-12", "x-n": 3}, None)  # fmt: skip
    for bad, why in (('{"code": "abc-12"}', "does not match"), ('{"x-n": "3"}', "is not of type 'integer'"),
                     ('{"other": 1}', "additional properties are not allowed ('other')")):  # fmt: skip
        value, problem = check_output(bad, response_format=_rf(fine), choice=None)
        assert value is None and problem is not None and why in problem, problem


def test_one_hostile_record_never_stops_the_others(tmp_path: Path) -> None:
    rows = [{"id": "ok1", "prompt": "hello"}]
    rows += [{"id": name, "prompt": "x", "response_format": _rf(schema)} for name, (schema, _) in HOSTILE.items()]
    # 45 levels: under the reader's own limit on a record's nesting (100), over a schema's (64)
    rows += [{"id": "deep", "prompt": "x", "response_format": _rf(_deep(45))}, {"id": "ok2", "prompt": "world"}]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    summary = run(compose_cfg("backend=echo", f"job.input={src}", run_dir=tmp_path / "run"))
    assert summary.exit_code == ExitCode.PARTIAL
    assert [r["id"] for r in read_jsonl(summary.run_dir / "results.jsonl")] == ["ok1", "ok2"]
    errors = {e["id"]: e["error"] for e in read_jsonl(summary.run_dir / "errors.jsonl")}
    assert set(errors) == {*HOSTILE, "deep"}
    for name, (_, said) in HOSTILE.items():
        assert errors[name]["code"] == "unsupported" and said in errors[name]["message"], name
    assert errors["deep"]["code"] == "invalid_input" and "64 levels" in errors["deep"]["message"]
