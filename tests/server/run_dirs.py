"""Run dirs for the web page's tests: real echo runs, a real sweep report, and a large results file written directly."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import compose_cfg, write_jsonl

from adam.run.runner import run
from adam.run.sweep import build_report

HOSTILE = '<script>window.__pwned = "script"</script><img src=x onerror="window.__pwned = \'img\'">'


def echo_run(run_dir: Path, prompts: list[dict[str, str]], *overrides: str) -> Path:
    """A generate run with the echo backend (each answer is its prompt) into ``run_dir``."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    source = write_jsonl(run_dir.parent / f"{run_dir.name}.input.jsonl", prompts)
    run(compose_cfg("backend=echo", "size=demo", f"job.input={source}", *overrides, run_dir=run_dir))
    source.unlink()
    return run_dir


def sweep(sweep_dir: Path, jobs: list[list[str]], prompts: list[dict[str, str]]) -> Path:
    """A multirun's sweep dir as Hydra leaves it: numbered job dirs with their overrides, then the report."""
    for num, overrides in enumerate(jobs):
        job_dir = sweep_dir / str(num)
        (job_dir / ".hydra").mkdir(parents=True)
        (job_dir / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
        echo_run(job_dir, prompts, *overrides)
    (sweep_dir / "multirun.yaml").write_text("hydra: {}\n")
    build_report(sweep_dir)
    return sweep_dir


def big_run(run_dir: Path, lines: int) -> Path:
    """A finished run whose results.jsonl has ``lines`` records, written directly (no model call per line)."""
    run_dir.mkdir(parents=True)
    with (run_dir / "results.jsonl").open("w", encoding="utf-8") as fh:
        for i in range(lines):
            fh.write(json.dumps(big_record(i), ensure_ascii=False, separators=(",", ":")) + "\n")
    manifest = {
        "status": "completed",
        "job": "generate",
        "started": "2025-01-01T00:00:00+00:00",
        "finished": "2025-01-01T00:10:00+00:00",
        "wall_time_s": 600.0,
        "backend": {"backend": "echo", "model": "echo/demo"},
        "counts": {"ok": lines, "failed": 0, "records_per_s": lines / 600},
    }
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    return run_dir


def big_record(i: int) -> dict[str, object]:
    """Line ``i`` of big_run's results: every 1000th answer speaks of a "needle"."""
    text = f"answer number {i}" + (" with a Needle in it" if i % 1000 == 7 else "")
    return {"id": f"rec-{i:06d}", "text": text, "finish_reason": "stop", "usage": {"total_tokens": 3}}
