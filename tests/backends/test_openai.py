"""backend=openai through the real ``openai`` client: against a fake server (requests, faults) and llama.cpp's."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fake_openai import MODEL, FakeOpenAI
from helpers import compose_cfg, read_jsonl, write_jsonl
from llama_probe import demo_gguf, llama_cpp_problem
from pytest_httpserver import HTTPServer

from adam.backends.base import GenerationRequest
from adam.backends.openai import OpenAIBackend
from adam.errors import BackendError, BackendUnavailable, ContextOverflowError, ExitCode, ModelNotFoundError
from adam.run.runner import build_backend, run

KEY = "sk-test-not-a-real-key"


@pytest.fixture
def fake(monkeypatch) -> Iterator[FakeOpenAI]:
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    try:
        yield FakeOpenAI(server)
        server.check_handler_errors()
    finally:
        server.clear()
        server.stop()


def _backend(fake: FakeOpenAI, *overrides: str) -> OpenAIBackend:
    cfg = compose_cfg("backend=openai", "size=qwen3_small", f"backend.base_url={fake.url}", *overrides)
    backend = build_backend(cfg)
    assert isinstance(backend, OpenAIBackend)
    backend.backoff.sleep = lambda seconds: None  # retries without the wait
    return backend


def _chat(text: str, **kw) -> GenerationRequest:
    return GenerationRequest(messages=({"role": "user", "content": text},), **kw)


def test_a_chat_request_carries_the_right_fields_and_the_key(fake: FakeOpenAI) -> None:
    backend = _backend(fake)
    request = _chat("one two three", max_tokens=2, temperature=0.5, top_p=0.9, stop=("zzz",), seed=7)
    gen = backend.generate_one(request)
    assert (gen.text, gen.finish_reason, gen.completion_tokens, gen.prompt_tokens) == ("one two", "length", 2, 6)
    (body,) = fake.bodies("/v1/chat/completions")
    assert body["model"] == MODEL and body["messages"] == [{"role": "user", "content": "one two three"}]
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["seed"], body["stop"]) == (
        2,
        0.5,
        0.9,
        7,
        ["zzz"],
    )
    # qwen3_small has Qwen3's thinking switch: it goes as vLLM and SGLang take it
    assert body["chat_template_kwargs"] == {"enable_thinking": False}
    assert "ignore_eos" not in body  # sent only when asked: OpenAI itself refuses the field
    (seen,) = [r for r in fake.requests if r.path == "/v1/chat/completions"]
    assert seen.headers["Authorization"] == f"Bearer {KEY}"


def test_ignore_eos_goes_as_vllm_and_llama_cpp_server_take_it(fake: FakeOpenAI) -> None:
    _backend(fake).generate_one(_chat("one two", ignore_eos=True))
    _backend(fake).generate_one(_chat("one two", ignore_eos=True, max_tokens=1, stop=("x",)))
    first, second = fake.bodies("/v1/chat/completions")
    assert first["ignore_eos"] is True and second["ignore_eos"] is True and second["stop"] == ["x"]


def test_no_thinking_switch_is_sent_to_a_model_without_one(fake: FakeOpenAI) -> None:
    backend = _backend(fake, "size=demo", f"backend.model={MODEL}")
    backend.generate_one(_chat("hello there"))
    assert "chat_template_kwargs" not in fake.bodies("/v1/chat/completions")[0]


def test_reasoning_content_becomes_thinking_in_batch_and_stream(fake: FakeOpenAI) -> None:
    fake.reasoning = "Let me think."
    backend = _backend(fake)
    request = _chat("alpha beta", thinking=True)
    gen = backend.generate_one(request)
    assert (gen.text, gen.thinking) == ("alpha beta", "Let me think.")
    chunks = list(backend.stream(request))
    assert "".join(c.thinking for c in chunks) == "Let me think." and "".join(c.text for c in chunks) == "alpha beta"
    assert fake.bodies("/v1/chat/completions")[0]["chat_template_kwargs"] == {"enable_thinking": True}


def test_streamed_equals_non_streamed_for_chat_and_completions(fake: FakeOpenAI) -> None:
    backend = _backend(fake)
    for request in (_chat("a b c d e f", max_tokens=4, stop=("d",)), GenerationRequest(prompt="x y z", max_tokens=9)):
        gen = backend.generate_one(request)
        chunks = list(backend.stream(request))
        assert "".join(c.text for c in chunks) == gen.text
        assert chunks[-1].finish_reason == gen.finish_reason
        if not request.stop:  # a stop string closes the stream early, before the server's counts arrive
            assert (chunks[-1].prompt_tokens, chunks[-1].completion_tokens) == (
                gen.prompt_tokens,
                gen.completion_tokens,
            )
    assert fake.bodies("/v1/completions")[0]["prompt"] == "x y z"
    streamed = [b for b in fake.bodies("/v1/chat/completions") if b.get("stream")]
    assert streamed[0]["stream_options"] == {"include_usage": True}


def test_concurrent_requests_keep_their_order(fake: FakeOpenAI) -> None:
    fake.delay = 0.05
    backend = _backend(fake, "backend.concurrency=4")
    texts = [f"prompt number {i}" for i in range(12)]
    results = backend.generate([_chat(t) for t in texts])
    assert [r.text for r in results] == texts
    assert fake.max_in_flight == 4


def test_embeddings_go_many_inputs_per_request_and_come_back_unit_length(fake: FakeOpenAI) -> None:
    backend = _backend(fake, "backend.dimensions=6")
    texts = ["first text", "second one here", "third"]
    results = backend.embed(texts)
    (body,) = fake.bodies("/v1/embeddings")
    assert body["input"] == texts and body["dimensions"] == 6 and body["encoding_format"] == "float"
    assert [r.vector.shape for r in results] == [(6,)] * 3
    assert np.allclose([np.linalg.norm(r.vector) for r in results], 1.0)
    assert sum(r.tokens for r in results) == 6  # the server's total, shared out


def test_429_and_500_are_retried_then_a_persistent_500_fails_that_record(fake: FakeOpenAI) -> None:
    backend = _backend(fake, "backend.retries=2")
    fake.fail.extend([429, 503])
    assert backend.generate_one(_chat("ok then")).text == "ok then"
    assert len(fake.bodies("/v1/chat/completions")) == 3
    fake.fail.extend([500, 500, 500])
    (result,) = backend.generate([_chat("never")])
    assert isinstance(result, BackendError) and "gave up after 3 attempts" in str(result) and "HTTP 500" in str(result)


def test_a_stream_cut_midway_is_an_error_not_a_short_answer(fake: FakeOpenAI) -> None:
    backend = _backend(fake)
    fake.cut_stream = True
    with pytest.raises(BackendError, match="ended before the server said it was done"):
        list(backend.stream(_chat("one two three four five six")))


def test_unknown_model_and_dead_server_say_what_to_do(fake: FakeOpenAI, closed_port_url: str) -> None:
    with pytest.raises(ModelNotFoundError, match=r"does not serve nope/model .*backend\.model="):
        _backend(fake, "backend.model=nope/model").check_available()
    with pytest.raises(BackendUnavailable, match=r"no OpenAI-compatible server at .*backend\.base_url"):
        _backend(fake, f"backend.base_url={closed_port_url}/v1").check_available()


def test_a_job_writes_overflow_lines_and_keeps_the_key_out_of_every_file(fake: FakeOpenAI, tmp_path: Path) -> None:
    fake.context_window = 5
    rows = [{"id": "short", "prompt": "two words"}, {"id": "long", "prompt": " ".join(["w"] * 20)}]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    cfg = compose_cfg(
        "backend=openai", "size=qwen3_small", f"backend.base_url={fake.url}", f"job.input={src}", run_dir=tmp_path / "r"
    )
    summary = run(cfg)
    assert summary.exit_code == ExitCode.PARTIAL
    assert [(r["id"], r["text"]) for r in read_jsonl(summary.run_dir / "results.jsonl")] == [("short", "two words")]
    (error,) = read_jsonl(summary.run_dir / "errors.jsonl")
    assert error["id"] == "long" and error["error"]["code"] == "context_overflow"
    assert "maximum context length is 5" in error["error"]["message"]
    assert len(fake.bodies("/v1/chat/completions")) == 2  # the server judged the length, not a local estimate
    for path in summary.run_dir.rglob("*"):
        if path.is_file():
            assert KEY not in path.read_text(errors="replace"), path


def test_a_dead_server_stops_the_job_resumably(closed_port_url: str, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": 1, "prompt": "hi"}])
    cfg = compose_cfg(
        "backend=openai", f"backend.base_url={closed_port_url}/v1", f"job.input={src}", run_dir=tmp_path / "r"
    )
    summary = run(cfg)
    assert summary.exit_code == ExitCode.STOPPED and "job.resume=" in summary.message


def test_context_overflow_error_class_is_a_record_problem() -> None:
    assert ContextOverflowError("x").code == "context_overflow" and BackendError("x").code == "backend_error"


# ---------------------------------------------------------------------- a real server: llama-cpp-python's
def _demo_gguf() -> Path:
    path = demo_gguf()
    assert path is not None
    return path


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pytest.importorskip("llama_cpp.server", reason="llama-cpp-python[server] is not installed (make test builds it)")
    if (problem := llama_cpp_problem()) is not None:
        pytest.skip(problem)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(_demo_gguf()), "--model_alias", "smollm2"]
    # one thread: llama.cpp's threads spin while they wait, and on a busy 2-core machine two of them crawl
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", "1024", "--n_threads", "1", "--n_threads_batch", "1"]
    cmd += ["--verbose", "false"]
    log = tmp_path_factory.mktemp("llama-server") / "stderr.log"  # a file, not a pipe: a full pipe would block it
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log.open("wb"), env={**os.environ})
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"llama_cpp.server did not start: {log.read_text(errors='replace')[-2000:]}")
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.slow
def test_a_job_runs_against_llama_cpp_python_server(llama_server: str, tmp_path: Path) -> None:
    import openai

    system = {"role": "system", "content": "You are a helpful assistant. Answer clearly and concisely."}
    questions = {"capital": "What is the capital of France?", "colour": "What colour is the sky on a clear day?"}
    rows = [{"id": k, "messages": [system, {"role": "user", "content": q}]} for k, q in questions.items()]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    common = ["backend=openai", "size=demo", f"backend.base_url={llama_server}", "backend.model=smollm2"]
    greedy = ["job.temperature=0", "job.max_tokens=16"]
    summary = run(compose_cfg(*common, *greedy, f"job.input={src}", "backend.concurrency=1", run_dir=tmp_path / "r"))
    assert summary.exit_code == ExitCode.OK
    by_id = {r["id"]: r for r in read_jsonl(summary.run_dir / "results.jsonl")}
    assert "Paris" in by_id["capital"]["text"]
    manifest = json.loads((summary.run_dir / "manifest.json").read_text())
    assert manifest["backend"]["base_url"] == llama_server and manifest["backend"]["model"] == "smollm2"
    # the official client, asked the same directly, gets the same greedy answers
    client = openai.OpenAI(base_url=llama_server, api_key="x")
    for row in rows:
        direct = client.chat.completions.create(
            model="smollm2", messages=row["messages"], max_tokens=16, temperature=0, seed=0
        )
        assert by_id[row["id"]]["text"] == direct.choices[0].message.content.strip()
    # and streamed through adam it joins to the same text
    backend = build_backend(compose_cfg(*common))
    request = GenerationRequest(messages=tuple(rows[0]["messages"]), max_tokens=16, temperature=0.0, seed=0)
    assert "".join(c.text for c in backend.stream(request)) == by_id["capital"]["text"]
    backend.close()
