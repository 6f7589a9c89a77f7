"""Faults end in one line and a known exit status, never a traceback: a full disk (store, results, Parquet),
a damaged store, a read-only run dir, a closed stdin. Disks are filled for real, on tiny tmpfs mounts (root only)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import REPO, compose_cfg, read_jsonl, write_jsonl

from adam.errors import ExitCode
from adam.run.runner import run


@contextlib.contextmanager
def tmpfs(path: Path, size: str, *, read_only: bool = False) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` (a real full disk), unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (root only): {mounted.stderr.decode().strip()}")
    try:
        if read_only:
            (path / "run").mkdir()
            subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def grow(path: Path, size: str) -> None:
    """Free space on a tmpfs by making it bigger (as a user would by deleting files)."""
    subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True)


def _adam(*args: str, close_stdin: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "adam", *args],
        capture_output=not close_stdin,
        stdout=subprocess.PIPE if close_stdin else None,
        stderr=subprocess.PIPE if close_stdin else None,
        stdin=None if close_stdin else subprocess.DEVNULL,
        preexec_fn=(lambda: os.close(0)) if close_stdin else None,  # as `python -m adam ... <&-`
        text=True,
        cwd=REPO,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=300,
    )


def _manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


def _docs(tmp_path: Path, n: int, words: int) -> Path:
    return write_jsonl(
        tmp_path / "in.jsonl", [{"id": f"d{i}", "text": f"doc {i} " + "word " * words} for i in range(n)]
    )


# ---------------------------------------------------------------------- a full disk
def test_a_full_disk_under_the_store_stops_the_run_resumably(tmp_path: Path) -> None:
    src = _docs(tmp_path, 600, 5)
    with tmpfs(tmp_path / "disk", "256k") as disk:
        args = ("backend=echo", "backend.dimensions=256", "job=embed", f"job.input={src}", f"job.store={disk / 's.db'}")
        stopped = run(compose_cfg(*args, "job.batch_size=50", run_dir=tmp_path / "run"))
        assert (stopped.exit_code, stopped.status) == (ExitCode.STOPPED, "stopped")
        assert stopped.message.startswith(f"disk full writing the embedding store {disk / 's.db'}")
        assert "resume with: python -m adam" in stopped.message and "job.resume=" in stopped.message
        manifest = _manifest(stopped.run_dir)
        assert (manifest["status"], manifest["exit_code"]) == ("stopped", 4)
        assert 0 < stopped.stats.ok < 600  # what was committed stays
        grow(disk, "4m")
        resumed = run(compose_cfg(*args, f"job.resume={stopped.run_dir}", run_dir=tmp_path / "unused"))
    assert resumed.exit_code == ExitCode.OK
    ids = [r["id"] for r in read_jsonl(stopped.run_dir / "results.jsonl")]
    assert sorted(ids) == sorted(f"d{i}" for i in range(600))  # each once


@pytest.mark.parametrize("job", ["generate", "embed"])  # results.jsonl fills it; or embeddings.parquet beside it
def test_a_full_disk_under_the_run_dir_ends_stopped_in_the_manifest(tmp_path: Path, job: str) -> None:
    src = _docs(tmp_path, 400, 5) if job == "embed" else tmp_path / "in.jsonl"
    if job == "generate":
        write_jsonl(src, [{"id": i, "prompt": f"say {i} " + "word " * 300} for i in range(400)])
    with tmpfs(tmp_path / "disk", "640k") as disk:
        args = ("backend=echo", "backend.dimensions=512", f"job={job}", f"job.input={src}", "job.batch_size=16")
        stopped = run(compose_cfg(*args, run_dir=disk / "run"))
        assert (stopped.exit_code, stopped.status) == (ExitCode.STOPPED, "stopped")
        manifest = _manifest(stopped.run_dir)  # the outcome got written on the full disk: its reserved space
        assert (manifest["status"], manifest["exit_code"]) == ("stopped", 4)
        assert manifest["error"].startswith("disk full writing") and "job.resume=" in manifest["error"]
        assert not (stopped.run_dir / ".adam.reserve").exists()
        grow(disk, "16m")
        resumed = run(compose_cfg(*args, f"job.resume={stopped.run_dir}", run_dir=tmp_path / "unused"))
        assert resumed.exit_code == ExitCode.OK
        ids = [r["id"] for r in read_jsonl(stopped.run_dir / "results.jsonl")]
    assert sorted(ids) == sorted(f"d{i}" if job == "embed" else i for i in range(400))


def test_a_full_disk_prints_one_line_and_no_logging_tracebacks(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "prompt": "word " * 400} for i in range(400)])
    with tmpfs(tmp_path / "disk", "512k") as disk:
        done = _adam("backend=echo", f"job.input={src}", "job.progress=false", f"hydra.run.dir={disk / 'run'}")
        manifest = _manifest(disk / "run")
        log = (disk / "run" / "adam.log").read_text()
    assert done.returncode == 4, done.stderr
    assert "Traceback" not in done.stderr and "Logging error" not in done.stderr
    (line,) = [line for line in done.stderr.splitlines() if "disk full" in line or "ERROR" in line]
    assert f"disk full writing {disk / 'run'}" in line and f"job.resume={disk / 'run'}" in line
    assert manifest["status"] == "stopped" and line.split(" - ", 1)[1] == manifest["error"]
    assert manifest["error"] in log  # its space came back in time for the log's last line


# ---------------------------------------------------------------------- one line, a documented status
@pytest.mark.parametrize("fault", ["damaged_store", "read_only_run_dir", "closed_stdin"])
def test_a_damaged_store_a_read_only_run_dir_and_a_closed_stdin_each_give_one_line(tmp_path: Path, fault: str) -> None:
    docs = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": "alpha"}])
    damaged = tmp_path / "notes.db"
    damaged.write_bytes(b"this is no SQLite database, just garbage bytes " * 40)
    if fault == "damaged_store":
        done = _adam(
            "backend=echo", "job=embed", f"job.input={docs}", f"job.store={damaged}", f"hydra.run.dir={tmp_path}/r"
        )
        said = f"the embedding store {damaged} is damaged (file is not a database): restore it from a backup"
        assert damaged.read_bytes().startswith(b"this is no SQLite")  # left as it was, for its owner to look at
    elif fault == "read_only_run_dir":
        with tmpfs(tmp_path / "ro", "64k", read_only=True) as ro:
            done = _adam("backend=echo", f"job.input={docs}", f"hydra.run.dir={ro / 'run'}")
        said = f"cannot write {ro / 'run'}/.hydra: Read-only file system; set hydra.run.dir="
    else:
        done = _adam("backend=echo", "job.input=-", f"hydra.run.dir={tmp_path}/r", close_stdin=True)
        said = "standard input is closed: pipe the records in"
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert said in line
