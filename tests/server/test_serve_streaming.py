"""Streams under load on backend=llamacpp: concurrent streamed chats share the scheduler's decode steps, and each
one still gets its answer token by token, equal to the answer it gets whole."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from llama_probe import llama_cpp_problem
from serving import CHAT_ID, engine_for, metric, serving

pytestmark = [pytest.mark.slow, pytest.mark.skipif(llama_cpp_problem() is not None, reason=str(llama_cpp_problem()))]
QUESTIONS = ["Write a haiku about the sea.", "Name three colors.", "Who wrote Hamlet?", "Describe a cat."]


def _body(question: str, **extra: object) -> dict[str, object]:
    messages = [{"role": "user", "content": question}]
    return {"model": CHAT_ID, "messages": messages, "temperature": 0, "max_tokens": 16, **extra}


async def _stream(client: httpx.AsyncClient, question: str) -> list[str]:
    pieces: list[str] = []
    async with client.stream("POST", "/v1/chat/completions", json=_body(question, stream=True)) as reply:
        assert reply.status_code == 200
        async for line in reply.aiter_lines():
            if line.startswith("data: {"):
                choices = json.loads(line[6:])["choices"]
                if choices and choices[0]["delta"].get("content"):
                    pieces.append(choices[0]["delta"]["content"])
    return pieces


def test_concurrent_streams_each_get_their_tokens_as_they_are_made() -> None:
    engine = engine_for("backend=llamacpp", "hardware=cpu", "hardware.threads=1", "backend.n_seq=4")
    with serving(engine) as server:

        async def main() -> tuple[list[list[str]], list[str]]:
            async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
                streams = await asyncio.gather(*(_stream(client, q) for q in QUESTIONS * 2))
                whole = [
                    (await client.post("/v1/chat/completions", json=_body(q))).json()["choices"][0]["message"]
                    for q in QUESTIONS
                ]
                return list(streams), [m["content"] for m in whole]

        streams, whole = asyncio.run(main())
        tokens = metric(server.url, "adam_tokens_total", model=CHAT_ID, kind="completion")
    assert ["".join(s) for s in streams] == whole * 2  # greedy: sharing steps with seven others changes nothing
    assert all(len(s) > 3 for s in streams), [len(s) for s in streams]
    assert tokens > 8 * 3
