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
