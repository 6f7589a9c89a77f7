"""The Batch API under faults: a full disk pauses a batch (never ends it), and stored state that cannot be read is
skipped, never a listing's 500. The disk is a real one: a small tmpfs filled by a file (root only)."""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from serving import engine_for, serving
from small_disk import fill, small_disk
from test_batch_api import batch_file, client_for, lines_of, submit, wait_answered, wait_for

PAUSED = "paused: the disk is full"


def wait_paused(client: openai.OpenAI, batch_id: str, caplog: pytest.LogCaptureFixture, timeout: float = 30) -> Any:
    """The batch once the worker has paused it on the full disk (it fails the test if that never happens)."""
    deadline = time.monotonic() + timeout
    while not any(PAUSED in r.getMessage() for r in caplog.records):
        batch = client.batches.retrieve(batch_id)
        assert batch.status in ("validating", "in_progress") and time.monotonic() < deadline, batch
        time.sleep(0.05)
    return client.batches.retrieve(batch_id)


def each_once(client: openai.OpenAI, batch: Any, count: int) -> None:
    """The batch completed with every custom_id answered exactly once."""
    assert batch.status == "completed" and batch.request_counts.completed == count, batch
    assert batch.request_counts.failed == 0 and batch.error_file_id is None
    rows = lines_of(client.files.content(batch.output_file_id).content)
    counts = Counter(r["custom_id"] for r in rows)
    assert set(counts) == {f"req-{i}" for i in range(count)} and set(counts.values()) == {1}


def test_a_full_disk_pauses_a_batch_until_space_returns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    slow = engine_for("backend.delay=0.05")  # per call: 1,500 lines take a few seconds, so the fill lands mid-run
    with small_disk(tmp_path / "disk") as disk, serving(slow, state_dir=str(disk / "state")) as server:
        client = client_for(server.url)
        batch = submit(client, batch_file(1500))
        wait_answered(client, batch.id, 1, timeout=60)  # some answers written before the disk fills
        filler = fill(disk, leave=150_000)  # room for a few hundred answers
        paused = wait_paused(client, batch.id, caplog)
        answered = paused.request_counts.completed
        assert paused.status == "in_progress" and 0 < answered < 1500 and paused.output_file_id is None
        time.sleep(1.0)  # it stays paused, not failed, while the disk is full
        assert client.batches.retrieve(batch.id).status == "in_progress"

        fill(disk)  # nothing left at all: an upload or a new batch is a clear 507, and nothing of it is kept
        files_before = sorted(p.name for p in (disk / "state" / "files").iterdir())
        upload = httpx.post(f"{server.url}/v1/files", files={"file": ("r.jsonl", batch_file(50))},
                            data={"purpose": "batch"})  # fmt: skip
        assert upload.status_code == 507, upload.text
        error = upload.json()["error"]
        assert error["code"] == "insufficient_storage" and error["type"] == "server_error"
        assert "disk is full" in error["message"]
        assert sorted(p.name for p in (disk / "state" / "files").iterdir()) == files_before
        with pytest.raises(openai.APIStatusError) as refused:
            client.batches.create(input_file_id=batch.input_file_id, endpoint="/v1/chat/completions",
                                  completion_window="24h")  # fmt: skip
        assert refused.value.status_code == 507
        assert [b.id for b in client.batches.list().data] == [batch.id]

        filler.unlink()  # space again: the batch goes on by itself
        done = wait_for(client, batch.id, timeout=60)
        each_once(client, done, 1500)


def test_a_batch_paused_on_a_full_disk_resumes_after_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    with small_disk(tmp_path / "disk") as disk:
        state = str(disk / "state")
        with serving(engine_for(), state_dir=state) as server:
            client = client_for(server.url)
            batch = submit(client, batch_file(1500))
            filler = fill(disk, leave=150_000)
            answered = wait_paused(client, batch.id, caplog).request_counts.completed
        stored = json.loads((disk / "state" / "batches" / batch.id / "batch.json").read_text())
        assert stored["status"] == "in_progress" and stored["request_counts"]["completed"] <= answered
        filler.unlink()
        with serving(engine_for(), state_dir=state) as server:
            client = client_for(server.url)
            each_once(client, wait_for(client, batch.id, timeout=60), 1500)


def test_a_batch_created_on_a_full_disk_pauses_before_its_first_answer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The disk is full before the batch's run dir gets its manifest: the batch waits, it never fails."""
    caplog.set_level(logging.WARNING)
    with small_disk(tmp_path / "disk") as disk, serving(engine_for(), state_dir=str(disk / "state")) as server:
        client = client_for(server.url)
        upload = client.files.create(file=("r.jsonl", batch_file(200)), purpose="batch")
        filler = fill(disk, leave=12_000)  # the batch's record fits, its run dir's first files do not
        batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                      completion_window="24h")  # fmt: skip
        paused = wait_paused(client, batch.id, caplog)
        assert paused.status in ("validating", "in_progress") and paused.request_counts.completed == 0, paused
        filler.unlink()
        each_once(client, wait_for(client, batch.id, timeout=60), 200)


def test_a_stored_batch_or_file_that_cannot_be_read_is_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with serving(engine_for(), state_dir=str(tmp_path)) as server:
        client = client_for(server.url)
        good = submit(client, batch_file(2))
        assert wait_for(client, good.id).status == "completed"
        upload_id = good.input_file_id
    batches = tmp_path / "batches"
    cut = batches / f"batch_{'1' * 32}" / "batch.json"  # cut short by hand
    cut.parent.mkdir()
    cut.write_text('{"id": "batch_1111')
    surrogate = json.loads((batches / good.id / "batch.json").read_text())  # as an older server stored one
    surrogate.update(id=f"batch_{'2' * 32}", metadata={"k": "a\ud800"})
    (batches / surrogate["id"]).mkdir()
    (batches / surrogate["id"] / "batch.json").write_text(json.dumps(surrogate))
    bad_file = f"file-{'3' * 32}"
    (tmp_path / "files" / f"{bad_file}.json").write_text("{not json")
    (tmp_path / "files" / f"{bad_file}.jsonl").write_text("{}\n")

    caplog.set_level(logging.WARNING)
    with serving(engine_for(), state_dir=str(tmp_path)) as server:
        client = client_for(server.url)
        assert [b.id for b in client.batches.list().data] == [good.id]
        assert client.batches.retrieve(good.id).status == "completed"
        for bad in (f"batch_{'1' * 32}", surrogate["id"]):
            with pytest.raises(openai.NotFoundError):
                client.batches.retrieve(bad)
        page = httpx.get(f"{server.url}/ui/api/batches")
        assert page.status_code == 200 and [b["id"] for b in page.json()["data"]] == [good.id]
        listed = {f.id for f in client.files.list().data}
        assert upload_id in listed and bad_file not in listed
        assert httpx.get(f"{server.url}/v1/files/{bad_file}").status_code == 404
    warnings = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert f"skipping the stored batch {cut}" in warnings
    assert f"skipping the stored batch {batches / surrogate['id'] / 'batch.json'}" in warnings
    assert "lone UTF-16 surrogate" in warnings
    assert f"skipping the stored file object {tmp_path / 'files' / bad_file}.json" in warnings
