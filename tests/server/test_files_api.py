"""The Files API for batch input with the official openai client: upload, validate, retrieve, content, list, delete."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import openai
import pytest
from serving import CHAT_ID, engine_for, serving

from adam.server.batch_input import Resolve, check_file
from adam.server.errors import model_not_found
from adam.server.listen import BackgroundServer


def batch_line(custom_id: str, text: str, url: str = "/v1/chat/completions") -> str:
    body = {"model": CHAT_ID, "messages": [{"role": "user", "content": text}]}
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": url, "body": body})


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serve-state")


@pytest.fixture(scope="module")
def server(state_dir: Path) -> Iterator[BackgroundServer]:
    with serving(engine_for(), state_dir=str(state_dir)) as running:
        yield running


@pytest.fixture
def client(server: BackgroundServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def test_upload_retrieve_content_list_delete(client: openai.OpenAI, state_dir: Path) -> None:
    data = ("\n".join(batch_line(f"r{i}", f"hello {i}") for i in range(3)) + "\n").encode()
    created = client.files.create(file=("../../etc/passwd", data), purpose="batch")
    assert created.id.startswith("file-") and created.purpose == "batch" and created.bytes == len(data)
    assert created.filename == "passwd"  # shown back, never used as a path
    stored = sorted(p.name for p in (state_dir / "files").iterdir())
    assert stored == [f"{created.id}.json", f"{created.id}.jsonl"]
    assert client.files.retrieve(created.id).id == created.id
    content = client.files.content(created.id)
    assert content.content == data
    assert content.response.headers["x-content-type-options"] == "nosniff"  # never read as a page or a script
    assert created.id in [f.id for f in client.files.list().data]
    deleted = client.files.delete(created.id)
    assert deleted.deleted and deleted.id == created.id
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        client.files.delete(created.id)


def test_ids_from_requests_never_reach_the_disk(server: BackgroundServer) -> None:
    for bad in ("..%2F..%2Fetc%2Fpasswd", "file-..", "file-0000"):
        response = httpx.get(f"{server.url}/v1/files/{bad}/content")
        assert response.status_code == 404
        assert response.json()["error"]["type"] == "not_found_error"


def test_a_purpose_other_than_batch_is_refused(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.files.create(file=("a.jsonl", b"{}\n"), purpose="fine-tune")
    assert err.value.body["param"] == "purpose"  # type: ignore[index]


def test_a_body_that_is_not_multipart_is_a_400(server: BackgroundServer) -> None:
    response = httpx.post(f"{server.url}/v1/files", json={"purpose": "batch"})
    assert response.status_code == 400
    assert "multipart" in response.json()["error"]["message"]


def served_as(*names: str) -> Resolve:
    """A resolver over models called ``names`` (each its own model), refusing others as the routes do."""

    def resolve(endpoint: str, name: str) -> SimpleNamespace:
        if name not in names:
            raise model_not_found(name, list(names))
        return SimpleNamespace(openai_id=name)

    return resolve


def test_validation_reports_each_line_that_fails_the_batch(tmp_path: Path) -> None:
    lines = [
        batch_line("a", "fine"),
        "not json",
        batch_line("a", "again"),
        json.dumps({"prompt": "native, not a batch line"}),
        batch_line("e", "an embedding in a chat file", url="/v1/embeddings"),
        batch_line("c", "a completion in a chat file", url="/v1/completions"),
        "",
    ]
    (tmp_path / "in.jsonl").write_text("\n".join(lines))
    found = check_file(tmp_path / "in.jsonl", "/v1/chat/completions", served_as(CHAT_ID))
    assert found.lines == 6 and found.model is not None and found.model.openai_id == CHAT_ID
    assert [p["line"] for p in found.problems] == [2, 3, 4, 5, 6]
    assert "duplicate id 'a'" in found.problems[1]["message"]
    assert "OpenAI batch request line" in found.problems[2]["message"]
    assert "'/v1/embeddings' is not the batch's endpoint '/v1/chat/completions'" in found.problems[3]["message"]
    assert "'/v1/completions' is not the batch's endpoint" in found.problems[4]["message"]
    (tmp_path / "blank.jsonl").write_text("\n\n")
    assert check_file(tmp_path / "blank.jsonl", "/v1/chat/completions", served_as()).problems[0]["code"] == "empty_file"


def test_without_a_state_dir_the_files_api_says_so() -> None:
    with serving(engine_for()) as running:
        response = httpx.get(f"{running.url}/v1/files")
    assert response.status_code == 404
    assert "job.state_dir" in response.json()["error"]["message"]
