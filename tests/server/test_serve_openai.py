"""The official openai client against adam's server (backend=echo): chat, streams, completions, embeddings, errors."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import numpy as np
import openai
import pytest
from serving import CHAT_ID, engine_for, serving

from adam.server.listen import BackgroundServer


@pytest.fixture(scope="module")
def server() -> Iterator[BackgroundServer]:
    with serving(engine_for()) as running:
        yield running


@pytest.fixture
def client(server: BackgroundServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_models_lists_the_hub_id_and_refuses_others(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list().data] == [CHAT_ID]
    assert client.models.retrieve(CHAT_ID).id == CHAT_ID
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="gpt-4o", messages=ask("hi"))
    assert err.value.body["code"] == "model_not_found"  # type: ignore[index]
    assert "gpt-4o" in err.value.body["message"]  # type: ignore[index]


def test_chat_answers_with_usage(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model=CHAT_ID, messages=ask("the quick brown fox"), temperature=0)
    assert reply.object == "chat.completion" and reply.model == CHAT_ID
    assert reply.choices[0].message.content == "the quick brown fox"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.completion_tokens == 4
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + 4
    short = client.chat.completions.create(model=CHAT_ID, messages=ask("one two three"), max_tokens=2)
    assert (short.choices[0].message.content, short.choices[0].finish_reason) == ("one two", "length")


def test_a_joined_stream_equals_the_whole_answer(client: openai.OpenAI) -> None:
    words = "a streamed answer comes in pieces"
    whole = client.chat.completions.create(model=CHAT_ID, messages=ask(words), temperature=0)
    stream = client.chat.completions.create(
        model=CHAT_ID, messages=ask(words), temperature=0, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1  # really in pieces
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens  # type: ignore[union-attr]


def test_the_raw_stream_is_sse_ending_in_done(server: BackgroundServer) -> None:
    body = {"model": CHAT_ID, "messages": ask("x y"), "stream": True}
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body) as reply:
        assert reply.headers["content-type"].startswith("text/event-stream")
        events = [line for line in reply.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"


def test_completions_take_a_prompt_or_a_list(client: openai.OpenAI) -> None:
    one = client.completions.create(model=CHAT_ID, prompt="alpha beta gamma", max_tokens=2)
    assert (one.choices[0].text, one.choices[0].finish_reason) == ("alpha beta", "length")
    many = client.completions.create(model=CHAT_ID, prompt=["a b", "c d e"], max_tokens=10)
    assert [c.text for c in many.choices] == ["a b", "c d e"] and [c.index for c in many.choices] == [0, 1]
    streamed = client.completions.create(model=CHAT_ID, prompt="p q r", max_tokens=10, stream=True)
    assert "".join(c.choices[0].text for c in streamed if c.choices) == "p q r"


def test_embeddings_as_floats_and_base64(client: openai.OpenAI, server: BackgroundServer) -> None:
    texts = ["cats purr", "dogs bark loudly"]
    default = client.embeddings.create(model=CHAT_ID, input=texts)  # the client asks for base64 itself
    floats = client.embeddings.create(model=CHAT_ID, input=texts, encoding_format="float")
    assert [d.index for d in default.data] == [0, 1]
    assert np.allclose(default.data[1].embedding, floats.data[1].embedding)
    assert abs(np.linalg.norm(floats.data[0].embedding) - 1) < 1e-5
    assert floats.usage.prompt_tokens == 5
    raw = httpx.post(
        f"{server.url}/v1/embeddings", json={"model": CHAT_ID, "input": "cats purr", "encoding_format": "base64"}
    ).json()
    decoded = np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), dtype="<f4")
    assert np.allclose(decoded, floats.data[0].embedding)
    cut = client.embeddings.create(model=CHAT_ID, input="cats purr", dimensions=8, encoding_format="float")
    assert len(cut.data[0].embedding) == 8 and abs(np.linalg.norm(cut.data[0].embedding) - 1) < 1e-5


def test_a_prompt_over_the_context_window_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=CHAT_ID, messages=ask("hi"), max_tokens=8192)
    assert err.value.body["code"] == "context_length_exceeded"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):  # a stream refuses before it starts, with the same error
        client.chat.completions.create(model=CHAT_ID, messages=ask("hi"), max_tokens=8192, stream=True)


@pytest.mark.parametrize(
    ("path", "asks", "param"),
    [
        ("/v1/chat/completions", {"logprobs": True}, "logprobs"),
        ("/v1/chat/completions", {"logprobs": True, "top_logprobs": 3}, "logprobs"),
        ("/v1/chat/completions", {"top_logprobs": 2}, "top_logprobs"),  # without logprobs: a malformed request
        ("/v1/completions", {"logprobs": 0}, "logprobs"),  # 0 asks for the sampled token's
        ("/v1/completions", {"logprobs": 5}, "logprobs"),
        ("/v1/completions", {"echo": True}, "echo"),
        ("/v1/chat/completions", {"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
    ],
)
def test_log_probabilities_and_what_else_is_unsupported_are_refused_naming_the_field(
    server: BackgroundServer, path: str, asks: dict, param: str
) -> None:
    """As the docs promise: a 400 in OpenAI's body, not an answer without what was asked (the echo backend gives no
    log-probabilities; huggingface and llamacpp do, tests/server/test_parity.py)."""
    prompt = {"messages": ask("hi")} if "chat" in path else {"prompt": "hi"}
    for stream in (False, True):
        reply = httpx.post(f"{server.url}{path}", json={"model": CHAT_ID, **prompt, **asks, "stream": stream})
        assert reply.status_code == 400, reply.text
        error = reply.json()["error"]
        code = "invalid_request" if "logprobs" not in asks and "top_logprobs" in asks else "unsupported"
        assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)
    off = {"logprobs": False if "chat" in path else None, "top_logprobs": 0, "echo": False, "tools": []}
    unasked = {k: v for k, v in off.items() if k in asks}  # the same fields, asking for nothing
    assert httpx.post(f"{server.url}{path}", json={"model": CHAT_ID, **prompt, **unasked}).status_code == 200


def test_the_openai_client_asking_for_logprobs_gets_a_bad_request(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=CHAT_ID, messages=ask("hi"), logprobs=True, top_logprobs=2)
    assert err.value.body["param"] == "logprobs" and "log-probabilities" in err.value.body["message"]  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model=CHAT_ID, prompt="hi", logprobs=1)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"model": "m"}', "messages"),
        (b'{"model": "' + CHAT_ID.encode() + b'", "messages": [], "n": 1}', "messages"),
        (b'{"model": "' + CHAT_ID.encode() + b'", "messages": [{"role": "user", "content": "x"}], "n": 3}', "n"),
        (b'{"model": "' + CHAT_ID.encode() + b'", "messages": [{"role": "user", "content": "x"}], "temperature": 9}',
         "temperature"),
    ],
)  # fmt: skip
def test_bad_requests_get_a_400_with_openais_error_body(server: BackgroundServer, body: bytes, needle: str) -> None:
    reply = httpx.post(f"{server.url}/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error" and needle in error["message"]
    assert "Traceback" not in reply.text


def test_unknown_paths_get_a_404_in_the_protocols_shape(server: BackgroundServer) -> None:
    assert httpx.get(f"{server.url}/v1/nothing").json()["error"]["message"] == "Not Found"
    assert httpx.get(f"{server.url}/api/nothing").json() == {"error": "Not Found"}
