"""Structured output through the protocol, the engine and the echo backend: what is read, refused and checked.

The constrained decoding itself (llguidance masks on huggingface and llamacpp) is in tests/backends/test_constraints.py;
the same constrained request through the three doors in tests/server/test_parity.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from helpers import EXAMPLES, compose_cfg, read_jsonl, write_jsonl

from adam.backends.schema_instance import UnsupportedSchema, instance
from adam.errors import ConfigError, ExitCode
from adam.protocol.openai import CHAT, COMPLETIONS, Refused, read_body
from adam.protocol.structured import check_output, read_structured
from adam.run.runner import run

TICKET = json.loads((EXAMPLES / "ticket.schema.json").read_text(encoding="utf-8"))
SEVERITY = {"type": "object", "properties": {"severity": {"type": "integer", "minimum": 1, "maximum": 4}},
            "required": ["severity"]}  # fmt: skip


def _rf(schema: dict) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}


# --------------------------------------------------------------------- the protocol
def test_the_ways_to_ask_are_read_into_one_shape() -> None:
    assert read_structured({"response_format": {"type": "json_object"}}) == {"response_format": {"type": "json_object"}}
    assert read_structured({"response_format": {"type": "text"}}) == {}
    assert read_structured({"response_format": _rf(SEVERITY)})["response_format"]["json_schema"]["schema"] == SEVERITY
    assert read_structured({"choice": ["yes", "no"]}) == {"choice": ["yes", "no"]}
    assert read_structured({"structured_outputs": {"choice": ["yes", "no"]}}) == {"choice": ["yes", "no"]}
    from_vllm = read_structured({"structured_outputs": {"json": SEVERITY}})
    assert from_vllm["response_format"]["json_schema"]["schema"] == SEVERITY
    assert read_structured({"logprobs": True, "top_logprobs": 3}) == {"logprobs": True, "top_logprobs": 3}
    assert read_structured({"logprobs": False}) == {}


@pytest.mark.parametrize(
    ("body", "message", "param"),
    [
        ({"response_format": {"type": "xml"}}, "response_format.type must be text, json_object or json_schema",
         "response_format"),
        ({"response_format": {"type": "json_schema"}}, "needs json_schema.schema", "response_format"),
        ({"response_format": _rf({"type": "nope"})}, "is not a valid JSON schema", "response_format"),
        ({"choice": ["a", "a"]}, "lists a label twice", "choice"),
        ({"choice": ["a"], "response_format": {"type": "json_object"}}, "not both", "choice"),
        ({"structured_outputs": {"regex": "a+"}}, "structured_outputs.regex is not supported", "structured_outputs"),
        ({"top_logprobs": 2}, "top_logprobs needs logprobs: true", "top_logprobs"),
    ],
)  # fmt: skip
def test_a_malformed_request_is_refused_the_same_at_every_door(body: dict, message: str, param: str) -> None:
    with pytest.raises(Refused, match=message) as refused:
        read_structured(body)
    assert refused.value.param == param
    chat = {"messages": [{"role": "user", "content": "hi"}], **body}
    with pytest.raises(Refused, match=message):  # the HTTP route's and a batch line's reading
        read_body(CHAT, chat)


def test_a_text_completion_asks_no_logprobs() -> None:
    with pytest.raises(Refused, match="chat requests only") as refused:
        read_body(COMPLETIONS, {"prompt": "hi", "logprobs": 2})
    assert refused.value.code == "unsupported"


def test_answers_are_checked_against_their_constraint() -> None:
    assert check_output('{"severity": 2}', response_format=_rf(SEVERITY), choice=()) == ({"severity": 2}, None)
    value, problem = check_output('{"severity": 9}', response_format=_rf(SEVERITY), choice=())
    assert value is None and "9 is greater than the maximum of 4 (at severity)" in str(problem)
    assert "not JSON" in str(check_output('{"sev', response_format={"type": "json_object"}, choice=())[1])
    assert "not JSON" not in str(check_output("[1]", response_format={"type": "json_object"}, choice=())[1])
    assert check_output("no", response_format=None, choice=("yes", "no")) == ("no", None)
    assert (
        check_output("maybe", response_format=None, choice=("yes", "no"))[1] == "the answer is not one of the 2 choices"
    )


# --------------------------------------------------------------------- echo: an instance of the schema
NESTED = {
    "type": "object",
    "properties": {
        "items": {"type": "array", "items": {"$ref": "#/$defs/item"}, "minItems": 2, "maxItems": 4},
        "score": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "note": {"type": ["string", "null"], "minLength": 12},
        "kind": {"oneOf": [{"const": "a"}, {"type": "integer"}]},
        "done": {"type": "boolean"},
    },
    "required": ["items", "score"],
    "$defs": {"item": {"type": "object", "properties": {"n": {"type": "integer", "minimum": 5}}, "required": ["n"]}},
}


@pytest.mark.parametrize("schema", [TICKET, SEVERITY, NESTED, {"enum": ["x", "y"]}, {"type": "array"}])
def test_echo_builds_a_valid_instance(schema: dict) -> None:
    jsonschema.validate(instance(schema), schema)


def test_echo_refuses_a_keyword_it_cannot_satisfy() -> None:
    with pytest.raises(UnsupportedSchema, match="a schema using 'pattern'"):
        instance({"type": "object", "properties": {"code": {"type": "string", "pattern": "^[A-Z]+$"}}})


# --------------------------------------------------------------------- jobs on echo
def _run(tmp_path: Path, *overrides: str, name: str = "run"):
    return run(compose_cfg("backend=echo", *overrides, run_dir=tmp_path / name))


def test_a_schema_job_gives_a_valid_object_for_every_record(tmp_path: Path) -> None:
    summary = _run(tmp_path, f"job.input={EXAMPLES / 'tickets.jsonl'}", f"job.schema={EXAMPLES / 'ticket.schema.json'}")
    assert summary.exit_code == ExitCode.OK
    results = read_jsonl(summary.run_dir / "results.jsonl")
    assert len(results) == 6
    for line in results:
        jsonschema.validate(line["json"], TICKET)
        assert json.loads(line["text"]) == line["json"]


def test_records_ask_their_own_and_what_cannot_be_honoured_is_said(tmp_path: Path) -> None:
    rows = [
        {"id": "cut", "prompt": "a ticket", "max_tokens": 3},  # the job's schema, cut short
        {"id": "label", "prompt": "great phone", "choice": ["positive", "negative"]},  # replaces the job's schema
        {"id": "lp", "prompt": "hi", "logprobs": True},  # echo has no log-probabilities
        {"id": "pattern", "prompt": "hi", "response_format": _rf({"type": "string", "pattern": "a+"})},
        {"id": "bad", "prompt": "hi", "response_format": {"type": "json_schema"}},  # the record's own problem
    ]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    summary = _run(tmp_path, f"job.input={src}", f"job.schema={EXAMPLES / 'ticket.schema.json'}")
    assert summary.exit_code == ExitCode.PARTIAL
    (label,) = read_jsonl(summary.run_dir / "results.jsonl")
    assert label["id"] == "label" and label["text"] in ("positive", "negative") and "json" not in label
    errors = {e["id"]: e for e in read_jsonl(summary.run_dir / "errors.jsonl")}
    cut = errors["cut"]
    assert cut["error"]["code"] == "schema_mismatch" and cut["finish_reason"] == "length"
    assert cut["text"] == '{"product": "product", "severity":' and "cut short by max_tokens" in cut["error"]["message"]
    assert errors["lp"]["error"] == {
        "code": "unsupported",
        "message": "the echo backend does not give log-probabilities",
    }
    assert (
        errors["pattern"]["error"]["message"] == "the echo backend cannot build an instance of a schema using 'pattern'"
    )
    assert (
        errors["bad"]["error"]["code"] == "invalid_input" and "json_schema.schema" in errors["bad"]["error"]["message"]
    )


def test_retry_errors_runs_schema_mismatches_again_with_more_room(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "prompt": f"ticket {i}"} for i in range(3)])
    schema = f"job.schema={EXAMPLES / 'ticket.schema.json'}"
    first = _run(tmp_path, f"job.input={src}", schema, "job.max_tokens=4")
    assert first.exit_code == ExitCode.NO_SUCCESS
    assert {e["error"]["code"] for e in read_jsonl(first.run_dir / "errors.jsonl")} == {"schema_mismatch"}
    again = _run(tmp_path, f"job.input={src}", schema, "job.max_tokens=64", f"job.resume={first.run_dir}",
                 "job.retry_errors=true", name="again")  # fmt: skip
    assert again.run_dir == first.run_dir and again.stats.ok == 3 and again.exit_code == ExitCode.OK
    assert read_jsonl(first.run_dir / "errors.jsonl") == []


def test_a_job_constraint_the_backend_cannot_honour_stops_before_the_run(tmp_path: Path) -> None:
    schema = write_jsonl(tmp_path / "s.json", [{"type": "object", "properties": {"a": {"pattern": "x"}}}])
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": 1, "prompt": "hi"}])
    with pytest.raises(ConfigError, match="cannot build an instance of a schema using 'pattern': the job's constraint"):
        _run(tmp_path, f"job.input={src}", f"job.schema={schema}")
    with pytest.raises(ConfigError, match=r"job\.choice: 'choice' lists a label twice"):
        _run(tmp_path, f"job.input={src}", "job.choice=[yes,yes]", name="b")
    with pytest.raises(ConfigError, match=r"set one of job\.response_format and job\.schema"):
        _run(tmp_path, f"job.input={src}", f"job.schema={schema}", "job.response_format={type: json_object}", name="c")


def test_job_choice_labels_every_record(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "prompt": f"review {i}"} for i in range(8)])
    summary = _run(tmp_path, f"job.input={src}", "job.choice=[positive,negative,neutral]")
    labels = [r["text"] for r in read_jsonl(summary.run_dir / "results.jsonl")]
    assert len(labels) == 8 and set(labels) <= {"positive", "negative", "neutral"} and len(set(labels)) > 1
