"""Hostile constraints over HTTP: each is the request's 400 with its one-line reason, never a 500."""

from __future__ import annotations

import json

import httpx
from serving import CHAT_ID, engine_for, serving
from test_structured_hostile import HOSTILE, _deep, _rf


def test_hostile_schemas_are_the_requests_400_over_http() -> None:
    with serving(engine_for()) as server:
        for name, (schema, said) in HOSTILE.items():
            body = {"model": CHAT_ID, "messages": [{"role": "user", "content": "hi"}], "response_format": _rf(schema)}
            answer = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=30)
            assert answer.status_code == 400, (name, answer.text)
            assert said in answer.json()["error"]["message"], name
        body = {"model": CHAT_ID, "messages": [{"role": "user", "content": "hi"}], "response_format": _rf(_deep(200))}
        answer = httpx.post(f"{server.url}/v1/chat/completions", content=json.dumps(body), timeout=30)
        assert answer.status_code == 400 and "64 levels" in answer.json()["error"]["message"]


def test_ollamas_format_schema_constrains_the_answer_and_a_bad_one_is_a_400() -> None:
    from serving import OLLAMA_NAME

    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    chat = {"model": OLLAMA_NAME, "messages": [{"role": "user", "content": "hi"}], "stream": False}
    with serving(engine_for()) as server:
        answer = httpx.post(f"{server.url}/api/chat", json={**chat, "format": schema}, timeout=30)
        assert answer.status_code == 200, answer.text  # Ollama's documented way was a 500 (KeyError)
        assert json.loads(answer.json()["message"]["content"]) == {"a": 0}
        body = {"model": OLLAMA_NAME, "prompt": "hi", "format": "json", "stream": False}
        generated = httpx.post(f"{server.url}/api/generate", json=body, timeout=30)
        assert generated.status_code == 200 and json.loads(generated.json()["response"]) == {}
        for fmt, said in [({"$ref": "#"}, "refers to itself"), ({"type": "nope"}, "format is not a valid JSON schema"),
                          ("yaml", 'format must be "json" or a JSON schema')]:  # fmt: skip
            answer = httpx.post(f"{server.url}/api/chat", json={**chat, "format": fmt}, timeout=30)
            assert answer.status_code == 400 and said in answer.json()["error"], (fmt, answer.text)
