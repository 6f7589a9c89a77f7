"""The Ollama backend against a fake server that answers as Ollama's REST API documents.

The real ``ollama.Client`` does the HTTP; the tests assert on the requests the fake received.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from fake_ollama import FakeOllama, Model
from helpers import compose_cfg
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from adam.backends.base import GenerationRequest, StreamChunk
from adam.backends.ollama import OllamaBackend, normalise_host, ollama_format, split_tokens
from adam.backends.retry import Backoff, TransientError
from adam.errors import BackendError, BackendUnavailable, ConfigError, ModelNotFoundError
from adam.sharing.ollama_server import OllamaModels

TAG = "qwen3:0.6b"
FAST_RETRIES = ("backend.backoff=0.001", "backend.max_backoff=0.002")

MakeBackend = Callable[..., OllamaBackend]


@pytest.fixture
def make_backend(fake_ollama: FakeOllama, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[MakeBackend]:
    """Build OllamaBackends from the composed config (backend=ollama size=qwen3_small), closed after the test."""
    monkeypatch.setenv("ADAM_SHARE_DIR", str(tmp_path / "share"))  # an empty shared store, never the user's
    built: list[OllamaBackend] = []

    def make(*overrides: str, host: str | None = fake_ollama.url) -> OllamaBackend:
        extra = [f"backend.host={host}"] if host else []
        cfg = compose_cfg("backend=ollama", "size=qwen3_small", *FAST_RETRIES, *extra, *overrides)
        backend = instantiate(cfg.backend, _convert_="object")
        built.append(backend)
        return backend

    yield make
    for backend in built:
        backend.close()


def build_backend(cfg: object) -> OllamaBackend:
    """Instantiate the backend, unwrapping our own error from Hydra's (as the runner does)."""
    try:
        return instantiate(cfg.backend, _convert_="object")  # type: ignore[attr-defined]
    except InstantiationException as err:
        raise (err.__cause__ or err) from None


def chat(text: str = "hi", **kwargs: object) -> GenerationRequest:
    return GenerationRequest(messages=({"role": "user", "content": text},), **kwargs)  # type: ignore[arg-type]


def joined(chunks: list[StreamChunk]) -> tuple[str, str]:
    return "".join(c.text for c in chunks), "".join(c.thinking for c in chunks)


# --------------------------------------------------------------------- generation requests
def test_chat_request_carries_model_messages_and_options(make_backend: MakeBackend, fake_ollama: FakeOllama) -> None:
    backend = make_backend()
    messages = ({"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"})
    request = GenerationRequest(
        messages=messages, max_tokens=50, temperature=0.3, top_p=0.9, seed=7, stop=("END",), thinking=False
    )
    (gen,) = backend.generate([request])

    (body,) = fake_ollama.bodies("/api/chat")
    assert body["model"] == TAG
    assert body["messages"] == [dict(m) for m in messages]
    assert body["stream"] is False
    assert body["think"] is False
    assert body["options"] == {
        "num_ctx": 32768,
        "num_predict": 50,
        "temperature": 0.3,
        "top_p": 0.9,
        "seed": 7,
        "stop": ["END"],
    }
    assert "format" not in body and "keep_alive" not in body
    assert not isinstance(gen, BackendError)
    assert gen.text == "You said: hello there"
    assert gen.thinking is None
    assert (gen.prompt_tokens, gen.completion_tokens, gen.finish_reason) == (4, 4, "stop")


def test_long_context_sends_the_yarn_window(make_backend: MakeBackend, fake_ollama: FakeOllama) -> None:
    fake_ollama.models["qwen3:4b"] = Model("qwen3:4b")
    backend = make_backend("size=qwen3_large", "size.long_context=true")
    backend.generate_one(chat())
    assert fake_ollama.bodies("/api/chat")[0]["options"]["num_ctx"] == 131072


def test_num_ctx_follows_the_size(make_backend: MakeBackend, fake_ollama: FakeOllama) -> None:
    backend = make_backend("size.context_length=4096")
    backend.generate_one(chat())
    assert fake_ollama.bodies("/api/chat")[0]["options"]["num_ctx"] == 4096


def test_thinking_is_asked_for_and_kept_apart(make_backend: MakeBackend, fake_ollama: FakeOllama) -> None:
    gen = make_backend().generate_one(chat("why?", thinking=True))
    assert fake_ollama.bodies("/api/chat")[0]["think"] is True
    assert gen.thinking == "The user said 'why?'. I will echo it."
    assert gen.text == "You said: why?"


def test_think_tags_left_in_the_text_are_split_off(make_backend: MakeBackend, fake_ollama: FakeOllama) -> None:
    fake_ollama.responder = lambda body: (None, "<think>\nhmm\n</think>\n\nThe answer.")
    gen = make_backend().generate_one(chat())
    assert (gen.text, gen.thinking) == ("The answer.", "hmm")


def test_server_thinking_wins_over_tags(make_backend: MakeBackend, fake_ollama: FakeOllama) -> None:
    fake_ollama.responder = lambda body: ("from the server", "<think>from tags</think>The answer.")
    gen = make_backend().generate_one(chat(thinking=True))
    assert (gen.text, gen.thinking) == ("The answer.", "from the server")


def test_length_finish_reason_and_counts(make_backend: MakeBackend, fake_ollama: FakeOllama) -> None:
    gen = make_backend().generate_one(chat("one two three four", max_tokens=2))
    assert (gen.text, gen.finish_reason, gen.completion_tokens) == ("You said:", "length", 2)


def test_raw_prompt_goes_through_generate_raw(make_backend: MakeBackend, fake_ollama: FakeOllama) -> None:
    gen = make_backend("backend.keep_alive=5m").generate_one(GenerationRequest(prompt="Once upon", max_tokens=9))
    (body,) = fake_ollama.bodies("/api/generate")
    assert body["raw"] is True and body["prompt"] == "Once upon" and body["model"] == TAG
    assert body["keep_alive"] == "5m"
    assert body["options"]["num_ctx"] == 32768 and body["options"]["num_predict"] == 9
    assert "think" not in body
    assert not fake_ollama.calls("/api/chat")
    assert gen.text == "You said: Once upon"


BARE_SCHEMA = {"type": "object", "properties": {"a": {"type": "string"}}}


@pytest.mark.parametrize(
    ("response_format", "expected"),
    [
        (None, None),
        ({"type": "json_object"}, "json"),
        ({"type": "text"}, None),
        ({"type": "json_schema", "json_schema": {"name": "x", "schema": BARE_SCHEMA}}, BARE_SCHEMA),
        (BARE_SCHEMA, BARE_SCHEMA),
    ],
)
def test_response_format_becomes_ollama_format(
    make_backend: MakeBackend, fake_ollama: FakeOllama, response_format: dict | None, expected: object
) -> None:
    make_backend().generate_one(chat(response_format=response_format))
    assert fake_ollama.bodies("/api/chat")[0].get("format") == expected


def test_bad_response_format_fails_that_record_only() -> None:
    with pytest.raises(BackendError, match=r"json_schema\.schema"):
        ollama_format({"type": "json_schema", "json_schema": {}})


def test_keep_alive_seconds_are_sent_as_a_number(make_backend: MakeBackend, fake_ollama: FakeOllama) -> None:
    make_backend("backend.keep_alive='600'").generate_one(chat())
    assert fake_ollama.bodies("/api/chat")[0]["keep_alive"] == 600


# --------------------------------------------------------------------- host and config
def test_ollama_host_is_used_when_host_is_null(
    make_backend: MakeBackend, fake_ollama: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = fake_ollama.server.port
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{port}")  # bare host:port, as users set it
    backend = make_backend(host=None)
    assert backend.host == f"http://127.0.0.1:{port}"
    backend.generate_one(chat())
    assert len(fake_ollama.calls("/api/chat")) == 1


def test_default_host_without_config_or_env(make_backend: MakeBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OLLAMA_HOST", raising=False)
    assert make_backend(host=None).host == "http://127.0.0.1:11434"


@pytest.mark.parametrize(
    ("raw", "url"),
    [
        (None, "http://127.0.0.1:11434"),
        ("", "http://127.0.0.1:11434"),
        ("1.2.3.4", "http://1.2.3.4:11434"),
        (":5678", "http://127.0.0.1:5678"),
        ("example.com:5678/", "http://example.com:5678"),
        ("http://example.com", "http://example.com:80"),
        ("https://example.com", "https://example.com:443"),
        ("https://example.com:8443/ollama/", "https://example.com:8443/ollama"),
        ("[::1]:5678", "http://[::1]:5678"),
        ("0.0.0.0", "http://0.0.0.0:11434"),
    ],
)
def test_host_is_normalised_like_ollama_python(raw: str | None, url: str) -> None:
    assert normalise_host(raw) == url


def test_size_without_ollama_tag_is_a_one_line_config_error() -> None:
    cfg = compose_cfg("backend=ollama", "size=local", "size.path=/x")
    with pytest.raises(ConfigError) as err:
        build_backend(cfg)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("size=local has no Ollama model; pick a size with an ollama_tag (")
    assert "qwen3_small" in message and message.endswith("or set size.ollama_tag=<name:tag>")


def test_construction_makes_no_request(make_backend: MakeBackend, fake_ollama: FakeOllama) -> None:
    backend = make_backend()
    assert backend._http is None and backend._pool is None
    assert fake_ollama.requests == []


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("backend.concurrency=0", "backend.concurrency must be at least 1"),
        ("backend.retries=-1", "retries must be 0 or more"),
        ("backend.dimensions=0", "backend.dimensions must be at least 1"),
        ("backend.host=http://x:notaport", "bad port"),
    ],
)
def test_bad_backend_settings_are_config_errors(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_backend(compose_cfg("backend=ollama", "size=qwen3_small", override))


# --------------------------------------------------------------------- streaming
@pytest.mark.parametrize("thinking", [False, True])
def test_stream_joins_to_the_generated_text(make_backend: MakeBackend, fake_ollama: FakeOllama, thinking: bool) -> None:
    backend = make_backend()
    request = chat("stream me please", thinking=thinking, seed=1)
    gen = backend.generate_one(request)
    chunks = list(backend.stream(request))

    bodies = fake_ollama.bodies("/api/chat")
    assert [b["stream"] for b in bodies] == [False, True]
    assert bodies[0] | {"stream": True} == bodies[1]  # the same request otherwise
    assert len([c for c in chunks if c.text]) > 1  # really streamed
    assert joined(chunks) == (gen.text, gen.thinking or "")
    last = chunks[-1]
    assert (last.finish_reason, last.prompt_tokens, last.completion_tokens) == (
        gen.finish_reason,
        gen.prompt_tokens,
        gen.completion_tokens,
    )


def test_stream_cuts_stop_strings_like_generate(make_backend: MakeBackend, fake_ollama: FakeOllama) -> None:
    fake_ollama.responder = lambda body: (None, "alpha beta STOP gamma delta")
    backend = make_backend()
    request = chat(stop=("STOP",))
    gen = backend.generate_one(request)
    chunks = list(backend.stream(request))
    assert gen.text == "alpha beta "
    assert joined(chunks)[0] == gen.text
    assert chunks[-1].finish_reason == "stop"


def test_error_line_mid_stream_is_an_error_not_output(make_backend: MakeBackend, fake_ollama: FakeOllama) -> None:
    fake_ollama.stream_error = (2, "llama runner process has terminated")
    received: list[StreamChunk] = []
    with pytest.raises(BackendError, match="mid-stream: llama runner process has terminated"):
        for chunk in make_backend().stream(chat("a b c d e f")):
            received.append(chunk)
    text, _ = joined(received)
    assert "terminated" not in text and "error" not in text
    assert all(c.finish_reason is None for c in received)  # never presented as a finished answer
    assert len(fake_ollama.calls("/api/chat")) == 1  # not retried once output had started


def test_raw_prompt_streams_through_generate(make_backend: MakeBackend, fake_ollama: FakeOllama) -> None:
    chunks = list(make_backend().stream(GenerationRequest(prompt="tell me")))
    assert joined(chunks)[0] == "You said: tell me"
    assert fake_ollama.bodies("/api/generate")[0]["stream"] is True


# --------------------------------------------------------------------- embeddings
def test_embed_sends_one_request_for_the_whole_batch(make_backend: MakeBackend, fake_ollama: FakeOllama) -> None:
    texts = [f"text number {i}" + " word" * i for i in range(10)]
    results = make_backend("backend.dimensions=4").embed(texts)

    (body,) = fake_ollama.bodies("/api/embed")
    assert body["input"] == texts
    assert body["model"] == TAG and body["truncate"] is True and body["dimensions"] == 4
    assert len(results) == 10
    for result in results:
        assert not isinstance(result, BackendError)
        assert result.vector.dtype == np.float32 and result.vector.shape == (4,)
        assert abs(float(np.linalg.norm(result.vector)) - 1.0) < 1e-5
        assert result.truncated is False
    total = sum(max(len(t.split()), 1) for t in texts)
    assert sum(r.tokens for r in results) == total  # type: ignore[union-attr]


def test_embed_leaves_out_dimensions_when_unset_and_normalises(
    make_backend: MakeBackend, fake_ollama: FakeOllama
) -> None:
    fake_ollama.normalize_embeddings = False  # vectors of length 3
    (result,) = make_backend("backend.truncate=false").embed(["hello"])
    body = fake_ollama.bodies("/api/embed")[0]
    assert "dimensions" not in body and body["truncate"] is False
    assert abs(float(np.linalg.norm(result.vector)) - 1.0) < 1e-5  # type: ignore[union-attr]


def test_split_tokens_keeps_the_total() -> None:
    assert split_tokens(10, ["a", "bbbb", "ccccc"], len) == [1, 4, 5]
    assert sum(split_tokens(7, ["x"] * 3, len)) == 7
    assert split_tokens(None, ["abcd", "ab"], len) == [4, 2]


# --------------------------------------------------------------------- errors and retries
def test_missing_model_is_model_not_found_with_the_pull_hint(
    make_backend: MakeBackend, fake_ollama: FakeOllama
) -> None:
    fake_ollama.models.clear()
    with pytest.raises(ModelNotFoundError, match=f"ollama pull {TAG}`, or set backend.pull=missing"):
        make_backend().generate([chat()])
    assert len(fake_ollama.calls("/api/chat")) == 1  # a 404 is not retried


def test_server_error_is_retried_then_succeeds(make_backend: MakeBackend, fake_ollama: FakeOllama) -> None:
    fake_ollama.fail("/api/chat", 500, "unexpected server error")
    gen = make_backend().generate_one(chat())
    assert gen.text == "You said: hi"
    assert len(fake_ollama.calls("/api/chat")) == 2


def test_429_past_the_retries_is_a_backend_error(make_backend: MakeBackend, fake_ollama: FakeOllama) -> None:
    fake_ollama.fail("/api/chat", 429, "server busy, please try again.", times=3)
    (result,) = make_backend("backend.retries=2").generate([chat()])
    assert isinstance(result, BackendError) and not isinstance(result, TransientError)
    assert "server busy" in str(result) and "HTTP 429" in str(result) and "3 attempts" in str(result)
    assert len(fake_ollama.calls("/api/chat")) == 3


def test_400_fails_at_once(make_backend: MakeBackend, fake_ollama: FakeOllama) -> None:
    fake_ollama.fail("/api/chat", 400, 'registry.ollama.ai/library/qwen3:0.6b does not support "think"')
    (result,) = make_backend().generate([chat(thinking=True)])
    assert isinstance(result, BackendError) and "does not support" in str(result)
    assert len(fake_ollama.calls("/api/chat")) == 1


def test_timeout_is_retried(make_backend: MakeBackend, fake_ollama: FakeOllama) -> None:
    fake_ollama.stall("/api/chat", 1.0)
    gen = make_backend("backend.timeout=0.3").generate_one(chat())
    assert gen.text == "You said: hi"
    assert len(fake_ollama.calls("/api/chat")) == 2


def test_one_failing_request_fails_alone_without_rerunning_the_others(
    make_backend: MakeBackend, fake_ollama: FakeOllama
) -> None:
    fake_ollama.reject = lambda body: (400, "input too long") if body["messages"][-1]["content"] == "bad" else None
    results = make_backend().generate([chat("a"), chat("bad"), chat("c")])
    assert [getattr(r, "text", None) for r in results] == ["You said: a", None, "You said: c"]
    assert isinstance(results[1], BackendError) and "input too long" in str(results[1])
    assert len(fake_ollama.calls("/api/chat")) == 3


def test_refused_connection_is_backend_unavailable(make_backend: MakeBackend, closed_port_url: str) -> None:
    backend = make_backend(host=closed_port_url)
    expected = f"no Ollama server at {closed_port_url}: start it with `ollama serve` or set backend.host"
    with pytest.raises(BackendUnavailable) as err:
        backend.check_available()
    assert str(err.value) == expected
    with pytest.raises(BackendUnavailable, match="no Ollama server"):
        backend.generate([chat()])
    with pytest.raises(BackendUnavailable, match="no Ollama server"):
        list(backend.stream(chat()))
    with pytest.raises(BackendUnavailable, match="no Ollama server"):
        backend.embed(["x"])
    assert backend.info()["host"] == closed_port_url  # info() stays usable without a server


def test_backoff_doubles_caps_and_jitters() -> None:
    policy = Backoff(retries=5, base=1.0, maximum=4.0, random=lambda: 1.0)
    assert [policy.delay(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 4.0, 4.0]
    assert Backoff(retries=3, base=1.0, maximum=30.0, random=lambda: 0.0).delay(2) == 1.0  # never less than half


def test_backoff_retries_only_transient_errors() -> None:
    waits: list[float] = []
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TransientError("busy")
        return "ok"

    policy = Backoff(retries=3, base=0.5, maximum=30.0, sleep=waits.append, random=lambda: 0.0)
    assert policy.call(flaky) == "ok"
    assert waits == [0.25, 0.5]

    def broken() -> None:
        raise BackendError("bad request")

    with pytest.raises(BackendError, match=r"^bad request$"):
        policy.call(broken)


# --------------------------------------------------------------------- concurrency
def test_requests_overlap_up_to_concurrency_and_keep_their_order(
    make_backend: MakeBackend, fake_ollama: FakeOllama
) -> None:
    fake_ollama.delay = 0.2
    backend = make_backend("backend.concurrency=4")
    prompts = [f"prompt {i}" for i in range(8)]
    results = backend.generate([chat(p) for p in prompts])
    assert fake_ollama.max_in_flight == 4
    assert [r.text for r in results] == [f"You said: {p}" for p in prompts]  # type: ignore[union-attr]


# --------------------------------------------------------------------- model on the server
def test_check_available_with_the_model_present_does_not_pull(
    make_backend: MakeBackend, fake_ollama: FakeOllama
) -> None:
    make_backend().check_available()
    assert [r.path for r in fake_ollama.requests] == ["/api/tags", "/api/show"]


def test_pull_missing_pulls_the_model(make_backend: MakeBackend, fake_ollama: FakeOllama) -> None:
    fake_ollama.models.clear()
    backend = make_backend("backend.pull=missing")
    backend.check_available()
    (body,) = fake_ollama.bodies("/api/pull")
    assert body["model"] == TAG and body["stream"] is True
    assert [r.path for r in fake_ollama.requests] == ["/api/tags", "/api/show", "/api/pull"]
    assert backend.has_model()


def test_pull_never_fails_with_the_hint(make_backend: MakeBackend, fake_ollama: FakeOllama) -> None:
    fake_ollama.models.clear()
    with pytest.raises(ModelNotFoundError) as err:
        make_backend("backend.pull=never").check_available()
    assert str(err.value) == (
        f"model {TAG} is not on the Ollama server at {normalise_host(fake_ollama.url)}: "
        f"run `ollama pull {TAG}`, or set backend.pull=missing"
    )
    assert not fake_ollama.calls("/api/pull")


def test_pull_always_pulls_a_model_already_there(make_backend: MakeBackend, fake_ollama: FakeOllama) -> None:
    make_backend("backend.pull=always").check_available()
    assert len(fake_ollama.calls("/api/pull")) == 1


def test_pull_of_an_unknown_tag_is_model_not_found(make_backend: MakeBackend, fake_ollama: FakeOllama) -> None:
    fake_ollama.models.clear()
    fake_ollama.pullable = set()
    with pytest.raises(ModelNotFoundError, match="file does not exist"):
        make_backend().check_available()


def test_pull_progress_stays_off_when_stderr_is_not_a_terminal(
    make_backend: MakeBackend, fake_ollama: FakeOllama, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_ollama.models.clear()
    OllamaModels(make_backend()).pull()
    assert capsys.readouterr().err == ""


def test_pull_progress_counts_bytes_on_a_terminal(
    make_backend: MakeBackend, fake_ollama: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    fake_ollama.models.clear()
    OllamaModels(make_backend()).pull()
    assert "3.50k/3.50k" in terminal.getvalue()  # two layers of 3000 and 500 bytes, all done


def test_info_reports_model_details_without_pulling(make_backend: MakeBackend, fake_ollama: FakeOllama) -> None:
    info = make_backend().info()
    assert info["backend"] == "ollama" and info["model"] == TAG and info["context_length"] == 32768
    assert info["host"] == normalise_host(fake_ollama.url)
    assert (info["family"], info["parameter_size"], info["quantization_level"]) == ("qwen3", "751.63M", "Q4_K_M")
    assert info["digest"] == fake_ollama.models[TAG].digest
    assert not fake_ollama.calls("/api/pull")


def test_load_sends_an_empty_generate(make_backend: MakeBackend, fake_ollama: FakeOllama) -> None:
    make_backend("backend.keep_alive=10m").load()
    assert fake_ollama.bodies("/api/generate") == [{"model": TAG, "keep_alive": "10m", "stream": False}]


def test_count_tokens_is_a_cheap_estimate(make_backend: MakeBackend, fake_ollama: FakeOllama) -> None:
    backend = make_backend()
    assert backend.count_tokens("") == 0
    assert backend.count_tokens("abcdefgh") == 2
    assert fake_ollama.requests == []


# --------------------------------------------------------------------- sharing primitives
def test_has_blob_asks_with_head(make_backend: MakeBackend, fake_ollama: FakeOllama) -> None:
    present, absent = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    fake_ollama.blobs.add(present)
    backend = make_backend()
    assert OllamaModels(backend).has_blob(present) is True
    assert OllamaModels(backend).has_blob(absent) is False
    assert [(r.method, r.path) for r in fake_ollama.requests] == [
        ("HEAD", f"/api/blobs/{present}"),
        ("HEAD", f"/api/blobs/{absent}"),
    ]
    with pytest.raises(ValueError, match="not a blob digest"):
        OllamaModels(backend).has_blob("md5:abc")


def test_push_blob_uploads_when_the_server_lacks_it(
    make_backend: MakeBackend, fake_ollama: FakeOllama, tmp_path: Path
) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(os.urandom(100_000))
    expected = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()

    assert OllamaModels(make_backend()).push_blob(path) == expected
    (post,) = fake_ollama.calls(f"/api/blobs/{expected}", "POST")
    assert post.data == path.read_bytes()
    assert expected in fake_ollama.blobs


def test_push_blob_skips_the_upload_when_the_server_has_it(
    make_backend: MakeBackend, fake_ollama: FakeOllama, tmp_path: Path
) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"weights")
    digest = "sha256:" + hashlib.sha256(b"weights").hexdigest()
    fake_ollama.blobs.add(digest)
    assert OllamaModels(make_backend()).push_blob(path, digest) == digest
    assert [r.method for r in fake_ollama.requests] == ["HEAD"]


def test_create_model_sends_files_template_and_parameters(make_backend: MakeBackend, fake_ollama: FakeOllama) -> None:
    digest = "sha256:" + "c" * 64
    fake_ollama.blobs.add(digest)
    OllamaModels(make_backend()).create_model(
        "mine:latest",
        {"model.gguf": digest},
        template="{{ .Prompt }}",
        parameters={"temperature": 0.6, "stop": ["<|im_end|>"]},
        system="Be brief.",
    )
    (body,) = fake_ollama.bodies("/api/create")
    assert body == {
        "model": "mine:latest",
        "files": {"model.gguf": digest},
        "template": "{{ .Prompt }}",
        "parameters": {"temperature": 0.6, "stop": ["<|im_end|>"]},
        "system": "Be brief.",
        "stream": True,
    }
    assert "mine:latest" in fake_ollama.models


def test_create_model_error_line_is_a_backend_error(make_backend: MakeBackend, fake_ollama: FakeOllama) -> None:
    with pytest.raises(BackendError, match="upload it first"):
        OllamaModels(make_backend()).create_model(
            "mine", {"model.gguf": "sha256:" + "d" * 64}, template=None, parameters=None
        )


# --------------------------------------------------------------------- a real server
@pytest.mark.ollama
def test_against_a_real_server() -> None:
    """Runs only with -m ollama and OLLAMA_HOST set; pulls qwen3:0.6b if the server lacks it."""
    if not os.environ.get("OLLAMA_HOST"):
        pytest.skip("OLLAMA_HOST is not set")
    cfg = compose_cfg("backend=ollama", "size=qwen3_small", "backend.pull=missing")
    backend = instantiate(cfg.backend, _convert_="object")
    try:
        backend.check_available()
        gen = backend.generate_one(chat("Say hello in one word.", max_tokens=64, seed=0))
        assert gen.text.strip() and gen.completion_tokens > 0
        streamed = joined(list(backend.stream(chat("Say hello in one word.", max_tokens=64, seed=0))))[0]
        assert streamed == gen.text
        assert backend.info()["family"]
    finally:
        backend.close()
