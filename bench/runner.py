"""Runner overhead: backend=echo (no model) over many records, end to end: read, validate, batch, write."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

from bench.common import Section, Timing, compose, fresh_dir, repeat, run_child


def write_prompts(n: int, path: Path, seed: int = 0) -> Path:
    """``n`` generation records, a fifth with messages and per-record parameters."""
    rng = random.Random(seed)
    with open(path, "w") as fh:
        for i in range(n):
            words = " ".join(f"w{rng.randint(0, 999)}" for _ in range(rng.randint(3, 30)))
            if i % 5 == 0:
                rec = {"id": f"r{i}", "messages": [{"role": "user", "content": words}], "max_tokens": 16}
            else:
                rec = {"id": f"r{i}", "prompt": words, "metadata": {"n": i}}
            fh.write(json.dumps(rec) + "\n")
    return path


_CHILD = """
import json, sys, time
from pathlib import Path
from bench.common import compose, peak_rss_mb, setup_env
setup_env()
from adam.run.runner import run
n, source, run_dir, extra = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
start = time.perf_counter()
summary = run(compose(["backend=echo", f"job.input={source}", *extra], Path(run_dir)))
assert summary.stats.ok == n, summary
print(json.dumps({"seconds": time.perf_counter() - start,
                  "peak_mb": peak_rss_mb()}))
"""


def run(*, quick: bool = False) -> Section:
    """Records/s of a whole echo job, in-process (several reps) and in a fresh process (peak memory)."""
    from adam.run.runner import run as adam_run

    n = 50_000 if quick else 200_000
    reps = 2
    work = fresh_dir("runner")
    source = write_prompts(n, work / "prompts.jsonl")
    sec = Section(
        f"Runner overhead: backend=echo over {n:,} records (read, validate, batch, generate, write)",
        f"python -m bench runner{' --quick' if quick else ''}  (adam: run(cfg) for "
        f"`python -m adam backend=echo job.input=prompts.jsonl`)",
    )
    counter = iter(range(10**6))

    def job(*extra: str) -> None:
        run_dir = work / f"run{next(counter)}"
        summary = adam_run(compose(["backend=echo", f"job.input={source}", *extra], run_dir))
        assert summary.stats.ok == n, summary
        shutil.rmtree(run_dir)

    for label, extra in (("default job settings", ()), ("job.batch_size=256", ("job.batch_size=256",))):
        times = repeat(lambda extra=extra: job(*extra), reps=reps)
        child = run_child(_CHILD, str(n), str(source), str(work / f"child{len(sec.timings)}"), *extra)
        note = f"fresh process: {child['seconds']:.1f} s"
        sec.timings.append(Timing(f"adam echo, {label}", times, n, "records", child["peak_mb"], note))
    sec.checks.append(("records/s (default settings) / 20,000", sec.timings[0].rate / 20_000, 1.0))
    sec.checks.append(("records/s (batch 256) / 20,000", sec.timings[1].rate / 20_000, 1.0))
    sec.lines.append(
        "Every write() of a batch is flushed and fsynced (results survive a crash), so the batch size sets "
        "how many fsyncs a run does; the peak RSS column is a fresh `run(cfg)` process."
    )
    shutil.rmtree(work, ignore_errors=True)
    return sec
