"""A real model behind the server: the tiny random Qwen3 on the HF backend, its scheduler owning generation."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import ollama
import openai
import pytest
from serving import engine_for, serving

from adam.server.listen import BackgroundServer


@dataclass
class Served:
    server: BackgroundServer
    model: str  # its name under the OpenAI API
    tag: str  # and under Ollama's
    backend: Any


@pytest.fixture(scope="module")
def served(tiny_qwen3_dir: Path) -> Iterator[Served]:
    """The tiny Qwen3 (the demo model is served in bench/serve.py: loading it here would cost most of a minute)."""
    engine = engine_for("backend=huggingface", "size=local", f"size.path={tiny_qwen3_dir}", "hardware=cpu")
    with serving(engine) as running:
        yield Served(running, "local", "local:latest", engine.backend)  # no hub id: the size name, and name:latest


def test_the_openai_client_with_a_real_model(served: Served) -> None:
    client = openai.OpenAI(base_url=f"{served.server.url}/v1", api_key="unused", max_retries=0)
    model = served.model
    messages = [{"role": "user", "content": "Paris is the capital of"}]
    whole = client.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=12)  # type: ignore[arg-type]
    assert whole.choices[0].message.content and whole.usage is not None and whole.usage.completion_tokens > 0
    stream = client.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=12, stream=True)  # type: ignore[arg-type]
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == whole.choices[0].message.content
    text = client.completions.create(model=model, prompt="The river runs", temperature=0, max_tokens=6)
    assert text.choices[0].text and text.usage is not None
    vectors = client.embeddings.create(model=model, input=["cats sleep", "dogs run"], encoding_format="float").data
    assert len(vectors) == 2 and abs(np.linalg.norm(vectors[0].embedding) - 1) < 1e-4


def test_the_ollama_client_with_a_real_model(served: Served) -> None:
    client = ollama.Client(host=served.server.url)
    assert client.list().models[0].model == served.tag
    messages = [{"role": "user", "content": "The weather today is"}]
    options = {"temperature": 0, "num_predict": 10}
    whole = client.chat(model=served.tag, messages=messages, options=options)
    parts = list(client.chat(model=served.tag, messages=messages, options=options, stream=True))
    assert "".join(p.message.content or "" for p in parts) == whole.message.content
    assert len(client.embed(model=served.tag, input="a river").embeddings[0]) > 0


def test_concurrent_requests_share_forward_passes(served: Served) -> None:
    server, model = served.server, served.model
    scheduler = served.backend.scheduler()
    before = scheduler.steps

    async def together() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
            bodies = [{"model": model, "prompt": f"Numbers such as {i}", "temperature": 0, "max_tokens": 8}
                      for i in range(8)]  # fmt: skip
            return list(await asyncio.gather(*(client.post("/v1/completions", json=b) for b in bodies)))

    replies = asyncio.run(together())
    assert [r.status_code for r in replies] == [200] * 8
    assert all(r.json()["usage"]["completion_tokens"] == 8 for r in replies)
    steps = scheduler.steps - before
    assert steps < 8 * 8 / 2, f"{steps} forward passes for 8 requests of 8 tokens: they did not share them"


@pytest.mark.slow
def test_the_official_clients_with_the_demo_model() -> None:
    """The bundled demo model (SmolLM2 as a GGUF): greedy chat, its stream, and Ollama's chat agree."""
    from serving import CHAT_ID, OLLAMA_NAME

    engine = engine_for("backend=huggingface", "size=demo", "hardware=cpu")
    with serving(engine) as server:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
        messages = [
            {"role": "system", "content": "You are a helpful assistant. Answer clearly and concisely."},
            {"role": "user", "content": "What is the capital of France?"},
        ]
        whole = client.chat.completions.create(model=CHAT_ID, messages=messages, temperature=0, max_tokens=12)  # type: ignore[arg-type]
        answer = whole.choices[0].message.content or ""
        assert "Paris" in answer
        stream = client.chat.completions.create(
            model=CHAT_ID,
            messages=messages,  # type: ignore[arg-type]
            temperature=0,
            max_tokens=12,
            stream=True,
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == answer
        reply = ollama.Client(host=server.url).chat(
            model=OLLAMA_NAME, messages=messages, options={"temperature": 0, "num_predict": 12}
        )
        assert reply.message.content == answer
