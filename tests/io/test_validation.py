"""The schema contract: the compiled fast check agrees with jsonschema, and messages read well."""

from __future__ import annotations

import random
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from adam.io.validation import SCHEMA_NAMES, _compile, check, is_valid, load_schema

_PART = {"type": "text", "text": "t"}
_VALUES: list[Any] = [
    None, True, False, 0, 1, -1, 2, 3, 1.0, 2.0, 0.5, 2.5, 1e-9, float("nan"),
    "", "x", "POST", "GET", "text", "user", "developer", "bot",
    "/v1/embeddings", "/v1/chat/completions", "/v1/completions", "/v1/responses",
    [], ["a"], ["a", "b"], [1], [""], {}, {"type": "json_object"}, _PART, {"type": "image_url"},
    [{"role": "user", "content": "c"}], [{"role": "bot", "content": "c"}], [{"role": "user"}],
    [{"role": "tool", "content": [_PART], "name": "n"}], [{"role": "user", "content": [{"type": "image_url"}]}],
    [{"role": "user", "content": [_PART, {"type": "text"}]}], [{"role": "user", "content": 5}], ["hi"],
]  # fmt: skip
_NATIVE_KEYS = ["id", "prompt", "messages", "max_tokens", "temperature", "top_p", "stop", "seed", "response_format"]
_URLS = [
    ("/v1/chat/completions", ("messages", [{"role": "user", "content": "c"}])),
    ("/v1/completions", ("prompt", "p")),
    ("/v1/embeddings", ("input", "i")),
    ("/v1/x", ("prompt", "p")),
]
_BODY_KEYS = ["messages", "prompt", "input", "max_tokens", "max_completion_tokens", "temperature", "n", "stop", "model"]
_BODIES = {"openai_chat": _URLS[0][1], "openai_completion": _URLS[1][1], "openai_embedding": _URLS[2][1]}
_BODY_ONLY_KEYS = ["logprobs", "top_logprobs", "echo", "tools", "chat_template_kwargs", "stream", "dimensions"]


def _random_object(rng: random.Random, keys: list[str]) -> dict[str, Any]:
    return {key: rng.choice(_VALUES) for key in keys if rng.random() < 0.2}


def _instances(name: str, count: int) -> list[Any]:
    rng = random.Random(f"{name}-{count}")
    out: list[Any] = []
    for _ in range(count):
        if name == "generate":
            obj = _random_object(rng, [*_NATIVE_KEYS, "metadata", "other"])
            if rng.random() < 0.5:
                obj["prompt"] = "a prompt"
        elif name in _BODIES:  # a request body, as each door reads it
            needs = _BODIES[name]
            obj = {needs[0]: needs[1]} if rng.random() < 0.8 else {}
            obj.update({key: rng.choice(_VALUES) for key in [*_BODY_KEYS, *_BODY_ONLY_KEYS] if rng.random() < 0.1})
        elif name == "embed":
            obj = _random_object(rng, ["id", "text", "metadata"])
            if rng.random() < 0.5:
                obj["text"] = rng.choice(["a text", "", 1])
        else:
            obj = _random_object(rng, ["custom_id", "method"])
            if rng.random() < 0.8:
                obj.update(custom_id="c", method="POST")
            url, needs = rng.choice(_URLS)
            obj["url"] = url
            body = {needs[0]: needs[1]} if rng.random() < 0.8 else {}
            body.update({key: rng.choice(_VALUES) for key in _BODY_KEYS if rng.random() < 0.1})
            obj["body"] = body if rng.random() < 0.95 else rng.choice(_VALUES)
        out.append(rng.choice(_VALUES) if rng.random() < 0.03 else obj)
    return out


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_the_compiled_check_agrees_with_jsonschema(name: str) -> None:
    validator = Draft202012Validator(load_schema(name))
    verdicts = []
    for instance in _instances(name, 4000):
        expected = validator.is_valid(instance)
        assert is_valid(name, instance) == expected, instance
        assert (check(name, instance) is None) == expected, instance
        verdicts.append(expected)
    assert 0.05 < sum(verdicts) / len(verdicts) < 0.95, "the generator must produce both outcomes"


def test_an_unknown_keyword_is_refused_rather_than_ignored() -> None:
    with pytest.raises(NotImplementedError, match="'pattern'"):
        _compile({"type": "string", "pattern": "^a"}, {})


@pytest.mark.parametrize(
    ("name", "instance", "message"),
    [
        ("generate", {"prompt": "p", "top_p": 0}, "'top_p' must be a number above 0 and at most 1, got 0"),
        ("generate", {"prompt": "p", "stop": [1]}, "'stop' must be a string or a list of strings, got [1]"),
        ("generate", {"messages": [{"role": "user"}]}, "'messages[0]' is missing 'content'"),
        ("generate", {"prompt": "p" * 5, "seed": "x" * 100},
         '\'seed\' must be an integer that fits in 64 bits, got "' + "x" * 56 + "..."),
        ("embed", {"text": ""}, "'text' is empty"),
        ("openai_completion", {}, "missing 'prompt' (a /v1/completions request needs it)"),
        ("openai_chat", {"messages": [{"role": "user", "content": "c"}], "n": 2},
         "'n' must be 1: adam returns one completion per request; repeat the request instead"),
        ("openai_chat", {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
         'each content part must be {"type": "text", "text": ...}: adam reads text only'),
        ("openai_request", {"custom_id": "c", "method": "POST", "url": "/v1/chat/completions", "body": []},
         "'body' must be an object, got []"),
    ],
)  # fmt: skip
def test_messages(name: str, instance: Any, message: str) -> None:
    assert check(name, instance) == message  # type: ignore[arg-type]


def test_messages_use_the_renamed_field() -> None:
    assert check("generate", {"question": 1}, rename={"prompt": "question"}) == "missing 'question' (or 'messages')"
    assert check("generate", {"prompt": 1}, rename={"prompt": "question"}) == (
        "'question' must be a non-empty string, got 1"
    )
