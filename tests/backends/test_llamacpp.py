"""backend=llamacpp on the bundled demo GGUF (SmolLM2-135M Q4_1): batched decode, sampling, streaming, runs.

Skipped, with the reason, where llama-cpp-python is not installed (``make test`` tries to build it once).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import EXAMPLES, compose_cfg, read_jsonl, write_jsonl

from adam.backends.base import GenerationRequest, Priority
from adam.backends.types import WeightsLocation
from adam.errors import ContextOverflowError, ExitCode, ModelNotFoundError
from adam.run.runner import build_backend, run

try:
    import llama_cpp
except Exception as err:  # ImportError, or OSError from a shared library that will not load
    pytest.skip(
        f"llama-cpp-python is not importable ({type(err).__name__}: {err}); "
        "install it with `make llamacpp` (make test does it too)",
        allow_module_level=True,
    )

from llama_probe import llama_cpp_problem

if (_problem := llama_cpp_problem()) is not None:
    pytest.skip(_problem, allow_module_level=True)

pytestmark = pytest.mark.slow  # loads the bundled demo model
SYSTEM = "You are a helpful assistant. Answer clearly and concisely."
QUESTIONS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "What is 2+2?",
    "Name three colors.",
    "Who wrote Hamlet?",
    "Say hello in Spanish.",
]


def _bundled(size: str) -> Path:
    """Where a bundled size's weights are (a GGUF for demo, a directory for minilm); skips when not installed."""
    from adam.backends.hf_loading import resolve_source
    from adam.settings.config import SizeSpec, to_spec

    try:
        return resolve_source(to_spec(SizeSpec, compose_cfg(f"size={size}").size), download=False).path
    except ModelNotFoundError as err:
        pytest.skip(f"size={size} is not installed: {err}")


def _demo_path() -> Path:
    return _bundled("demo")


def _backend(*overrides: str):
    """One thread: llama.cpp's threads spin-wait for each other, which on a busy shared CPU costs many times more."""
    return build_backend(compose_cfg("backend=llamacpp", "hardware=cpu", "hardware.threads=1", *overrides))


def _chat(question: str, **kw) -> GenerationRequest:
    messages = ({"role": "system", "content": SYSTEM}, {"role": "user", "content": question})
    return GenerationRequest(messages=messages, **kw)


@pytest.fixture(scope="module")
def demo():
    """The demo model with 6 sequences at a time, so eight prompts also exercise sequences joining midway."""
    _demo_path()
    backend = _backend("size=demo", "backend.n_seq=6", "backend.n_ctx=512")
    backend.load()
    yield backend
    backend.close()


def test_greedy_in_one_batch_equals_each_prompt_alone(demo) -> None:
    # the benchmark's prompts (a few words to a few paragraphs), 6 at a time: sequences join as others
    # finish, and long prompts are read while short ones decode
    from bench.generate import make_prompts

    requests = [_chat(q, max_tokens=12 + 2 * i) for i, q in enumerate(make_prompts(8))]
    together = demo.generate(requests)
    alone = [demo.generate_one(r) for r in requests]
    assert together == alone  # text, token counts and finish reasons
    assert all(g.completion_tokens > 0 and g.prompt_tokens > 20 for g in together)
    assert {g.finish_reason for g in together} <= {"stop", "length"}


def test_the_capital_question_with_a_short_system_prompt(demo) -> None:
    answer = demo.generate_one(_chat("What is the capital of France?", max_tokens=16))
    assert "Paris" in answer.text


def test_the_same_seed_gives_the_same_samples_and_another_seed_others(demo) -> None:
    def sample(seed: int) -> list[str]:
        requests = [_chat(q, max_tokens=12, temperature=1.0, top_p=0.95, seed=seed) for q in QUESTIONS[:4]]
        return [g.text for g in demo.generate(requests)]

    first = sample(7)
    assert sample(7) == first
    assert sample(8) != first
    # each request draws from its own seeded generator, so its neighbours in the batch change nothing
    alone = demo.generate_one(_chat(QUESTIONS[1], max_tokens=12, temperature=1.0, top_p=0.95, seed=7))
    assert alone.text == first[1]


def test_streamed_text_joins_to_the_generated_text(demo) -> None:
    request = _chat("Write a haiku about the sea.", max_tokens=20)
    chunks = list(demo.stream(request))
    generated = demo.generate_one(request)
    assert "".join(c.text for c in chunks) == generated.text
    assert len([c for c in chunks if c.text]) > 3
    last = chunks[-1]
    assert (last.finish_reason, last.prompt_tokens, last.completion_tokens) == (
        generated.finish_reason,
        generated.prompt_tokens,
        generated.completion_tokens,
    )


class _InBackground:
    """``demo.generate(requests)`` (batch work) on a thread, so a test can send requests while it decodes."""

    def __init__(self, backend, requests) -> None:
        self.results: list = []
        self.thread = threading.Thread(target=lambda: self.results.extend(backend.generate(requests)))
        self.thread.start()
        scheduler = backend.scheduler()
        deadline = time.monotonic() + 60
        while scheduler.stepped < 8:  # its first requests are decoding, and the rest wait for slots
            assert self.thread.is_alive() and time.monotonic() < deadline
            time.sleep(0.005)

    def join(self) -> list:
        self.thread.join()
        return self.results


def test_a_request_joining_a_running_batch_gets_the_answer_it_gets_alone(demo) -> None:
    from bench.generate import make_prompts

    joining = [_chat(QUESTIONS[1], max_tokens=16), _chat(QUESTIONS[4], max_tokens=10)]
    alone = [demo.generate_one(r) for r in joining]
    running = _InBackground(demo, [_chat(q, max_tokens=20) for q in make_prompts(9)])
    # one as a chat (it takes the slot kept for interactive requests at once), one as more batch work
    joined = demo.generate(joining[:1], priority=Priority.interactive) + demo.generate(joining[1:])
    shared = running.thread.is_alive()
    batch = running.join()
    assert joined == alone
    assert shared, "the batch ended before the joining requests did: they did not share its steps"
    assert all(g.completion_tokens > 0 for g in batch)


def test_a_stream_sharing_a_batch_gets_its_tokens_as_they_are_made(demo) -> None:
    request = _chat("Write a haiku about the sea.", max_tokens=20)
    whole = demo.generate_one(request)
    running = _InBackground(demo, [_chat(q, max_tokens=24) for q in QUESTIONS * 2])
    scheduler = demo.scheduler()
    chunks = [(chunk, scheduler.steps, running.thread.is_alive()) for chunk in demo.stream(request)]
    running.join()
    texts = [c.text for c, _, _ in chunks if c.text]
    assert "".join(texts) == whole.text
    assert len(texts) > 3
    assert len({step for c, step, _ in chunks if c.text}) > 3  # each piece came at its own decode step
    assert chunks[0][2], "the batch was over before the stream's first piece"


def test_a_chat_overtakes_batch_work_queued_before_it(demo) -> None:
    from bench.generate import make_prompts

    running = _InBackground(demo, [_chat(q, max_tokens=16) for q in make_prompts(14)])
    scheduler = demo.scheduler()
    (chat,) = demo.generate([_chat("What is 2+2?", max_tokens=8)], priority=Priority.interactive)
    still_waiting = scheduler.waiting
    running.join()
    assert chat.completion_tokens > 0
    assert still_waiting > 0, "the chat was answered only once every batch request had started"


def test_a_stop_string_ends_generation_and_is_left_out(demo) -> None:
    free = demo.generate_one(_chat("What is the capital of France?", max_tokens=16))
    assert " is " in free.text
    stopped = demo.generate_one(_chat("What is the capital of France?", max_tokens=16, stop=(" is ",)))
    assert stopped.text == free.text[: free.text.index(" is ")]
    assert stopped.finish_reason == "stop"
    assert stopped.completion_tokens < free.completion_tokens
    streamed = "".join(
        c.text for c in demo.stream(_chat("What is the capital of France?", max_tokens=16, stop=(" is ",)))
    )
    assert streamed == stopped.text


def test_token_counts_match_llama_cpps_own_tokenizer(demo) -> None:
    vocab = llama_cpp.Llama(model_path=str(_demo_path()), vocab_only=True, verbose=False)
    for text in ["Hello world", "<|im_start|>user\nhi<|im_end|>", "naïve café 東京", ""]:
        assert demo.count_tokens(text) == len(vocab.tokenize(text.encode(), add_bos=True, special=True))
    request = _chat("What is 2+2?", max_tokens=4)
    assert demo.count_tokens(demo.format_prompt(request)) == demo.generate_one(request).prompt_tokens
    assert demo.sort_keys(["a b c", "Hello world"]) == [demo.count_tokens("a b c"), demo.count_tokens("Hello world")]


def test_the_chat_template_comes_from_the_gguf(demo) -> None:
    prompt = demo.format_prompt(_chat("Hi"))
    assert prompt == f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert demo.format_prompt(GenerationRequest(prompt="raw text")) == "raw text"
    assert demo.has_thinking_mode() is False


def test_a_prompt_longer_than_the_context_fails_alone(demo) -> None:
    long = _chat("word " * 600, max_tokens=8)
    short = _chat("What is 2+2?", max_tokens=8)
    results = demo.generate([short, long, short])
    assert isinstance(results[1], ContextOverflowError)
    assert "512-token context" in str(results[1]) and "backend.n_ctx" in str(results[1])
    assert results[0] == results[2] == demo.generate_one(short)
    assert demo.info()["context_length"] == 512
    with pytest.raises(ContextOverflowError):
        list(demo.stream(long))


def test_info_describes_the_file_and_the_batch_shape(demo) -> None:
    info = demo.info()
    path = _demo_path()
    assert (info["backend"], info["source"], info["path"]) == ("llamacpp", "gguf", str(path))
    assert (info["n_seq"], info["n_ctx"], info["architecture"]) == (6, 512, "llama")
    assert info["parameters"] > 100_000_000 and len(info["sha256"]) == 64
    assert demo.export_weights() == WeightsLocation(
        str(path), "gguf", "HuggingFaceTB/SmolLM2-135M-Instruct", None, {"source": "gguf", "sha256": info["sha256"]}
    )


def test_embeddings_from_a_gguf_with_pooling() -> None:
    """The demo is a chat model; with size.kind=embed and mean pooling it still gives sentence vectors."""
    path = _demo_path()
    backend = _backend("size=local", f"size.path={path}", "size.kind=embed", "size.pooling=mean", "backend.n_seq=2")
    texts = ["The cat sat on the mat.", "A cat was sitting on a mat.", "Stock markets fell sharply today."]
    together = backend.embed(texts)
    alone = [backend.embed([t])[0] for t in texts]
    vectors = np.stack([e.vector for e in together])
    assert vectors.shape == (3, 576)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.allclose(vectors, np.stack([e.vector for e in alone]), atol=1e-4)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
    assert [e.tokens for e in together] == [backend.count_tokens(t) for t in texts]
    backend.close()


@pytest.fixture(scope="module")
def minilm_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """all-MiniLM-L6-v2, the bundled embedder, written as a BERT GGUF (tests/bert_gguf.py)."""
    from bert_gguf import write_bert_gguf

    return write_bert_gguf(_bundled("minilm"), tmp_path_factory.mktemp("minilm") / "minilm.gguf")


def test_embeddings_of_a_bert_gguf_match_sentence_transformers(minilm_gguf: Path) -> None:
    from sentence_transformers import SentenceTransformer

    backend = _backend("size=minilm", "size.package=null", f"size.path={minilm_gguf}", "backend.n_seq=2")
    texts = ["The cat sat on the mat.", "A cat was sitting on a mat.", "naïve café, déjà vu!", "word " * 300]
    got = backend.embed(texts)
    reference = SentenceTransformer(str(_bundled("minilm")), device="cpu").encode(texts, normalize_embeddings=True)
    for embedding, expected in zip(got, reference, strict=True):
        assert float(embedding.vector @ expected) > 0.9999
    assert [e.truncated for e in got] == [False, False, False, True]
    assert got[3].tokens == 256  # size.max_seq_length, with [CLS] and [SEP] kept
    assert [e.tokens for e in got[:3]] == backend.sort_keys(texts[:3])
    assert backend.info()["kind"] == "embed"
    backend.close()


def test_the_gguf_is_found_in_the_shared_store_and_as_an_ollama_blob(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from adam.sharing.store import SharedStore

    path = _demo_path()
    store = tmp_path / "store"
    SharedStore(store).export(WeightsLocation(str(path), "gguf", model_id="someone/demo"), ollama_model="demo:q4")
    shared = _backend("size=local", "size.path=null", "size.hf_id=someone/demo", f"share.store={store}")
    assert shared.source().path.samefile(path)
    by_name = _backend("size=local", "size.path=null", "size.ollama_tag=demo:q4", f"share.store={store}")
    assert by_name.source().path.samefile(path)

    models = tmp_path / "ollama"
    digest = shared.info()["sha256"]
    (models / "blobs").mkdir(parents=True)
    os.link(path, models / "blobs" / f"sha256-{digest}")
    manifest = models / "manifests" / "registry.ollama.ai" / "library" / "smollm2" / "135m"
    manifest.parent.mkdir(parents=True)
    layer = {"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{digest}", "size": 1}
    manifest.write_text(json.dumps({"schemaVersion": 2, "layers": [layer]}))
    monkeypatch.setenv("OLLAMA_MODELS", str(models))
    blob = _backend("size=demo", "size.source=ollama", "backend.n_ctx=256")
    assert blob.info()["sha256"] == digest
    assert "Paris" in blob.generate_one(_chat("What is the capital of France?", max_tokens=12)).text
    blob.close()


def test_a_size_without_a_gguf_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="job=share"):
        _backend("size=qwen3_small", f"share.store={tmp_path}").source()
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        _backend("size=local", f"size.path={tmp_path / 'x.gguf'}").source()


def test_the_default_job_runs_through_the_runner(tmp_path: Path) -> None:
    _demo_path()
    cfg = compose_cfg(
        "backend=llamacpp",
        "size=demo",
        "hardware=cpu",
        "hardware.threads=1",
        f"job.input={EXAMPLES / 'prompts.jsonl'}",
        "job.max_tokens=16",
        "job.progress=false",
        f"domain.system_prompt={SYSTEM}",
        "backend.n_ctx=512",
        run_dir=tmp_path / "run",
    )
    summary = run(cfg)
    assert summary.exit_code == ExitCode.OK
    results = {r["id"]: r for r in read_jsonl(summary.run_dir / "results.jsonl")}
    assert set(results) == {"capital", "haiku", "sql", "photosynthesis", "translate"}
    assert "Paris" in results["capital"]["text"]
    assert all(r["usage"]["completion_tokens"] > 0 for r in results.values())
    manifest = json.loads((summary.run_dir / "manifest.json").read_text())
    assert manifest["backend"]["backend"] == "llamacpp" and manifest["backend"]["context_length"] == 512


def test_a_too_long_record_is_an_error_line_in_a_run(tmp_path: Path) -> None:
    _demo_path()
    rows = [{"id": "ok", "prompt": "What is 2+2?"}, {"id": "long", "prompt": "word " * 400}]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    overrides = ["backend=llamacpp", "size=demo", "hardware.threads=1", "job.max_tokens=8", "backend.n_ctx=256"]
    summary = run(compose_cfg(*overrides, f"job.input={src}", run_dir=tmp_path / "run"))
    assert summary.exit_code == ExitCode.PARTIAL
    assert [r["id"] for r in read_jsonl(summary.run_dir / "results.jsonl")] == ["ok"]
    (error,) = read_jsonl(summary.run_dir / "errors.jsonl")
    assert error["id"] == "long" and error["error"]["code"] == "context_overflow"


def test_importing_the_backend_loads_neither_llama_cpp_nor_torch() -> None:
    code = "import sys, adam.backends.llamacpp; print(sorted({'llama_cpp', 'torch'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
