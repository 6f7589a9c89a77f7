"""Sweeps on Hydra's parallel launchers, end to end: sharded runs on joblib plus a merge equal one process, a killed
shard is resumed before the merge, statuses come from the manifests, and submitit_local writes the sweep report."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import REPO, compose_cfg, installed, ray_python, read_jsonl, write_jsonl

from adam.errors import ConfigError, ExitCode
from adam.run.runner import run

needs_joblib = pytest.mark.skipif(
    not installed("hydra_plugins.hydra_joblib_launcher"), reason="pip install -e '.[joblib]'"
)
needs_submitit = pytest.mark.skipif(
    not installed("hydra_plugins.hydra_submitit_launcher"), reason="pip install -e '.[slurm]'"
)


NO_REPORT = "~hydra.callbacks.sweep_report"  # the report's chart costs seconds; test_sweep and the last test check it


def _adam(*args: str, python: str = sys.executable, **popen: object) -> subprocess.Popen[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [python, "-m", "adam", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,  # type: ignore[arg-type]
    )


def _finish(proc: subprocess.Popen[str]) -> int:
    _, err = proc.communicate(timeout=300)
    assert proc.returncode is not None, err
    return proc.returncode


def _merge(runs: Path, run_dir: Path):
    return run(compose_cfg("job=merge", f"job.runs={runs}", run_dir=run_dir))


def _single_and_four_shards(tmp_path: Path, common: list[str]) -> tuple[Any, Any, Path]:
    """The job in one process, and as 4 shards on the joblib launcher merged: (single, merged, sweep dir)."""
    single = run(compose_cfg(*common, run_dir=tmp_path / "single"))
    sweep = tmp_path / "sweep"
    shards = ["-m", "hydra/launcher=adam_joblib", "job.shard=range(0,4)", "job.num_shards=4", NO_REPORT]
    assert _finish(_adam(*shards, *common, f"hydra.sweep.dir={sweep}")) == 0
    return single, _merge(sweep, tmp_path / "merged"), sweep


def _texts(run_dir: Path) -> dict[str, str]:
    return {row["id"]: row["text"] for row in read_jsonl(run_dir / "results.jsonl")}


@needs_joblib
def test_four_shards_on_joblib_merged_equal_one_process(tmp_path: Path, tiny_qwen3_dir: Path) -> None:
    prompts = [{"id": f"p{i}", "prompt": f"Tell me about item {i}." + " More." * (i % 4)} for i in range(12)]
    src = write_jsonl(tmp_path / "prompts.jsonl", prompts)
    # greedy, one record per batch, one thread: the same tokens however the records are split
    common = ["size=local", f"size.path={tiny_qwen3_dir}", "hardware=cpu", "hardware.threads=1", "job.max_tokens=4"]
    common += ["job.temperature=0", "job.batch_size=1", f"job.input={src}", "job.progress=false"]
    single, merged, _ = _single_and_four_shards(tmp_path, common)
    assert (merged.status, merged.exit_code, merged.stats.ok) == ("completed", ExitCode.OK, 12)
    ids = [row["id"] for row in read_jsonl(merged.run_dir / "results.jsonl")]
    assert sorted(ids) == sorted(p["id"] for p in prompts)  # every id exactly once
    assert _texts(merged.run_dir) == _texts(single.run_dir)


@needs_joblib
@pytest.mark.slow  # four joblib workers each load MiniLM
def test_four_minilm_shards_on_joblib_merged_give_one_process_vectors(tmp_path: Path) -> None:
    import numpy as np
    import pyarrow.parquet as pq

    docs = [{"id": f"d{i}", "text": f"Document {i} is about " + "rivers and hills " * (i % 5)} for i in range(16)]
    src = write_jsonl(tmp_path / "docs.jsonl", docs)
    common = ["job=embed", "size=minilm", "hardware=cpu", "hardware.threads=1", f"job.input={src}"]
    common += ["job.progress=false"]
    single, merged, sweep = _single_and_four_shards(tmp_path, common)
    assert (merged.status, merged.exit_code, merged.stats.ok) == ("completed", ExitCode.OK, 16)
    got, want = (pq.read_table(d / "embeddings.parquet").to_pydict() for d in (merged.run_dir, single.run_dir))
    assert sorted(got["id"]) == sorted(want["id"]) == sorted(d["id"] for d in docs)  # every id exactly once
    vectors = dict(zip(want["id"], want["vector"], strict=True))
    # shards batch other neighbours together (padding differs), so equal up to float32 rounding
    assert all(np.allclose(v, vectors[i], atol=1e-5) for i, v in zip(got["id"], got["vector"], strict=True))
    assert len({json.loads((sweep / str(k) / "manifest.json").read_text())["dimensions"] for k in range(4)}) == 1


@needs_joblib
def test_a_killed_shard_is_resumed_before_the_merge(tmp_path: Path) -> None:
    rows: list[dict | str] = [{"id": f"r{i}", "prompt": f"say {i} " + "word " * (i % 7)} for i in range(60)]
    rows[9] = "{broken json"  # one invalid line: a partial run, exit 3
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    whole = run(compose_cfg("backend=echo", f"job.input={src}", "job.progress=false", run_dir=tmp_path / "whole"))
    sweep = tmp_path / "sweep"
    args = ["-m", "hydra/launcher=adam_joblib", "backend=echo", "job.batch_size=2", "job.shard=range(0,4)"]
    args += ["job.num_shards=4", f"job.input={src}", f"hydra.sweep.dir={sweep}", "job.progress=false", NO_REPORT]
    proc = _adam(*args, "backend.delay=0.05", start_new_session=True)  # 2 workers: shards 2 and 3 start last
    manifests = [sweep / str(k) / "manifest.json" for k in range(4)]
    deadline = time.monotonic() + 120
    started = sweep / "3" / "results.jsonl"  # shard 3's first batch is in: kill it there
    while not (all(m.exists() for m in manifests) and started.exists() and started.stat().st_size > 0):
        assert proc.poll() is None and time.monotonic() < deadline, "the sweep ended before it could be killed"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher and its workers, mid-batch
    proc.communicate()
    docs = [json.loads(m.read_text()) for m in manifests]
    assert docs[3]["status"] == "running" and docs[0]["status"] == "completed"
    assert {d["config"]["hardware"]["threads"] for d in docs} == {1}  # 2 cores / n_jobs=2
    with pytest.raises(ConfigError, match="was killed while running: resume it first"):
        _merge(sweep, tmp_path / "refused")

    # The same sweep again with job.resume=true: each job finds its own shard's run dir and finishes it.
    # Exit 3 (the invalid line) is read from the manifests: the jobs ran in joblib's worker processes.
    assert _finish(_adam(*args, "job.resume=true")) == ExitCode.PARTIAL
    merged = _merge(sweep, tmp_path / "merged")
    assert (merged.status, merged.exit_code) == ("partial", ExitCode.PARTIAL)
    ids = [row["id"] for row in read_jsonl(merged.run_dir / "results.jsonl")]
    assert len(ids) == len(set(ids)) == 59
    assert _texts(merged.run_dir) == _texts(whole.run_dir)
    assert [e["line"] for e in read_jsonl(merged.run_dir / "errors.jsonl")] == [10]
    assert max(json.loads(m.read_text()).get("resumes", 0) for m in manifests) == 1


@needs_submitit
def test_a_two_size_sweep_on_submitit_local_writes_the_report(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": f"r{i}", "prompt": f"p {i}"} for i in range(6)])
    args = ["-m", "hydra/launcher=submitit_local", "hydra.launcher.cpus_per_task=1", "backend=echo"]
    args += ["size=qwen3_small,qwen3_medium", f"job.input={src}", f"hydra.sweep.dir={sweep}", "job.progress=false"]
    assert _finish(_adam(*args)) == 0
    with (sweep / "report.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["model"], r["status"], r["records_ok"]) for r in rows] == [
        ("echo/qwen3_small", "completed", "6"),
        ("echo/qwen3_medium", "completed", "6"),
    ]
    assert (sweep / "report.png").stat().st_size > 0 and (sweep / "report.md").exists()
    docs = [json.loads((sweep / str(k) / "manifest.json").read_text()) for k in (0, 1)]
    assert {doc["config"]["hardware"]["threads"] for doc in docs} == {1}  # hydra.launcher.cpus_per_task


def test_a_three_job_sweep_on_a_local_ray_cluster(tmp_path: Path) -> None:
    """One local cluster (about 8 s to start) with 2 CPUs; the failed job's status reaches the exit status."""
    python = ray_python()
    if python is None:
        pytest.skip("no Ray launcher: `make ray` (.venv-ray), or pip install -e '.[ray]' in a venv of its own")
    sweep = tmp_path / "sweep"
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": f"r{i}", "prompt": f"p {i}"} for i in range(6)])
    args = ["-m", "hydra/launcher=adam_ray", "hydra.launcher.ray.init.num_cpus=2", "backend=echo"]
    args += ["size=qwen3_small,qwen3_medium,local", f"job.input={src}", f"hydra.sweep.dir={sweep}"]
    args += ["job.progress=false"]
    assert _finish(_adam(*args, python=python)) == ExitCode.CONFIG  # size=local names no model: failed, in Ray
    with (sweep / "report.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["status"], r["records_ok"]) for r in rows] == [("completed", "6"), ("completed", "6"), ("failed", "")]
    assert "names no model" in rows[2]["error"]
    docs = [json.loads((sweep / str(k) / "manifest.json").read_text()) for k in (0, 1)]
    assert {doc["config"]["hardware"]["threads"] for doc in docs} == {1}  # hydra.launcher.ray.remote.num_cpus
