"""The Batch API with the official openai client (echo): create, poll, download, list, cancel, expiry, restart."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from helpers import REPO, compose_cfg, read_jsonl
from serving import CHAT_ID, engine_for, serving

from adam.run.locks import RunDirLock
from adam.run.runner import run
from adam.settings.job_schemas import GenerateJob

ENDED = ("completed", "failed", "cancelled", "expired")


def batch_file(count: int, url: str = "/v1/chat/completions") -> bytes:
    lines = []
    for i in range(count):
        if url == "/v1/embeddings":
            body: dict[str, Any] = {"model": "minilm", "input": f"text {i}"}
        else:
            body = {"model": CHAT_ID, "messages": [{"role": "user", "content": f"question {i}"}], "max_tokens": 8}
        lines.append(json.dumps({"custom_id": f"req-{i}", "method": "POST", "url": url, "body": body}))
    return ("\n".join(lines) + "\n").encode()


def client_for(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


def wait_for(client: openai.OpenAI, batch_id: str, statuses: tuple[str, ...] = ENDED, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in statuses or time.monotonic() > deadline:
            return batch
        time.sleep(0.05)


def submit(client: openai.OpenAI, data: bytes, endpoint: str = "/v1/chat/completions", name: str = "r.jsonl") -> Any:
    """Upload ``data`` and create a 24h batch over it."""
    upload = client.files.create(file=(name, data), purpose="batch")
    return client.batches.create(input_file_id=upload.id, endpoint=endpoint, completion_window="24h")  # type: ignore[arg-type]


def wait_answered(client: openai.OpenAI, batch_id: str, at_least: int, timeout: float) -> None:
    """Until the batch has answered ``at_least`` lines (or ``timeout`` seconds pass)."""
    deadline = time.monotonic() + timeout
    while client.batches.retrieve(batch_id).request_counts.completed < at_least and time.monotonic() < deadline:
        time.sleep(0.02)


def lines_of(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.decode().splitlines()]


def answers(rows: list[dict[str, Any]]) -> dict[str, str]:
    return {r["custom_id"]: r["response"]["body"]["choices"][0]["message"]["content"] for r in rows}


def test_create_poll_download_matches_a_plain_run(tmp_path: Path) -> None:
    data = batch_file(12)
    with serving(engine_for(), state_dir=str(tmp_path / "state"), max_batch=4) as server:
        client = client_for(server.url)
        upload = client.files.create(file=("requests.jsonl", data), purpose="batch")
        batch = client.batches.create(
            input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h", metadata={"k": "v"}
        )
        assert batch.status == "validating" and batch.metadata == {"k": "v"} and batch.completion_window == "24h"
        done = wait_for(client, batch.id)
        assert done.status == "completed", done
        assert done.request_counts.total == 12 and done.request_counts.completed == 12
        assert done.request_counts.failed == 0 and done.error_file_id is None
        assert done.in_progress_at and done.finalizing_at and done.completed_at
        served = lines_of(client.files.content(done.output_file_id).content)
        assert [b.id for b in client.batches.list().data] == [batch.id]
    (tmp_path / "requests.jsonl").write_bytes(data)
    cfg = compose_cfg("backend=echo", "size=demo", f"job.input={tmp_path / 'requests.jsonl'}", run_dir=tmp_path / "run")
    run(cfg)
    plain = read_jsonl(tmp_path / "run" / "results.jsonl")
    assert answers(served) == answers(plain) and len(served) == 12
    assert all(r["response"]["status_code"] == 200 for r in served)


def test_a_malformed_file_fails_with_its_errors(tmp_path: Path) -> None:
    good = batch_file(2).decode().splitlines()
    data = "\n".join([good[0], "{not json", good[0], json.dumps({"custom_id": "x", "url": "/v1/chat/completions"})])
    with serving(engine_for(), state_dir=str(tmp_path)) as server:
        client = client_for(server.url)
        batch = submit(client, data.encode(), name="bad.jsonl")
        failed = wait_for(client, batch.id)
        assert failed.status == "failed" and failed.failed_at
        assert failed.errors is not None
        assert [e.line for e in failed.errors.data] == [2, 3, 4]
        assert "duplicate id" in failed.errors.data[1].message
        assert client.models.list().data  # the server is still up


def test_create_refuses_other_windows_endpoints_and_unknown_files(tmp_path: Path) -> None:
    with serving(engine_for(), state_dir=str(tmp_path)) as server:
        client = client_for(server.url)
        upload = client.files.create(file=("r.jsonl", batch_file(1)), purpose="batch")
        with pytest.raises(openai.BadRequestError):
            client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="1h")  # type: ignore[arg-type]
        with pytest.raises(openai.BadRequestError):
            client.batches.create(input_file_id=upload.id, endpoint="/v1/responses", completion_window="24h")
        with pytest.raises(openai.NotFoundError):
            client.batches.create(input_file_id="file-nope", endpoint="/v1/chat/completions", completion_window="24h")
        with pytest.raises(openai.NotFoundError):
            client.batches.retrieve("batch_nope")


def test_list_pages_with_after_and_limit(tmp_path: Path) -> None:
    with serving(engine_for(), state_dir=str(tmp_path)) as server:
        client = client_for(server.url)
        upload = client.files.create(file=("r.jsonl", batch_file(1)), purpose="batch")
        ids = [
            client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h").id
            for _ in range(3)
        ]
        first = client.batches.list(limit=2)
        assert [b.id for b in first.data] == ids[::-1][:2] and first.has_more
        second = client.batches.list(limit=2, after=first.data[-1].id)
        assert [b.id for b in second.data] == [ids[0]] and not second.has_more
        assert [b.id for b in client.batches.list(limit=2)] == ids[::-1]  # the client follows the pages
        for batch_id in ids:
            assert wait_for(client, batch_id).status == "completed"


def test_cancel_stops_after_the_chunk_in_flight(tmp_path: Path) -> None:
    with serving(engine_for("backend.delay=0.05"), state_dir=str(tmp_path), max_batch=2) as server:
        client = client_for(server.url)
        batch = submit(client, batch_file(200))
        wait_for(client, batch.id, ("in_progress",))
        time.sleep(0.2)
        cancelling = client.batches.cancel(batch.id)
        assert cancelling.status in ("cancelling", "cancelled")
        cancelled = wait_for(client, batch.id)
        assert cancelled.status == "cancelled" and cancelled.cancelled_at and cancelled.cancelling_at
        done = cancelled.request_counts.completed
        assert 0 < done < 200
        assert len(lines_of(client.files.content(cancelled.output_file_id).content)) == done


def test_a_batch_past_its_window_expires_with_what_it_finished(tmp_path: Path) -> None:
    options = {"state_dir": str(tmp_path), "max_batch": 2, "batch_window_s": 0.5}
    with serving(engine_for("backend.delay=0.05"), **options) as server:
        client = client_for(server.url)
        batch = submit(client, batch_file(200))
        expired = wait_for(client, batch.id)
        assert expired.status == "expired" and expired.expired_at
        done = expired.request_counts.completed
        assert 0 < done < 200
        rows = lines_of(client.files.content(expired.output_file_id).content)
        ids = [r["custom_id"] for r in rows]  # length-sorted within the read-ahead window, as a job's are
        assert len(ids) == len(set(ids)) == done and set(ids) <= {f"req-{i}" for i in range(200)}


def batch_run_dir(state_dir: Path, batch_id: str) -> Path:
    return state_dir / "batches" / batch_id / "run"


def manifest_of(state_dir: Path, batch_id: str) -> dict[str, Any]:
    return json.loads((batch_run_dir(state_dir, batch_id) / "manifest.json").read_text())


def test_each_batch_is_an_adam_run_with_its_manifest(tmp_path: Path) -> None:
    data = batch_file(7)
    with serving(engine_for(), state_dir=str(tmp_path), max_batch=3) as server:
        client = client_for(server.url)
        batch = submit(client, data)
        assert wait_for(client, batch.id).status == "completed"
    manifest = manifest_of(tmp_path, batch.id)
    assert manifest["status"] == "completed" and manifest["exit_code"] == 0 and manifest["job"] == "generate"
    assert manifest["input"]["sha256"] == hashlib.sha256(data).hexdigest()
    counts = manifest["counts"]  # a run's JobStats, as python -m adam records them
    assert (counts["ok"], counts["failed"], counts["invalid"]) == (7, 0, 0) and counts["tokens"] > 0
    assert "totals" not in manifest
    assert manifest["backend"]["model"] == "echo/demo" and manifest["batch"]["id"] == batch.id
    assert manifest["config"]["settings"]["max_tokens"] == engine_for().settings.max_tokens
    job = manifest["config"]["job"]  # the runner's own job=generate, not a stand-in
    assert (job["name"], job["batch_size"], job["format"]) == ("generate", 3, "openai")
    assert (job["max_consecutive_failures"], job["window"]) == (
        GenerateJob.max_consecutive_failures,
        GenerateJob.window,
    )
    with RunDirLock(batch_run_dir(tmp_path, batch.id)):  # the server let its run dir go
        pass


def test_a_restarted_server_resumes_the_batch_exactly_once(tmp_path: Path) -> None:
    engine = engine_for("backend.delay=0.02")
    with serving(engine, state_dir=str(tmp_path), max_batch=4) as server:
        client = client_for(server.url)
        batch = submit(client, batch_file(300))
        wait_answered(client, batch.id, 40, timeout=10)
    stopped = json.loads((tmp_path / "batches" / batch.id / "batch.json").read_text())
    assert stopped["status"] == "in_progress" and 0 < stopped["request_counts"]["completed"] < 300
    first = manifest_of(tmp_path, batch.id)
    assert first["status"] == "stopped" and first["exit_code"] == 4
    assert first["counts"]["ok"] == stopped["request_counts"]["completed"]
    lock = RunDirLock(batch_run_dir(tmp_path, batch.id)).acquire()  # another process owns the run dir
    try:
        with serving(engine_for(), state_dir=str(tmp_path), max_batch=32) as server:
            client = client_for(server.url)
            time.sleep(1.0)
            held = client.batches.retrieve(batch.id)
            assert held.status == "in_progress"
            assert held.request_counts.completed == stopped["request_counts"]["completed"]  # nothing answered twice
            lock.release()
            done = wait_for(client, batch.id)
            assert done.status == "completed" and done.request_counts.completed == 300
            rows = lines_of(client.files.content(done.output_file_id).content)
    finally:
        lock.release()
    counts = Counter(r["custom_id"] for r in rows)
    assert set(counts) == {f"req-{i}" for i in range(300)} and set(counts.values()) == {1}
    second = manifest_of(tmp_path, batch.id)
    assert second["status"] == "completed" and second["resumes"] == 1 and second["resumed_from_status"] == "stopped"
    assert second["resume"]["results_before"] == stopped["request_counts"]["completed"]
    assert second["totals"] == {"results": 300, "errors": 0, "skipped_as_done": first["counts"]["ok"]}
    assert (second["counts"]["ok"], second["counts"]["failed"]) == (300 - first["counts"]["ok"], 0)


def test_a_batch_is_not_resumed_on_another_model(tmp_path: Path) -> None:
    with serving(engine_for("backend.delay=0.05"), state_dir=str(tmp_path), max_batch=2) as server:
        client = client_for(server.url)
        batch = submit(client, batch_file(100))
        wait_answered(client, batch.id, 4, timeout=10)
    with serving(engine_for("size=qwen3_small"), state_dir=str(tmp_path)) as server:
        failed = wait_for(client_for(server.url), batch.id)
    assert failed.status == "failed" and failed.errors is not None
    assert failed.errors.data[0].code == "model_changed"
    assert f"the batch runs {CHAT_ID}, which this server does not serve" in failed.errors.data[0].message


def start_serve(state_dir: Path, run_dir: Path, port: int, *overrides: str) -> subprocess.Popen[str]:
    """python -m adam job=serve on ``port``, once it answers /health."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("ADAM_API_KEY", None)
    command = [sys.executable, "-m", "adam", "job=serve", "backend=echo", f"job.port={port}",
               f"job.state_dir={state_dir}", f"hydra.run.dir={run_dir}", *overrides]  # fmt: skip
    log = run_dir.parent / f"{run_dir.name}.stderr"  # a file, not a pipe: a pipe nobody reads fills and blocks
    with open(log, "w") as stderr:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=stderr, text=True)
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
            return proc
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise AssertionError(log.read_text()[-3000:]) from None
            time.sleep(0.1)


def test_sigkill_mid_batch_then_restart_answers_every_line_once(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url, state = f"http://127.0.0.1:{port}", tmp_path / "state"
    proc = start_serve(state, tmp_path / "run1", port, "backend.delay=0.05", "job.max_batch=2")
    try:
        client = client_for(url)
        batch = submit(client, batch_file(300))
        wait_answered(client, batch.id, 20, timeout=20)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert json.loads((state / "batches" / batch.id / "batch.json").read_text())["status"] == "in_progress"
    proc = start_serve(state, tmp_path / "run2", port)
    try:
        done = wait_for(client_for(url), batch.id)
        rows = lines_of(client_for(url).files.content(done.output_file_id).content) if done.output_file_id else []
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert done.status == "completed" and done.request_counts.completed == 300
    counts = Counter(r["custom_id"] for r in rows)
    assert set(counts) == {f"req-{i}" for i in range(300)} and set(counts.values()) == {1}
    manifest = manifest_of(state, batch.id)  # killed while "running": resumed as the runner resumes a run
    assert manifest["status"] == "completed" and manifest["resumed_from_status"] == "running"
    assert manifest["resume"]["results_before"] >= 20


def test_an_embeddings_batch(tmp_path: Path) -> None:
    with serving(engine_for("size=minilm"), state_dir=str(tmp_path)) as server:
        client = client_for(server.url)
        batch = submit(client, batch_file(5, "/v1/embeddings"), "/v1/embeddings", name="e.jsonl")
        done = wait_for(client, batch.id)
        assert done.status == "completed" and done.request_counts.completed == 5
        rows = lines_of(client.files.content(done.output_file_id).content)
        assert all(len(r["response"]["body"]["data"][0]["embedding"]) > 0 for r in rows)


def test_a_chat_batch_on_an_embedding_only_server_fails_cleanly(tmp_path: Path) -> None:
    with serving(engine_for("size=minilm"), state_dir=str(tmp_path)) as server:
        client = client_for(server.url)
        batch = submit(client, batch_file(2))
        failed = wait_for(client, batch.id)
        assert failed.status == "failed" and failed.errors is not None
        assert failed.errors.data[0].code == "unsupported"


def test_interactive_requests_go_first_while_a_batch_runs(tmp_path: Path) -> None:
    with serving(engine_for("backend.delay=0.05"), state_dir=str(tmp_path), max_batch=2) as server:
        client = client_for(server.url)
        batch = submit(client, batch_file(200))
        wait_for(client, batch.id, ("in_progress",))
        reply = client.chat.completions.create(model=CHAT_ID, messages=[{"role": "user", "content": "me first"}])
        assert reply.choices[0].message.content == "me first"
        assert client.batches.retrieve(batch.id).status == "in_progress"  # answered in a gap, not after the batch
        client.batches.cancel(batch.id)
        assert wait_for(client, batch.id).status == "cancelled"


def test_a_batch_on_the_tiny_model_matches_a_plain_run(tmp_path: Path, tiny_qwen3_dir: Path) -> None:
    model = ("backend=huggingface", "size=local", f"size.path={tiny_qwen3_dir}", "hardware=cpu")
    rows = [
        {"custom_id": f"t{i}", "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": "local", "messages": [{"role": "user", "content": f"Count to {i}"}], "max_tokens": 6,
                  "temperature": 0}}
        for i in range(3)
    ]  # fmt: skip
    data = ("\n".join(json.dumps(r) for r in rows) + "\n").encode()
    with serving(engine_for(*model), state_dir=str(tmp_path / "state")) as server:
        client = client_for(server.url)
        batch = submit(client, data, name="t.jsonl")
        done = wait_for(client, batch.id, timeout=120)
        assert done.status == "completed", done
        served = lines_of(client.files.content(done.output_file_id).content)
    (tmp_path / "t.jsonl").write_bytes(data)
    run(compose_cfg(*model, f"job.input={tmp_path / 't.jsonl'}", run_dir=tmp_path / "run"))
    assert answers(served) == answers(read_jsonl(tmp_path / "run" / "results.jsonl"))
