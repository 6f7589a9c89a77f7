"""ignore_eos (vLLM's and llama.cpp's server's extension): the end-of-sequence token never ends an answer.

It masks the end tokens out, as llama.cpp's server does, so a greedy answer is the free answer up to where that
one ended, then goes on to max_tokens; a stop string still stops it. Backends that cannot do it refuse it by
name, at every door, and so does a request that also asks for a constraint (whose grammar ends with the end token).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import compose_cfg, read_jsonl, write_jsonl
from llama_probe import demo_backend

from adam.backends.base import GenerationRequest
from adam.engine import Engine
from adam.protocol.openai import CHAT, read_body
from adam.protocol.refused import Refused
from adam.run.runner import build_backend, run


def _ask(text: str, **kw) -> GenerationRequest:
    return GenerationRequest(messages=({"role": "user", "content": text},), **kw)


@pytest.fixture(scope="module")
def demo():
    yield from demo_backend()


def test_llamacpp_runs_past_the_end_token_to_max_tokens(demo) -> None:
    question = "Reply with one word: yes or no. Is the sky blue?"
    free = demo.generate_one(_ask(question, max_tokens=40))
    assert free.finish_reason == "stop" and free.completion_tokens < 40  # the model ends this answer early
    on = _ask(question, max_tokens=40, ignore_eos=True)
    longer = demo.generate_one(on)
    assert (longer.finish_reason, longer.completion_tokens) == ("length", 40)
    assert longer.text.startswith(free.text) and len(longer.text) > len(free.text)
    chunks = list(demo.stream(on))
    assert "".join(c.text for c in chunks) == longer.text and chunks[-1].finish_reason == "length"  # streamed = whole
    plain = _ask("Say hello.", max_tokens=12)
    together = demo.generate([on, plain, _ask(question, max_tokens=40)])
    assert [g.text for g in together] == [longer.text, demo.generate_one(plain).text, free.text]  # batched = alone
    # a stop string still ends it: one that first appears past where the end token would have ended it
    tail = longer.text[len(free.text) :]
    stop = next(tail[k : k + 3] for k in range(len(tail)) if longer.text.find(tail[k : k + 3]) >= len(free.text))
    stopped = demo.generate_one(_ask(question, max_tokens=40, ignore_eos=True, stop=(stop,)))
    assert (stopped.finish_reason, stopped.text) == ("stop", longer.text[: longer.text.find(stop)])


def test_huggingface_masks_every_end_token(tiny_qwen3_dir: Path, fresh_models: None) -> None:
    """Every token but one ends the answer: free, it ends at once; with ignore_eos, that one token fills it.

    The model's end tokens are changed for this test alone: fresh_models keeps the loaded model from being
    shared with other tests (backends share a loaded model), and the change is undone after."""
    backend = build_backend(compose_cfg("size=local", f"size.path={tiny_qwen3_dir}", "hardware=cpu"))
    backend.load()
    config = backend._loaded.model.generation_config
    tokenizer, ends = backend._loaded.tokenizer, config.eos_token_id
    try:
        (kept,) = tokenizer.encode("a", add_special_tokens=False)
        config.eos_token_id = [t for t in range(len(tokenizer)) if t != kept]
        free = backend.generate_one(_ask("hi", max_tokens=6))
        assert (free.finish_reason, free.completion_tokens, free.text) == ("stop", 1, "")
        forced = backend.generate_one(_ask("hi", max_tokens=6, ignore_eos=True))
        assert (forced.finish_reason, forced.completion_tokens, forced.text) == ("length", 6, "a" * 6)
    finally:
        config.eos_token_id = ends
        backend.close()


def test_it_is_read_at_every_door_and_refused_by_name_where_it_cannot_be_given(tmp_path: Path) -> None:
    ask = read_body(CHAT, {"messages": [{"role": "user", "content": "hi"}], "ignore_eos": True})
    echo = Engine(build_backend(compose_cfg("backend=echo")))
    request = echo.request(messages=ask.messages, params=ask.params)
    assert request.ignore_eos
    _, refusal, _ = echo.fit(request)
    assert refusal is not None and refusal.param == "ignore_eos" and "echo backend" in str(refusal)
    with pytest.raises(Refused) as bad:
        read_body(CHAT, {"messages": [{"role": "user", "content": "hi"}], "ignore_eos": "yes"})
    assert bad.value.param == "ignore_eos" and "true or false" in str(bad.value)
    _, both, _ = echo.fit(echo.request(messages=ask.messages, params={**ask.params, "choice": ["a", "b"]}))
    assert both is not None and both.param == "ignore_eos" and "choice" in str(both)
    # a JSONL job: the record's own ignore_eos is its error line, the others are answered
    rows = [{"id": "a", "prompt": "hi", "ignore_eos": True}, {"id": "b", "prompt": "hi"}]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    summary = run(compose_cfg("backend=echo", f"job.input={src}", run_dir=tmp_path / "run"))
    assert [r["id"] for r in read_jsonl(summary.run_dir / "results.jsonl")] == ["b"]
    (error,) = read_jsonl(summary.run_dir / "errors.jsonl")
    assert error["id"] == "a" and error["error"] == {
        "code": "unsupported",
        "message": "the echo backend cannot decode past the end-of-sequence token (ignore_eos)",
    }


def test_the_job_setting_reaches_every_request() -> None:
    cfg = compose_cfg("backend=echo", "job.ignore_eos=true")
    engine = Engine.from_config(build_backend(cfg), cfg.job, cfg.domain)
    assert engine.request(prompt="hi").ignore_eos
    assert not Engine(engine.backend).request(prompt="hi").ignore_eos  # off unless asked
