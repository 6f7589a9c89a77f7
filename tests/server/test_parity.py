"""One request, three doors, one answer: a JSONL job (``python -m adam``'s run), the HTTP route (``job=serve``) and a
Batch API batch give the identical chat completion, or the identical refusal, for the same request body.

On echo every time; on the demo model with the HF backend and with llama.cpp (``slow``: each loads it twice, for
the server and for the job). Each backend's three doors are asked once, in a module-scoped fixture.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import compose_cfg, read_jsonl
from llama_probe import llama_cpp_problem
from serving import CHAT_ID, engine_for, serving
from test_batch_api import client_for, lines_of, submit, wait_for

from adam.run.runner import run

USER = {"role": "user", "content": "Name three colours of the rainbow, please"}
COLOURS = {
    "type": "object",
    "properties": {"colour": {"enum": ["red", "green", "blue"]}, "count": {"type": "integer", "minimum": 1,
                   "maximum": 3}},
    "required": ["colour", "count"],
    "additionalProperties": False,
}  # fmt: skip
# body -> what it asks; every body names its max_tokens and temperature, so no door's defaults enter
REQUESTS: dict[str, dict[str, Any]] = {
    "parts": {  # text parts joined with "\n", a system message, a stop string, the thinking switch
        "messages": [
            {"role": "system", "content": "You answer in one short line."},
            {
                "role": "user",
                "content": [{"type": "text", "text": "Name a colour."}, {"type": "text", "text": "Then stop"}],
            },
        ],
        "stop": ["stop", "\n\n"],
        "chat_template_kwargs": {"enable_thinking": False},
        "temperature": 0,
    },
    "greedy": {"messages": [USER], "temperature": 0},
    "sampled": {"messages": [USER], "temperature": 0.9, "seed": 7},
    "tools": {"messages": [USER], "temperature": 0, "tools": [{"type": "function", "function": {"name": "f"}}]},
    "hot": {"messages": [USER], "temperature": 5},
    # structured output: a schema, a choice (vLLM's structured_outputs) and log-probabilities (echo has none: 400)
    "schema": {
        "messages": [USER],
        "temperature": 0,
        "max_tokens": 32,
        "response_format": {"type": "json_schema", "json_schema": {"name": "colours", "schema": COLOURS}},
    },
    "choice": {"messages": [USER], "temperature": 0, "structured_outputs": {"choice": ["red", "green", "blue"]}},
    "logprobs": {"messages": [USER], "temperature": 0, "logprobs": True, "top_logprobs": 2},
}
MAX_TOKENS = 6
BACKENDS = [
    pytest.param(("backend=echo",), id="echo"),
    pytest.param(("backend=huggingface", "hardware=cpu"), id="huggingface", marks=pytest.mark.slow),
    pytest.param(
        ("backend=llamacpp", "hardware=cpu"),
        id="llamacpp",
        marks=[pytest.mark.slow, pytest.mark.skipif(llama_cpp_problem() is not None, reason=str(llama_cpp_problem()))],
    ),
]
Answer = tuple[int, dict[str, Any]]  # (HTTP status, the body without its id, creation time and model name)


def batch_lines() -> bytes:
    lines = [
        {"custom_id": name, "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": CHAT_ID, "max_tokens": MAX_TOKENS, **body}}
        for name, body in REQUESTS.items()
    ]  # fmt: skip
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def answer(status: int, body: dict[str, Any]) -> Answer:
    """What must agree: the status and the body, less what names the call rather than the answer."""
    return status, {k: v for k, v in body.items() if k not in ("id", "created", "model")}


def same(one: Answer, other: Answer) -> bool:
    """Equal answers; log-probabilities within 1e-3, as a batch's padding moves a float's last bits (HF)."""
    (status, body), (status2, body2) = one, other
    values, values2 = _logprobs(body), _logprobs(body2)
    return status == status2 and _without(body) == _without(body2) and values == pytest.approx(values2, abs=1e-3)


def _logprobs(body: dict[str, Any]) -> list[float]:
    content = ((body.get("choices") or [{}])[0].get("logprobs") or {}).get("content") or []
    return [e["logprob"] for e in content] + [t["logprob"] for e in content for t in e["top_logprobs"]]


def _without(body: dict[str, Any]) -> Any:
    """``body`` with every logprob value taken out (the tokens stay)."""
    return json.loads(json.dumps(body), object_hook=lambda o: {k: v for k, v in o.items() if k != "logprob"})


def from_lines(rows: list[dict[str, Any]]) -> dict[str, Answer]:
    """OpenAI Batch output (or error) lines, by custom_id."""
    return {r["custom_id"]: answer(r["response"]["status_code"], r["response"]["body"]) for r in rows}


@pytest.fixture(scope="module", params=BACKENDS)
def doors(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Each door's answers by request name, for one backend: {"job": ..., "http": ..., "batch": ...}."""
    model: tuple[str, ...] = (*request.param, "size=demo")
    tmp = tmp_path_factory.mktemp("parity")
    data = batch_lines()
    (tmp / "requests.jsonl").write_bytes(data)
    run(compose_cfg(*model, f"job.input={tmp / 'requests.jsonl'}", run_dir=tmp / "run"))
    job = from_lines(read_jsonl(tmp / "run" / "results.jsonl") + read_jsonl(tmp / "run" / "errors.jsonl"))
    with serving(engine_for(*model), state_dir=str(tmp / "state")) as server:
        http = {}
        for name, body in REQUESTS.items():  # one at a time: each is a batch of its own
            reply = httpx.post(f"{server.url}/v1/chat/completions", json={"model": CHAT_ID, "max_tokens": MAX_TOKENS,
                                                                        **body}, timeout=300)  # fmt: skip
            http[name] = answer(reply.status_code, reply.json())
        client = client_for(server.url)
        done = wait_for(client, submit(client, data).id, timeout=600)
        assert done.status == "completed", done
        rows = lines_of(client.files.content(done.output_file_id).content)
        rows += lines_of(client.files.content(done.error_file_id).content)
    yield {"job": job, "http": http, "batch": from_lines(rows), "backend": request.param[0].split("=")[1]}


@pytest.mark.parametrize("name", list(REQUESTS))
def test_every_door_gives_the_same_answer(doors: dict[str, Any], name: str) -> None:
    http = doors["http"][name]
    assert same(doors["job"][name], http), "a JSONL job and the HTTP route disagree"
    assert same(doors["batch"][name], http), "a Batch API batch and the HTTP route disagree"
    status, body = http
    if name in ("tools", "hot") or (name == "logprobs" and doors["backend"] == "echo"):
        assert status == 400 and body["error"]["type"] == "invalid_request_error"
    else:
        assert status == 200 and body["choices"][0]["message"]["content"] is not None


def test_constrained_answers_hold_to_their_constraint(doors: dict[str, Any]) -> None:
    import jsonschema

    _, schema = doors["http"]["schema"]
    jsonschema.validate(json.loads(schema["choices"][0]["message"]["content"]), COLOURS)
    _, choice = doors["http"]["choice"]
    assert choice["choices"][0]["message"]["content"] in ("red", "green", "blue")
    _, logprobs = doors["http"]["logprobs"]
    if doors["backend"] == "echo":
        assert logprobs["error"]["message"] == "the echo backend does not give log-probabilities"
        assert logprobs["error"]["code"] == "unsupported"
        return
    content = logprobs["choices"][0]["logprobs"]["content"]
    assert len(content) == logprobs["usage"]["completion_tokens"]
    assert logprobs["choices"][0]["message"]["content"].strip()[:8] in "".join(e["token"] for e in content)
    for entry in content:  # greedy: the chosen token is the most likely one
        assert len(entry["top_logprobs"]) == 2 and entry["logprob"] <= 0
        assert entry["top_logprobs"][0]["logprob"] == pytest.approx(entry["logprob"], abs=1e-4)


def test_the_answers_and_refusals_read_as_they_should(doors: dict[str, Any]) -> None:
    _, tools = doors["http"]["tools"]
    assert tools["error"] == {"message": "tools are not supported by this server", "type": "invalid_request_error",
                              "param": "tools", "code": "unsupported"}  # fmt: skip
    _, hot = doors["http"]["hot"]
    assert hot["error"]["message"] == "'temperature' must be a number between 0 and 2, got 5"
    assert hot["error"]["param"] == "temperature"
    for name in ("parts", "greedy", "sampled"):
        usage = doors["http"][name][1]["usage"]
        assert 0 < usage["completion_tokens"] <= MAX_TOKENS and usage["prompt_tokens"] > 0


def test_text_parts_are_joined_with_a_newline(tmp_path: Path) -> None:
    """On echo, which answers the last user message's words: "colour." and "Then" stay two words."""
    with serving(engine_for()) as server:
        reply = httpx.post(f"{server.url}/v1/chat/completions", json={"model": CHAT_ID, **REQUESTS["parts"]})
    assert reply.json()["choices"][0]["message"]["content"] == "Name a colour. Then "


def test_an_embedding_request_gets_the_same_vector_through_every_door(tmp_path: Path) -> None:
    """Echo embeddings: the same floats (float32, shortest repr) and usage as a JSONL job, over HTTP and in a batch."""
    texts = {"short": "a cat", "long": "the quick brown fox jumps over the lazy dog"}
    lines = [{"custom_id": k, "method": "POST", "url": "/v1/embeddings", "body": {"model": "minilm", "input": v}}
             for k, v in texts.items()]  # fmt: skip
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    (tmp_path / "in.jsonl").write_bytes(data)
    run(compose_cfg("backend=echo", "size=minilm", "job=embed", f"job.input={tmp_path / 'in.jsonl'}",
                    run_dir=tmp_path / "run"))  # fmt: skip
    job = from_lines(read_jsonl(tmp_path / "run" / "results.jsonl"))
    with serving(engine_for("size=minilm"), state_dir=str(tmp_path / "state")) as server:
        http = {k: answer(200, httpx.post(f"{server.url}/v1/embeddings", json=line["body"]).json())
                for k, line in zip(texts, lines, strict=True)}  # fmt: skip
        client = client_for(server.url)
        done = wait_for(client, submit(client, data, endpoint="/v1/embeddings").id)
        batch = from_lines(lines_of(client.files.content(done.output_file_id).content))
    assert job == http == batch
    assert http["long"][1]["usage"] == {"prompt_tokens": 9, "total_tokens": 9}


def test_a_native_record_asking_for_tools_is_refused_as_the_http_route_refuses_it(tmp_path: Path) -> None:
    """A JSONL job's ``messages`` record names its own fields; ``tools`` is refused there too, in the same words."""
    tools = REQUESTS["tools"]["tools"]
    record = {"id": "t", "messages": [USER], "tools": tools, "max_tokens": MAX_TOKENS}
    (tmp_path / "in.jsonl").write_text(json.dumps(record) + "\n" + json.dumps({"id": "ok", "messages": [USER]}) + "\n")
    summary = run(
        compose_cfg("backend=echo", "size=demo", f"job.input={tmp_path / 'in.jsonl'}", run_dir=tmp_path / "run")
    )
    with serving(engine_for()) as server:
        reply = httpx.post(f"{server.url}/v1/chat/completions", json={"model": CHAT_ID, "messages": [USER],
                                                                    "tools": tools})  # fmt: skip
    assert reply.status_code == 400
    (error,) = read_jsonl(tmp_path / "run" / "errors.jsonl")
    assert (error["id"], error["error"]["message"]) == ("t", reply.json()["error"]["message"])
    assert summary.exit_code == 3 and [r["id"] for r in read_jsonl(tmp_path / "run" / "results.jsonl")] == ["ok"]
