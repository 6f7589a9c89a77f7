"""The Batch API reads lines as OpenAI's does: what fails a whole batch at validation, and what is one request's
own error in the error file (as its HTTP route answers) while the other lines run; validation off the event loop."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import openai
from serving import CHAT_ID, OLLAMA_NAME, engine_for, serving
from test_batch_api import client_for, lines_of, submit, wait_for

OTHER_ID = "Qwen/Qwen3-0.6B"  # size=qwen3_small, a second chat model beside size=demo


def line(custom_id: str, url: str = "/v1/chat/completions", **body: Any) -> str:
    body = {"messages": [{"role": "user", "content": f"say {custom_id}"}], **body}
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": url, "body": body})


def jsonl(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def run_batch(client: openai.OpenAI, data: bytes) -> Any:
    return wait_for(client, submit(client, data).id)


def test_a_line_for_another_endpoint_fails_the_batch_with_its_line(tmp_path: Path) -> None:
    data = jsonl(line("a"), json.dumps({"custom_id": "b", "method": "POST", "url": "/v1/completions",
                                        "body": {"model": CHAT_ID, "prompt": "hi"}}), line("c"))  # fmt: skip
    with serving(engine_for(), state_dir=str(tmp_path)) as server:
        failed = run_batch(client_for(server.url), data)
    assert failed.status == "failed" and failed.errors is not None and failed.output_file_id is None
    (problem,) = failed.errors.data
    assert problem.line == 2 and "'/v1/completions' is not the batch's endpoint" in problem.message


def test_lines_naming_two_served_models_fail_but_names_of_one_model_do_not(tmp_path: Path) -> None:
    with serving(engine_for(), engine_for("size=qwen3_small"), state_dir=str(tmp_path)) as server:
        client = client_for(server.url)
        assert OTHER_ID in [m.id for m in client.models.list().data]
        mixed = run_batch(client, jsonl(line("a", model=CHAT_ID), line("b", model="demo"), line("c", model=OTHER_ID)))
        assert mixed.status == "failed" and mixed.errors is not None
        (problem,) = mixed.errors.data
        assert problem.code == "mixed_models" and problem.line == 3
        assert f"'{CHAT_ID}' (line 1) and '{OTHER_ID}' (line 3)" in problem.message
        aliases = run_batch(client, jsonl(line("a", model=CHAT_ID), line("b", model=OLLAMA_NAME), line("c")))
        assert aliases.status == "completed" and aliases.model == CHAT_ID
        other = run_batch(client, jsonl(line("a", model=OTHER_ID), line("b", model="qwen3_small")))
        assert other.status == "completed" and other.model == OTHER_ID  # the model the lines name answers them
        rows = lines_of(client.files.content(other.output_file_id).content)
    assert [r["response"]["body"]["model"] for r in rows] == ["qwen3_small", "qwen3_small"]  # its engine's name


def test_a_model_not_served_and_a_value_out_of_range_are_those_requests_errors(tmp_path: Path) -> None:
    unknown = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    data = jsonl(line("ok-1", model=CHAT_ID), line("hot", model=CHAT_ID, temperature=5),
                 json.dumps({"custom_id": "elsewhere", "method": "POST", "url": "/v1/chat/completions",
                             "body": unknown}), line("ok-2"))  # fmt: skip
    with serving(engine_for(), state_dir=str(tmp_path)) as server:
        client = client_for(server.url)
        done = run_batch(client, data)
        assert done.status == "completed", done
        assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (4, 2, 2)
        answered = lines_of(client.files.content(done.output_file_id).content)
        errors = {r["custom_id"]: r for r in lines_of(client.files.content(done.error_file_id).content)}
        route = httpx.post(f"{server.url}/v1/chat/completions", json=unknown)  # what the HTTP route answers
    assert sorted(r["custom_id"] for r in answered) == ["ok-1", "ok-2"]
    assert errors["elsewhere"]["response"]["status_code"] == route.status_code == 404
    assert errors["elsewhere"]["response"]["body"] == route.json()
    assert route.json()["error"]["code"] == "model_not_found"
    hot = errors["hot"]["response"]
    assert hot["status_code"] == 400 and hot["body"]["error"]["type"] == "invalid_request_error"
    assert hot["body"]["error"]["message"] == "'temperature' must be a number between 0 and 2, got 5"
    assert hot["body"]["error"]["param"] == "temperature"
    assert errors["hot"]["line"] == 2 and errors["elsewhere"]["line"] == 3


def test_health_answers_while_a_large_file_validates(tmp_path: Path) -> None:
    # long enough (a few seconds) that a held event loop stands out from the GIL's switching delays
    data = jsonl(*(line(f"r{i}", model=CHAT_ID) for i in range(40_000)))
    with serving(engine_for(), state_dir=str(tmp_path)) as server:
        client = client_for(server.url)
        validated = threading.Event()
        took: list[float] = []

        def upload_and_validate() -> None:
            started = time.monotonic()
            batch = submit(client, data)
            wait_for(client, batch.id, ("in_progress", "completed", "failed"), timeout=120)
            took.append(time.monotonic() - started)
            client.batches.cancel(batch.id)
            validated.set()

        worker = threading.Thread(target=upload_and_validate)
        worker.start()
        slowest, answered = 0.0, 0
        with httpx.Client(timeout=60) as health:  # one client: a new one per call would time its own TLS setup
            while not validated.is_set():
                asked = time.monotonic()
                assert health.get(f"{server.url}/health").status_code == 200
                slowest, answered = max(slowest, time.monotonic() - asked), answered + 1
                time.sleep(0.01)
        worker.join()
    # blocking the event loop, validation would hold /health for about as long as it takes
    assert slowest < took[0] / 4, (slowest, took[0])
    assert answered >= took[0] / 0.1, (answered, took[0])  # not held for tens of ms a request either
