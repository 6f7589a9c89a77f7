"""Sharding: 2 shards on the joblib launcher (1 thread each) plus job=merge, against 1 process with 2 threads.

Both contenders are the CLI a user runs, timed from start to exit, so they include what sharding
costs: a second interpreter, a second copy of the model, the launcher, and the merge. Each run's
manifest also gives its in-job time (``wall_time_s``: model load and records); for the shards, the
slower shard's. The sweep report is left out (``~hydra.callbacks.sweep_report``): its chart is not part of
the job. Contenders take turns, so load from other processes falls on both alike.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, Section, Timing, fresh_dir, interleave
from bench.embed import make_texts, write_input


def _cli(*args: str) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "adam", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"python -m adam {' '.join(args)} exited {proc.returncode}: {proc.stderr[-2000:]}")


def _manifest(run_dir: Path) -> dict[str, Any]:
    return dict(json.loads((run_dir / "manifest.json").read_text()))


class Contenders:
    """The two ways to run one job, each leaving its wall time and its records' time."""

    def __init__(self, work: Path, job: list[str]) -> None:
        self.work = work
        self.job = [*job, "job.progress=false"]
        self.runs = 0
        self.records_s: dict[str, list[float]] = {"one": [], "sharded": []}

    def _dir(self, name: str) -> Path:
        self.runs += 1
        return self.work / f"{name}-{self.runs}"

    def one_process(self) -> None:
        """python -m adam hardware.threads=2."""
        run_dir = self._dir("one")
        _cli(*self.job, "hardware.threads=2", f"hydra.run.dir={run_dir}")
        self.records_s["one"].append(float(_manifest(run_dir)["wall_time_s"]))
        shutil.rmtree(run_dir)

    def sharded(self) -> None:
        """python -m adam -m hydra/launcher=adam_joblib job.shard=range(0,2) ..., then job=merge."""
        sweep, merged = self._dir("sweep"), self._dir("merged")
        shards = ["-m", "hydra/launcher=adam_joblib", "hydra.launcher.n_jobs=2", "job.shard=range(0,2)"]
        _cli(*shards, "job.num_shards=2", *self.job, f"hydra.sweep.dir={sweep}", "~hydra.callbacks.sweep_report")
        _cli("job=merge", f"job.runs={sweep}", f"hydra.run.dir={merged}")
        merge = _manifest(merged)
        self.records_s["sharded"].append(float(merge["merge"]["slowest_shard"]["wall_time_s"]))
        threads = {_manifest(sweep / str(k))["config"]["hardware"]["threads"] for k in (0, 1)}
        assert threads == {1}, f"the shards ran with hardware.threads={threads}, not 1 (2 cores / n_jobs=2)"
        shutil.rmtree(sweep)
        shutil.rmtree(merged)


def _compare(sec: Section, label: str, contenders: Contenders, work: int, unit: str, reps: int) -> None:
    times = interleave({"one": contenders.one_process, "sharded": contenders.sharded}, reps=reps, warmup=1)
    one = f"{label}: 1 process, hardware.threads=2"
    two = f"{label}: 2 shards on adam_joblib (1 thread each) + job=merge"
    records = {k: sorted(v[-reps:])[len(v[-reps:]) // 2] for k, v in contenders.records_s.items()}  # median
    sec.timings.append(Timing(one, times["one"], work, unit, note=f"in-job {records['one']:.2f} s"))
    note = f"slower shard in-job {records['sharded']:.2f} s"
    sec.timings.append(Timing(two, times["sharded"], work, unit, note=note))
    sec.ratio(f"{label}: 2 shards / 1 process, start to exit", two, one, None)
    in_job = records["one"] / records["sharded"]
    sec.checks.append((f"{label}: 2 shards / 1 process, in-job time (manifest wall_time_s)", in_job, None))


def run(*, quick: bool = False) -> Section:
    """Echo over many records, then MiniLM embedding, each way."""
    n_echo = 20_000 if quick else 200_000
    n_embed = 400 if quick else 2_000
    reps = 1 if quick else 3
    work = fresh_dir("shard")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    sec = Section(
        f"Sharding: 2 shards on {cores} cores vs 1 process with 2 threads",
        f"python -m bench shard{' --quick' if quick else ''}  (`python -m adam -m hydra/launcher=adam_joblib "
        "job.shard='range(0,2)' job.num_shards=2 ...` then `python -m adam job=merge job.runs=<sweep dir>`, against "
        "`python -m adam hardware.threads=2 ...`)",
    )
    prompts = work / "prompts.jsonl"
    with open(prompts, "w") as fh:
        for i in range(n_echo):
            fh.write(json.dumps({"id": f"p{i}", "prompt": f"question number {i} about " + "things " * (i % 9)}) + "\n")
    echo = Contenders(work, ["backend=echo", f"job.input={prompts}", "job.batch_size=64"])
    started = time.perf_counter()
    _compare(sec, "echo", echo, n_echo, "rec", reps)
    texts = write_input(make_texts(n_embed), work / "texts.jsonl")
    minilm = Contenders(work, ["job=embed", "size=minilm", "hardware=cpu", f"job.input={texts}", "job.batch_size=32"])
    _compare(sec, "MiniLM embed", minilm, n_embed, "texts", reps)
    sec.lines += [
        f"- echo: {n_echo:,} records; MiniLM: {n_embed:,} texts (bench.embed.make_texts), batch 32. "
        f"Ratios above 1 favour the shards. {reps} timed repetitions after a warm-up, taken in turns; "
        f"{time.perf_counter() - started:.0f} s in all.",
        "- Start to exit includes both interpreters' start, the model load in each shard, the joblib launcher and "
        "the merge (a separate `python -m adam job=merge`). In-job time compares the manifests' `wall_time_s` (model "
        "load and records; for the shards, the slower shard's).",
    ]
    shutil.rmtree(work, ignore_errors=True)
    return sec
