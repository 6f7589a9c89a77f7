"""Resume after a crash, Ctrl-C, retry_errors, dry runs and max_errors: no record lost, none twice."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers import REPO, compose_cfg, read_jsonl, write_jsonl

from adam.backends.echo import _fraction
from adam.errors import ConfigError, ExitCode
from adam.run.runner import run

FAILURE_RATE = 0.05


def _rows(n: int) -> list[dict | str]:
    rows: list[dict | str] = []
    for i in range(n):
        if i % 97 == 13:
            rows.append("{broken json")  # an invalid line, reported by line number
        else:
            rows.append({"id": f"r{i}", "prompt": " ".join(f"t{i}-{j}" for j in range(1 + i % 9))})
    return rows


def _adam(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "adam", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _check_exactly_once(run_dir: Path, rows: list[dict | str]) -> None:
    """Every input line is in results or errors exactly once, with the right content."""
    results = read_jsonl(run_dir / "results.jsonl")  # a torn line would fail to parse here
    errors = read_jsonl(run_dir / "errors.jsonl")
    result_ids = [r["id"] for r in results]
    assert len(result_ids) == len(set(result_ids)), "a record has two results"
    error_lines = [e["line"] for e in errors]
    assert len(error_lines) == len(set(error_lines)), "a record has two error lines"
    by_id = {r["id"]: r for r in results}
    errors_by_line = {e["line"]: e for e in errors}
    for line, row in enumerate(rows, start=1):
        if isinstance(row, str):
            assert errors_by_line[line]["error"]["code"] == "invalid_input"
            continue
        if _fraction(row["prompt"]) < FAILURE_RATE:
            assert row["id"] not in by_id
            assert errors_by_line[line]["id"] == row["id"]
            assert errors_by_line[line]["error"]["code"] == "backend_error"
        else:
            assert line not in errors_by_line
            assert by_id[row["id"]]["text"] == row["prompt"]
    assert len(results) + len(errors) == len(rows)


def test_sigkill_at_random_moments_then_resume_gives_every_record_exactly_once(tmp_path: Path) -> None:
    rows = _rows(2000)
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    common = [
        "backend=echo",
        f"job.input={src}",
        "job.batch_size=10",
        "job.window=40",
        "job.max_tokens=100",
        "backend.delay=0.02",
        f"backend.failure_rate={FAILURE_RATE}",
    ]
    run_dir = tmp_path / "runs" / "first"
    rng = random.Random(1234)
    kills = mid_run_kills = 0
    for attempt in range(8):
        before = _size(run_dir / "results.jsonl")
        if attempt == 0:
            args = [*common, f"hydra.run.dir={run_dir}"]
        else:  # alternate naming the dir and letting resume=true find it among its siblings
            target = str(run_dir) if attempt % 2 else "true"
            args = [*common, f"job.resume={target}", f"hydra.run.dir={tmp_path / 'runs' / f'again{attempt}'}"]
        proc = _adam(*args)
        results = run_dir / "results.jsonl"
        if attempt == 0 or attempt % 2 == 0:  # wait until this process has written batches, then kill it soon after
            deadline = time.monotonic() + 60
            while _size(results) <= before and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.4))
        else:  # any moment from start-up on
            time.sleep(rng.uniform(0.0, 2.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
            mid_run_kills += _size(results) > before  # it had written batches when it died
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode in (-signal.SIGKILL, int(ExitCode.PARTIAL)), stderr[-2000:]
        if proc.returncode == int(ExitCode.PARTIAL):
            break
    else:
        proc = _adam(*common, f"job.resume={run_dir}", f"hydra.run.dir={tmp_path / 'runs' / 'last'}")
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == int(ExitCode.PARTIAL), stderr[-2000:]
    assert kills >= 4 and mid_run_kills >= 3
    _check_exactly_once(run_dir, rows)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "partial" and manifest["resumes"] >= 1
    assert manifest["totals"]["results"] + manifest["totals"]["errors"] == len(rows)


def test_sigint_stops_after_the_batch_and_prints_the_resume_command(tmp_path: Path) -> None:
    rows = [r for r in _rows(600) if isinstance(r, dict)]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    run_dir = tmp_path / "run"
    args = ["backend=echo", f"job.input={src}", "job.batch_size=5", "backend.delay=0.02", f"hydra.run.dir={run_dir}"]
    proc = _adam(*args)
    deadline = time.monotonic() + 60
    while not (run_dir / "results.jsonl").exists() or (run_dir / "results.jsonl").stat().st_size == 0:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == int(ExitCode.STOPPED), stderr[-2000:]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["exit_code"] == 4
    done = read_jsonl(run_dir / "results.jsonl")
    assert 0 < len(done) < len(rows) and len(done) % 5 == 0  # whole batches only
    assert manifest["counts"]["ok"] == len(done)
    command = re.search(r"resume with: (python -m adam .*)", stderr)
    assert command is not None, stderr[-2000:]
    assert f"job.resume={run_dir}" in command.group(1) and "backend=echo" in command.group(1)
    again = subprocess.run(
        [sys.executable, *command.group(1).split()[1:], f"hydra.run.dir={tmp_path / 'resumed'}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert again.returncode == 0, again.stderr[-2000:]
    results = read_jsonl(run_dir / "results.jsonl")
    assert sorted(r["id"] for r in results) == sorted(r["id"] for r in rows)
    assert {r["id"]: r["text"] for r in results} == {r["id"]: r["prompt"] for r in rows}


def _run(tmp_path: Path, *overrides: str, name: str = "run"):
    return run(compose_cfg("backend=echo", *overrides, run_dir=tmp_path / name))


def test_resume_refuses_a_changed_input_or_model(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "prompt": "one"}, {"id": "b", "prompt": "two"}])
    first = _run(tmp_path, f"job.input={src}")
    with pytest.raises(ConfigError, match=r"differ from that run.s: size.name: \"demo\" -> \"qwen3_small\""):
        _run(tmp_path, f"job.input={src}", "size=qwen3_small", f"job.resume={first.run_dir}", name="x")
    write_jsonl(src, [{"id": "a", "prompt": "one"}, {"id": "b", "prompt": "changed"}])
    with pytest.raises(ConfigError, match="input file changed since"):
        _run(tmp_path, f"job.input={src}", f"job.resume={first.run_dir}", name="y")
    with pytest.raises(ConfigError, match="found no run of job=generate"):
        _run(tmp_path, f"job.input={src}", "job.resume=true", name="z")
    assert json.loads((first.run_dir / "manifest.json").read_text())["status"] == "completed"  # left untouched


def test_resume_true_picks_the_newest_matching_run_and_a_finished_run_stays_as_it_is(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "prompt": f"p {i}"} for i in range(5)])
    other = write_jsonl(tmp_path / "other.jsonl", [{"id": 1, "prompt": "x"}])
    _run(tmp_path, f"job.input={other}", name="a_other_input")
    target = _run(tmp_path, f"job.input={src}", name="b_match").run_dir
    summary = _run(tmp_path, f"job.input={src}", "job.resume=true", name="c_new")
    assert summary.run_dir == target and summary.exit_code == ExitCode.OK
    assert summary.stats.ok == 0  # nothing left to do
    assert len(read_jsonl(target / "results.jsonl")) == 5
    assert not (tmp_path / "c_new" / "results.jsonl").exists()


def test_retry_errors_reruns_only_backend_failures(tmp_path: Path) -> None:
    rows = [{"id": f"p{i}", "prompt": f"prompt number {i}"} for i in range(60)] + ["not json"]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    first = _run(tmp_path, f"job.input={src}", "backend.failure_rate=0.3")
    failed = {e["id"] for e in read_jsonl(first.run_dir / "errors.jsonl") if e["error"]["code"] == "backend_error"}
    assert failed and first.exit_code == ExitCode.PARTIAL
    with pytest.raises(ConfigError, match=r"needs job\.resume"):
        _run(tmp_path, f"job.input={src}", "job.retry_errors=true", name="nope")
    again = _run(tmp_path, f"job.input={src}", f"job.resume={first.run_dir}", "job.retry_errors=true", name="again")
    assert again.run_dir == first.run_dir and again.stats.ok == len(failed)
    errors = read_jsonl(first.run_dir / "errors.jsonl")
    assert [e["error"]["code"] for e in errors] == ["invalid_input"]  # the invalid line is not retried
    results = read_jsonl(first.run_dir / "results.jsonl")
    assert sorted(r["id"] for r in results) == sorted(r["id"] for r in rows if isinstance(r, dict))
    assert again.exit_code == ExitCode.PARTIAL  # the invalid line is still an error


def test_dry_run_validates_everything_and_loads_nothing(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": 1, "prompt": "ok"}, {"id": 2, "prompt": ""}, "[1]"])
    # backend.unavailable would stop any real run: a dry run never asks the backend
    summary = _run(tmp_path, f"job.input={src}", "job.dry_run=true", "backend.unavailable=true")
    assert summary.exit_code == ExitCode.PARTIAL and summary.status == "dry_run_invalid"
    assert (summary.stats.ok, summary.stats.invalid) == (1, 2)
    assert not (summary.run_dir / "results.jsonl").exists() and not (summary.run_dir / "errors.jsonl").exists()
    manifest = json.loads((summary.run_dir / "manifest.json").read_text())
    assert manifest["counts"]["valid"] == 1 and manifest["counts"]["invalid"] == 2
    assert "line 2: " in manifest["counts"]["invalid_examples"][0]
    good = write_jsonl(tmp_path / "good.jsonl", [{"id": 1, "prompt": "ok"}])
    assert _run(tmp_path, f"job.input={good}", "job.dry_run=true", name="ok").exit_code == ExitCode.OK


@pytest.mark.parametrize(("limit", "stops"), [("10", True), ("0.5", True), ("1000", False)])
def test_max_errors_stops_a_job_fed_the_wrong_file(tmp_path: Path, limit: str, stops: bool) -> None:
    # embedding records fed to a generate job: every one lacks a prompt
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "text": f"doc {i}"} for i in range(300)])
    summary = _run(tmp_path, f"job.input={src}", f"job.max_errors={limit}", "job.window=50")
    if stops:
        assert summary.exit_code == ExitCode.STOPPED and summary.status == "stopped"
        assert "job.max_errors" in summary.message and "job.resume=" in summary.message
        assert len(read_jsonl(summary.run_dir / "errors.jsonl")) < 300
    else:  # every record failed: no record succeeded, which is not the "some failed" status
        assert (summary.exit_code, summary.status) == (ExitCode.NO_SUCCESS, "all_failed")
        assert "no record succeeded: all 300 failed, the first (line 1): missing 'prompt'" in summary.message
        assert len(read_jsonl(summary.run_dir / "errors.jsonl")) == 300


def test_generation_overflow_is_an_error_or_truncated_from_the_start(tmp_path: Path) -> None:
    long = " ".join(f"w{i}" for i in range(40))  # echo counts words: 40 + "user:" + "assistant:"
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": "long", "prompt": long}, {"id": "short", "prompt": "hi"}])
    limits = ["size.context_length=30", "job.max_tokens=10"]  # 20 prompt tokens fit
    summary = _run(tmp_path, f"job.input={src}", *limits)
    assert summary.exit_code == ExitCode.PARTIAL
    (error,) = read_jsonl(summary.run_dir / "errors.jsonl")
    assert error["id"] == "long" and error["error"]["code"] == "context_overflow"
    assert "42 tokens, more than the 20" in error["error"]["message"]
    assert summary.stats.invalid == 1 and summary.stats.backend_errors == 0
    cut = _run(tmp_path, f"job.input={src}", *limits, "job.overflow=truncate", name="cut")
    assert cut.exit_code == ExitCode.OK
    by_id = {r["id"]: r["text"] for r in read_jsonl(cut.run_dir / "results.jsonl")}
    # 18 words kept from the end (+ 2 of template = 20); echo answers with the first max_tokens=10 of them
    assert by_id["long"] == " ".join(f"w{i}" for i in range(22, 32))
    assert by_id["short"] == "hi"
    assert json.loads((cut.run_dir / "manifest.json").read_text())["counts"]["truncated"] == 1


def test_embedding_overflow_policy(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": "x " * 50}, {"id": "b", "text": "short"}])
    summary = _run(tmp_path, "job=embed", f"job.input={src}", "size.max_seq_length=10", "job.overflow=error")
    (error,) = read_jsonl(summary.run_dir / "errors.jsonl")
    assert error["id"] == "a" and error["error"]["code"] == "context_overflow"
    default = _run(tmp_path, "job=embed", f"job.input={src}", "size.max_seq_length=10", name="default")
    assert default.exit_code == ExitCode.OK and len(read_jsonl(default.run_dir / "results.jsonl")) == 2


def test_an_output_dir_that_cannot_be_created_fails_with_status_1_before_any_model_loads(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    done = subprocess.run(
        [sys.executable, "-m", "adam", "size=qwen3_xl", f"hydra.run.dir={blocker / 'run'}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 1
    assert "Not a directory" in done.stderr or "cannot write to the output dir" in done.stderr


def test_a_run_stopped_by_an_unavailable_backend_is_resumable(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": i, "prompt": f"p {i}"} for i in range(4)])
    stopped = _run(tmp_path, f"job.input={src}", "backend.unavailable=true")
    assert stopped.exit_code == ExitCode.STOPPED and f"job.resume={stopped.run_dir}" in stopped.message
    again = _run(tmp_path, f"job.input={src}", f"job.resume={stopped.run_dir}", name="again")
    assert again.exit_code == ExitCode.OK and again.run_dir == stopped.run_dir
    assert sorted(r["id"] for r in read_jsonl(stopped.run_dir / "results.jsonl")) == [0, 1, 2, 3]
    manifest = json.loads((stopped.run_dir / "manifest.json").read_text())
    assert manifest["resumes"] == 1 and manifest["resumed_from_status"] == "stopped"


def test_a_stopped_embed_run_writes_no_parquet_and_its_resume_writes_every_vector_once(tmp_path: Path) -> None:
    rows: list[dict | str] = [{"id": f"d{i}", "text": f"document number {i}"} for i in range(120)]
    for i in range(3, 120, 7):
        rows[i] = {"id": f"d{i}", "text": ""}  # invalid: nothing to embed
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    stopped = _run(tmp_path, "job=embed", f"job.input={src}", "job.window=30", "job.batch_size=8", "job.max_errors=6")
    assert stopped.exit_code == ExitCode.STOPPED
    assert 0 < len(read_jsonl(stopped.run_dir / "results.jsonl")) < 120 - 17
    assert sorted(p.name for p in stopped.run_dir.iterdir() if "parquet" in p.name) == []  # no half file, no temp

    done = _run(tmp_path, "job=embed", f"job.input={src}", f"job.resume={stopped.run_dir}", name="again")
    assert done.run_dir == stopped.run_dir and done.exit_code == ExitCode.PARTIAL
    results = {r["id"]: r["embedding"] for r in read_jsonl(done.run_dir / "results.jsonl")}
    table = pq.read_table(done.run_dir / "embeddings.parquet").to_pylist()
    assert len(table) == len(results) == 120 - 17  # every valid record once, rebuilt from results.jsonl
    for row in table:
        assert np.array_equal(np.float32(row["vector"]), np.float32(results[row["id"]]))
