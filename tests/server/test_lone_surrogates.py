"""A lone surrogate (a \\ud800 escape with no pair) anywhere in a request is the protocol's 400 through every door,
streams included, before anything is answered or stored."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from serving import CHAT_ID, OLLAMA_NAME, engine_for, serving
from test_batch_api import batch_file

from adam.server.listen import BackgroundServer

LONE = "a\ud800"  # json.dumps writes it as the escape "a\ud800", as a client would send it
HI = [{"role": "user", "content": "hi"}]
SAID = [{"role": "user", "content": LONE}]
DOORS: list[tuple[str, dict[str, Any], str]] = [  # path, body, where the message says the surrogate is
    ("/v1/chat/completions", {"model": CHAT_ID, "messages": SAID}, "messages[0].content"),
    ("/v1/chat/completions", {"model": CHAT_ID, "stream": True, "messages": SAID}, "messages[0].content"),
    ("/v1/chat/completions", {"model": CHAT_ID, "messages": HI, "stop": ["x", LONE]}, "stop[1]"),
    ("/v1/chat/completions", {"model": LONE, "messages": HI}, "model"),
    ("/v1/chat/completions", {"model": CHAT_ID, "messages": HI, "user": LONE}, "user"),  # a field adam ignores too
    ("/v1/completions", {"model": CHAT_ID, "prompt": LONE, "stream": True}, "prompt"),
    ("/v1/embeddings", {"model": CHAT_ID, "input": ["fine", LONE]}, "input[1]"),
    ("/api/chat", {"model": OLLAMA_NAME, "messages": SAID}, "messages[0].content"),  # an Ollama stream by default
    ("/api/generate", {"model": OLLAMA_NAME, "prompt": "hi", "options": {"stop": [LONE]}}, "options.stop[0]"),
    ("/api/embed", {"model": OLLAMA_NAME, "input": LONE}, "input"),
    ("/api/show", {"model": LONE}, "model"),
]


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("surrogate-state")


@pytest.fixture(scope="module")
def server(state_dir: Path) -> Iterator[BackgroundServer]:
    with serving(engine_for(), state_dir=str(state_dir)) as running:
        yield running


def post_json(url: str, body: bytes) -> httpx.Response:
    return httpx.post(url, content=body, headers={"content-type": "application/json"}, timeout=10)


@pytest.mark.parametrize(("path", "body", "where"), DOORS)
def test_a_lone_surrogate_is_the_protocols_400(server: BackgroundServer, path: str, body: dict[str, Any],
                                               where: str) -> None:  # fmt: skip
    response = post_json(f"{server.url}{path}", json.dumps(body).encode())
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/json"  # refused before a stream starts
    error = response.json()["error"]
    message = error["message"] if path.startswith("/v1") else error
    assert f"'{where}' holds a lone UTF-16 surrogate (\\ud800)" in message
    if path.startswith("/v1"):
        assert error["type"] == "invalid_request_error"


def test_a_surrogate_sent_as_raw_bytes_is_refused_too(server: BackgroundServer) -> None:
    body = b'{"model": "%s", "messages": [{"role": "user", "content": "a\xed\xa0\x80"}]}' % CHAT_ID.encode()
    response = post_json(f"{server.url}/v1/chat/completions", body)
    assert response.status_code == 400 and "lone UTF-16 surrogate" in response.json()["error"]["message"]
    fine = post_json(f"{server.url}/v1/chat/completions", json.dumps({"model": CHAT_ID, "messages": HI}).encode())
    assert fine.status_code == 200 and fine.json()["choices"][0]["message"]["content"] == "hi"


def test_a_batch_with_a_surrogate_in_its_metadata_is_refused_and_not_stored(
    server: BackgroundServer, state_dir: Path
) -> None:
    upload = httpx.post(f"{server.url}/v1/files", files={"file": ("r.jsonl", batch_file(1))}, data={"purpose": "batch"})
    assert upload.status_code == 200 and "adam_validation" not in upload.json()
    for metadata in ({"k": LONE}, {LONE: "v"}):
        body = {"input_file_id": upload.json()["id"], "endpoint": "/v1/chat/completions",
                "completion_window": "24h", "metadata": metadata}  # fmt: skip
        response = post_json(f"{server.url}/v1/batches", json.dumps(body).encode())
        assert response.status_code == 400 and "lone UTF-16 surrogate" in response.json()["error"]["message"]
    listed = httpx.get(f"{server.url}/v1/batches")
    assert listed.status_code == 200 and listed.json()["data"] == []
    assert httpx.get(f"{server.url}/ui/api/batches").json()["data"] == []
    assert not list((state_dir / "batches").glob("batch_*"))


def test_an_upload_whose_file_name_decodes_to_a_surrogate_is_a_400(server: BackgroundServer) -> None:
    part = b"--XX\r\nContent-Disposition: form-data; name=\"file\"; filename*=utf-7''a%2B2AA-.jsonl\r\n\r\n"
    body = b'--XX\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n' + part + batch_file(1)
    response = httpx.post(f"{server.url}/v1/files", content=body + b"\r\n--XX--\r\n",
                          headers={"content-type": "multipart/form-data; boundary=XX"})  # fmt: skip
    assert response.status_code == 400, response.text
    assert "lone UTF-16 surrogate" in response.json()["error"]["message"]
    assert httpx.get(f"{server.url}/v1/files").status_code == 200
