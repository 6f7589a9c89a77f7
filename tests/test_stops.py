"""Ctrl-C and SIGTERM with no batch in flight: the run ends at once (or when a model load returns), runs no batch,
exits 4 with an `interrupted` manifest, and says how to resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from helpers import REPO, compose_cfg, read_jsonl, write_jsonl

from adam.backends.echo import EchoBackend
from adam.errors import ExitCode
from adam.run.runner import run

STOP_WITHIN_S = 2.0


class LoadingBackend(EchoBackend):
    """An echo backend whose model load is under way when a Ctrl-C comes."""

    loads_in_process = True
    loads = 0

    def load(self) -> None:
        type(self).loads += 1
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.3)  # the load goes on after the signal, as a real one would


def test_a_stop_during_the_model_load_runs_no_batch(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": f"r{i}", "prompt": f"p {i}"} for i in range(40)])
    cfg = compose_cfg(
        "backend=echo", f"backend._target_={__name__}.LoadingBackend", f"job.input={src}", run_dir=tmp_path / "run"
    )
    LoadingBackend.loads = 0
    summary = run(cfg)
    assert LoadingBackend.loads == 1
    assert (summary.status, summary.exit_code) == ("interrupted", ExitCode.STOPPED)
    assert summary.message.startswith("stopped by SIGINT before its first batch; what finished is in")
    assert f"job.resume={summary.run_dir}" in summary.message
    assert summary.stats.ok == 0 and read_jsonl(summary.run_dir / "results.jsonl") == []
    manifest = json.loads((summary.run_dir / "manifest.json").read_text())
    assert (manifest["status"], manifest["exit_code"], manifest["counts"]["ok"]) == ("interrupted", 4, 0)


def _adam(*args: str, stdin: int | None = None, stderr: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "adam", *args]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdin=stdin, stdout=subprocess.DEVNULL, stderr=stderr.open("wb"))


def _wait_for_manifest(proc: subprocess.Popen[bytes], run_dir: Path, key: str) -> dict:
    """The manifest once it holds ``key`` (written before the run reads its first record)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            doc = json.loads((run_dir / "manifest.json").read_text())
        except (OSError, ValueError):
            doc = {}
        if key in doc:
            return doc
        time.sleep(0.01)
    raise AssertionError(f"no manifest with {key!r} (exit status {proc.poll()})")


def _stop(proc: subprocess.Popen[bytes], sig: signal.Signals) -> float:
    """Send ``sig`` and wait for the process: the seconds it took to exit."""
    sent = time.monotonic()
    proc.send_signal(sig)
    try:
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return time.monotonic() - sent


def test_ctrl_c_while_the_input_is_read_ends_the_run_at_once(tmp_path: Path) -> None:
    rows = [{"id": f"r{i}", "prompt": "word " * 50} for i in range(20_000)]  # seconds to read, all in one window
    src = write_jsonl(tmp_path / "big.jsonl", rows)
    run_dir, log = tmp_path / "run", tmp_path / "stderr.txt"
    proc = _adam("backend=echo", f"job.input={src}", "job.window=50000", f"hydra.run.dir={run_dir}", stderr=log)
    _wait_for_manifest(proc, run_dir, "input")  # the input is hashed and recorded: the run can be resumed
    took = _stop(proc, signal.SIGINT)
    stderr = log.read_text()
    assert proc.returncode == ExitCode.STOPPED, stderr[-2000:]
    assert took < STOP_WITHIN_S, f"{took:.1f} s"
    assert read_jsonl(run_dir / "results.jsonl") == [] and read_jsonl(run_dir / "errors.jsonl") == []
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert (manifest["status"], manifest["exit_code"], manifest["counts"]["ok"]) == ("interrupted", 4, 0)
    assert manifest["error"].startswith("stopped by SIGINT before its first batch")
    assert "stopping after the batch in flight" not in stderr and "Traceback" not in stderr
    assert f"resume with: python -m adam backend=echo job.input={src} job.window=50000 job.resume={run_dir}" in stderr


def test_sigterm_while_waiting_on_a_silent_stdin_stops_within_two_seconds(tmp_path: Path) -> None:
    run_dir, log = tmp_path / "run", tmp_path / "stderr.txt"
    proc = _adam("backend=echo", "job.input=-", f"hydra.run.dir={run_dir}", stdin=subprocess.PIPE, stderr=log)
    try:
        _wait_for_manifest(proc, run_dir, "backend")  # then it reads standard input, where nothing comes
        time.sleep(0.3)
        took = _stop(proc, signal.SIGTERM)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()  # only now: the writer stayed silent and open all along
    stderr = log.read_text()
    assert proc.returncode == ExitCode.STOPPED, stderr[-2000:]
    assert took < STOP_WITHIN_S, f"{took:.1f} s"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert (manifest["status"], manifest["exit_code"]) == ("interrupted", 4)
    assert "stopped by SIGTERM before its first batch" in manifest["error"]
    assert "standard input cannot be resumed" in stderr and "Traceback" not in stderr
