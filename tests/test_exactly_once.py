"""Exactly once under contention and faults: the run-dir lock, store prune lock, resume identity, clean stops."""

from __future__ import annotations

import errno
import gzip
import json
import os
import shlex
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import REPO, compose_cfg, read_jsonl, write_jsonl

from adam.backends.echo import EchoBackend
from adam.errors import BackendError, ConfigError, ExitCode, InputError, RunDirLocked
from adam.io import embed_store
from adam.io.writers import RunWriter
from adam.run.locks import RunDirLock, StoreLock
from adam.run.run_control import check_same_model
from adam.run.runner import run


def _run(tmp_path: Path, *overrides: str, name: str = "run"):
    return run(compose_cfg("backend=echo", *overrides, run_dir=tmp_path / name))


def _manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


def _ids(run_dir: Path) -> list:
    return [r["id"] for r in read_jsonl(run_dir / "results.jsonl")]


def _prompts(tmp_path: Path, n: int, name: str = "in.jsonl") -> Path:
    return write_jsonl(tmp_path / name, [{"id": f"r{i}", "prompt": f"prompt {i}"} for i in range(n)])


# ---------------------------------------------------------------------- one process per run dir
def test_a_held_run_dir_is_refused_in_one_line_and_nothing_is_written(tmp_path: Path) -> None:
    src = _prompts(tmp_path, 5)
    stopped = _run(tmp_path, f"job.input={src}", "backend.unavailable=true")
    before = {p.name: p.read_bytes() for p in stopped.run_dir.iterdir() if p.is_file() and p.name != ".adam.lock"}
    with RunDirLock(stopped.run_dir), pytest.raises(RunDirLocked) as caught:
        _run(tmp_path, f"job.input={src}", f"job.resume={stopped.run_dir}", name="second")
    message = str(caught.value)
    assert f"host {socket.gethostname()}, pid {os.getpid()}" in message and "\n" not in message
    after = {p.name: p.read_bytes() for p in stopped.run_dir.iterdir() if p.is_file() and p.name != ".adam.lock"}
    assert after == before  # not a byte written, not even a failed manifest


def _adam(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "adam", *args],
        cwd=REPO,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_processes_resuming_one_run_dir_write_every_record_once(tmp_path: Path) -> None:
    src = _prompts(tmp_path, 400)
    stopped = _run(tmp_path, f"job.input={src}", "backend.unavailable=true")
    args = ["backend=echo", f"job.input={src}", f"job.resume={stopped.run_dir}", "job.batch_size=8"]
    first = _adam(*args, "backend.delay=0.25", f"hydra.run.dir={tmp_path / 'a'}")  # outlasts a slow start of the second
    deadline = time.monotonic() + 60
    while not (stopped.run_dir / "results.jsonl").stat().st_size and time.monotonic() < deadline:
        time.sleep(0.05)  # the first process owns the dir once it writes results
    second = _adam(*args, f"hydra.run.dir={tmp_path / 'b'}")
    _, err2 = second.communicate(timeout=120)
    _, err1 = first.communicate(timeout=300)
    assert first.returncode == 0, err1
    assert second.returncode == 1
    refusal = [line for line in err2.splitlines() if "in use by" in line]
    assert len(refusal) == 1 and f"pid {first.pid}" in refusal[0] and "Traceback" not in err2
    ids = _ids(stopped.run_dir)
    assert sorted(ids) == sorted(f"r{i}" for i in range(400)) and len(ids) == len(set(ids))


def test_default_run_dirs_are_unique_and_sort_by_start_time() -> None:
    dirs = [str(compose_cfg("backend=echo").hydra.run.dir) for _ in range(5)]
    sweeps = [str(compose_cfg("backend=echo").hydra.sweep.dir) for _ in range(3)]
    assert len(set(dirs)) == 5 and dirs == sorted(dirs)
    assert len(set(sweeps)) == 3 and sweeps == sorted(sweeps)


def test_the_manifest_with_the_input_hash_exists_before_results_do(tmp_path: Path, monkeypatch) -> None:
    seen: list[dict] = []

    class Watching(RunWriter):
        def __init__(self, run_dir: Path) -> None:
            seen.append(_manifest(run_dir))  # a kill right after this line must leave a resumable dir
            super().__init__(run_dir)

    monkeypatch.setattr("adam.run.run_session.RunWriter", Watching)
    summary = _run(tmp_path, f"job.input={_prompts(tmp_path, 3)}")
    assert seen[0]["status"] == "running" and len(seen[0]["input"]["sha256"]) == 64
    assert summary.exit_code == ExitCode.OK


# ---------------------------------------------------------------------- resume identity
def test_resume_refuses_a_setting_that_changes_the_output_and_names_it(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "text": f"doc {i}"} for i in range(6)])
    stopped = _run(tmp_path, "job=embed", f"job.input={src}", "backend.unavailable=true")
    with pytest.raises(ConfigError, match=r"backend\.dimensions: 32 -> 64"):
        _run(tmp_path, "job=embed", f"job.input={src}", "backend.dimensions=64", f"job.resume={stopped.run_dir}")
    with pytest.raises(ConfigError, match=r"job\.query_task: null -> \"retrieval\""):
        _run(tmp_path, "job=embed", f"job.input={src}", "job.query_task=retrieval", f"job.resume={stopped.run_dir}")
    # how fast it runs may change
    done = _run(
        tmp_path, "job=embed", f"job.input={src}", "job.batch_size=2", "job.window=3", f"job.resume={stopped.run_dir}"
    )
    assert done.exit_code == ExitCode.OK and sorted(_ids(stopped.run_dir)) == list(range(6))
    widths = {len(r["embedding"]) for r in read_jsonl(stopped.run_dir / "results.jsonl")}
    assert widths == {32}


@pytest.mark.parametrize("key", ["digest", "sha256", "revision", "model"])
def test_the_model_identity_includes_the_ollama_digest_and_the_gguf_hash(key: str) -> None:
    previous = {"backend": {key: "aaa"}}
    check_same_model(previous, {key: "aaa"}, Path("run"))
    with pytest.raises(ConfigError, match=f"{key}: aaa -> bbb"):
        check_same_model(previous, {key: "bbb"}, Path("run"))


# ---------------------------------------------------------------------- the store
def test_prune_refuses_while_another_run_holds_the_store_and_a_resume_prunes(tmp_path: Path) -> None:
    store = tmp_path / "s.db"
    old = write_jsonl(tmp_path / "old.jsonl", [{"id": f"o{i}", "text": f"old doc {i}"} for i in range(4)])
    new = write_jsonl(tmp_path / "new.jsonl", [{"id": f"n{i}", "text": f"new doc {i}"} for i in range(3)])
    _run(tmp_path, "job=embed", f"job.input={old}", f"job.store={store}", name="old")
    prune = (f"job.store={store}", "job.prune=true", "job.prune_max_fraction=1.0")  # every old record goes
    other = StoreLock(store).share()  # another run filling the store right now
    try:
        held = _run(tmp_path, "job=embed", f"job.input={new}", *prune, name="new")
    finally:
        other.release()
    assert held.exit_code == ExitCode.STOPPED and held.status == "stopped"
    assert "not pruned" in held.message and f"job.resume={held.run_dir}" in held.message
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 7  # nothing of the other run's was wiped
    again = _run(tmp_path, "job=embed", f"job.input={new}", *prune, f"job.resume={held.run_dir}")
    assert again.exit_code == ExitCode.OK and again.stats.extra["pruned"] == 4


def test_a_store_locked_past_the_busy_timeout_stops_the_run_resumably(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(embed_store, "BUSY_TIMEOUT_S", 0.2)
    store = tmp_path / "s.db"
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "text": f"doc {i}"} for i in range(10)])
    _run(tmp_path, "job=embed", f"job.input={write_jsonl(tmp_path / 'a.jsonl', [{'id': 'a', 'text': 'a'}])}",
         f"job.store={store}", name="first")  # fmt: skip
    blocker = sqlite3.connect(store, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        stopped = _run(tmp_path, "job=embed", f"job.input={src}", f"job.store={store}", "job.batch_size=4")
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert stopped.exit_code == ExitCode.STOPPED
    assert "locked by another process" in stopped.message and "job.resume=" in stopped.message
    manifest = _manifest(stopped.run_dir)
    assert manifest["status"] == "stopped" and "locked" in manifest["error"]
    again = _run(tmp_path, "job=embed", f"job.input={src}", f"job.store={store}", f"job.resume={stopped.run_dir}")
    assert again.exit_code == ExitCode.OK and sorted(_ids(stopped.run_dir)) == list(range(10))


# ---------------------------------------------------------------------- faults
def test_disk_full_stops_cleanly_with_a_resume_command_and_loses_nothing(tmp_path: Path, monkeypatch) -> None:
    src = _prompts(tmp_path, 40)
    real_write, calls = RunWriter.write, []

    def write(self, results, errors):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.results_path))
        real_write(self, results, errors)

    monkeypatch.setattr(RunWriter, "write", write)
    stopped = _run(tmp_path, f"job.input={src}", "job.batch_size=5")
    assert stopped.exit_code == ExitCode.STOPPED and stopped.status == "stopped"
    assert "disk full" in stopped.message and "No space left" in stopped.message
    assert shlex.split(stopped.message.split("resume with: ")[1])[-1] == f"job.resume={stopped.run_dir}"
    manifest = _manifest(stopped.run_dir)
    assert manifest["status"] == "stopped" and manifest["exit_code"] == 4 and "disk full" in manifest["error"]
    monkeypatch.setattr(RunWriter, "write", real_write)
    again = _run(tmp_path, f"job.input={src}", f"job.resume={stopped.run_dir}", name="again")
    ids = _ids(stopped.run_dir)
    assert again.exit_code == ExitCode.OK and sorted(ids) == sorted(f"r{i}" for i in range(40)) and len(set(ids)) == 40


def test_an_input_found_unreadable_mid_run_ends_failed_and_keeps_what_was_written(tmp_path: Path) -> None:
    rows = "".join(json.dumps({"id": i, "prompt": f"prompt {i} " + "x" * 200}) + "\n" for i in range(400))
    whole = gzip.compress(rows.encode())
    src = tmp_path / "in.jsonl.gz"
    src.write_bytes(whole[: len(whole) // 2])  # a cut-off download
    with pytest.raises(InputError, match="cannot read"):
        _run(tmp_path, f"job.input={src}", "job.window=20", "job.batch_size=10")
    run_dir = tmp_path / "run"
    manifest = _manifest(run_dir)
    assert manifest["status"] == "failed" and manifest["exit_code"] == 1 and "cannot read" in manifest["error"]
    assert len(_ids(run_dir)) >= 20  # what finished before the read failed stays


def test_a_bug_still_leaves_a_failed_manifest(tmp_path: Path, monkeypatch) -> None:
    def broken(self, requests):
        raise RuntimeError("boom")

    monkeypatch.setattr(EchoBackend, "_generate_batch", broken)
    with pytest.raises(RuntimeError):
        _run(tmp_path, f"job.input={_prompts(tmp_path, 3)}")
    manifest = _manifest(tmp_path / "run")
    assert manifest["status"] == "failed" and "RuntimeError: boom" in manifest["error"]


def test_a_backend_failing_every_request_stops_resumably_past_max_consecutive_failures(
    tmp_path: Path, monkeypatch
) -> None:
    src = _prompts(tmp_path, 60)
    real = EchoBackend._generate_batch

    def failing(self, requests):
        raise BackendError("HTTP 500: upstream reset")

    monkeypatch.setattr(EchoBackend, "_generate_batch", failing)
    stopped = _run(tmp_path, f"job.input={src}", "job.batch_size=4", "job.max_consecutive_failures=10")
    assert stopped.exit_code == ExitCode.STOPPED and stopped.status == "stopped"
    assert "12 requests in a row" in stopped.message and "HTTP 500" in stopped.message
    assert len(read_jsonl(stopped.run_dir / "errors.jsonl")) == 12  # three batches of four, then the stop
    off = _run(tmp_path, f"job.input={src}", "job.batch_size=4", "job.max_consecutive_failures=null", name="off")
    assert off.exit_code == ExitCode.NO_SUCCESS and len(read_jsonl(off.run_dir / "errors.jsonl")) == 60
    monkeypatch.setattr(EchoBackend, "_generate_batch", real)
    again = _run(tmp_path, f"job.input={src}", f"job.resume={stopped.run_dir}", "job.retry_errors=true", name="x")
    assert again.exit_code == ExitCode.OK and sorted(_ids(stopped.run_dir)) == sorted(f"r{i}" for i in range(60))


def test_a_success_ends_the_failure_streak(tmp_path: Path) -> None:
    rows = [{"id": i, "prompt": f"prompt {i}"} for i in range(200)]
    summary = _run(
        tmp_path,
        f"job.input={write_jsonl(tmp_path / 'in.jsonl', rows)}",
        "backend.failure_rate=0.3",
        "job.batch_size=1",
        "job.max_consecutive_failures=8",
    )
    assert summary.exit_code == ExitCode.PARTIAL  # scattered failures never add up to a streak of 8


# ---------------------------------------------------------------------- small repairs
def test_the_resume_command_survives_spaces_and_dollars_in_the_path(tmp_path: Path) -> None:
    src = _prompts(tmp_path, 3)
    stopped = _run(tmp_path, f"job.input={src}", "backend.unavailable=true", name="my $HOME run")
    command = stopped.message.split("resume with: ")[1]
    assert shlex.split(command)[-1] == f"job.resume={stopped.run_dir}"


def test_a_resume_removes_the_temp_files_a_killed_run_left(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "text": f"doc {i}"} for i in range(3)])
    stopped = _run(tmp_path, "job=embed", f"job.input={src}", "backend.unavailable=true")
    for name in (".embeddings.parquet.4242.tmp", ".manifest.json.4242.tmp"):
        (stopped.run_dir / name).write_bytes(b"half")
    (stopped.run_dir / "notes.tmp").write_text("mine")  # not adam's: stays
    _run(tmp_path, "job=embed", f"job.input={src}", f"job.resume={stopped.run_dir}", name="again")
    left = sorted(p.name for p in stopped.run_dir.iterdir() if p.name.endswith(".tmp"))
    assert left == ["notes.tmp"]
