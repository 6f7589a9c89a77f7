"""The official ollama client against adam's server (backend=echo): chat, streams, embed, list, show, pull, errors."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import ollama
import pytest
from serving import OLLAMA_NAME, engine_for, serving

from adam.server.listen import BackgroundServer


@pytest.fixture(scope="module")
def server() -> Iterator[BackgroundServer]:
    with serving(engine_for()) as running:
        yield running


@pytest.fixture
def client(server: BackgroundServer) -> ollama.Client:
    return ollama.Client(host=server.url)


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_the_root_says_it_is_running(server: BackgroundServer) -> None:
    assert httpx.get(server.url).text == "Ollama is running"
    assert httpx.get(f"{server.url}/api/version").json()["version"]


def test_list_show_and_ps_name_the_model_with_its_tag(client: ollama.Client) -> None:
    (listed,) = client.list().models
    assert listed.model == OLLAMA_NAME and listed.details is not None
    assert listed.details.family == "smollm" and listed.details.parameter_size == "135M"
    shown = client.show(OLLAMA_NAME)
    assert shown.capabilities == ["completion"]
    assert shown.modelinfo is not None and shown.modelinfo["llama.context_length"] == 8192
    (running,) = client.ps().models
    assert running.model == OLLAMA_NAME and running.context_length == 8192


def test_chat_and_its_stream_agree(client: ollama.Client) -> None:
    words = "tell me about the sea"
    whole = client.chat(model=OLLAMA_NAME, messages=ask(words), options={"temperature": 0})
    assert whole.message.content == words and whole.done and whole.done_reason == "stop"
    assert whole.eval_count == 5 and (whole.prompt_eval_count or 0) > 0
    parts = list(client.chat(model=OLLAMA_NAME, messages=ask(words), options={"temperature": 0}, stream=True))
    assert "".join(p.message.content or "" for p in parts) == words
    assert [p.done for p in parts] == [False] * (len(parts) - 1) + [True]
    assert parts[-1].eval_count == 5
    short = client.chat(model=OLLAMA_NAME, messages=ask("a b c"), options={"num_predict": 2}, stream=False)
    assert (short.message.content, short.done_reason) == ("a b", "length")


def test_generate_raw_and_templated_and_prompt_less_loads(client: ollama.Client) -> None:
    assert client.generate(model=OLLAMA_NAME, prompt="x y z", raw=True).response == "x y z"
    parts = list(client.generate(model=OLLAMA_NAME, prompt="one two", stream=True))
    assert "".join(p.response or "" for p in parts) == "one two" and parts[-1].done
    loaded = client.generate(model=OLLAMA_NAME)
    assert loaded.done and loaded.done_reason == "load"


def test_embed_and_the_older_embeddings(client: ollama.Client) -> None:
    reply = client.embed(model=OLLAMA_NAME, input=["cats purr", "dogs bark"])
    assert len(reply.embeddings) == 2 and reply.prompt_eval_count == 4
    assert abs(np.linalg.norm(reply.embeddings[0]) - 1) < 1e-5
    older = client.embeddings(model=OLLAMA_NAME, prompt="cats purr")
    assert np.allclose(older.embedding, reply.embeddings[0])
    assert len(client.embed(model=OLLAMA_NAME, input="one", dimensions=4).embeddings[0]) == 4


def test_pull_succeeds_for_the_served_model_only(client: ollama.Client) -> None:
    assert client.pull(OLLAMA_NAME).status == "success"
    assert [p.status for p in client.pull(OLLAMA_NAME, stream=True)][-1] == "success"
    with pytest.raises(ollama.ResponseError) as err:
        client.pull("llama3:70b")
    assert err.value.status_code == 404 and "not found" in err.value.error


def test_errors_are_ollamas_error_body(client: ollama.Client, server: BackgroundServer) -> None:
    with pytest.raises(ollama.ResponseError) as err:
        client.chat(model="qwen3:8b", messages=ask("hi"))
    assert err.value.status_code == 404 and OLLAMA_NAME in err.value.error
    bad = httpx.post(f"{server.url}/api/chat", content=b"{nope", headers={"content-type": "application/json"})
    assert bad.status_code == 400 and set(bad.json()) == {"error"} and isinstance(bad.json()["error"], str)
    too_long = httpx.post(
        f"{server.url}/api/chat",
        json={"model": OLLAMA_NAME, "messages": ask("hi"), "options": {"num_predict": 9000}, "stream": True},
    )
    assert too_long.status_code == 400 and "context window" in too_long.json()["error"]
