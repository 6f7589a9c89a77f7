"""What every benchmark shares: timing with warm-up, peak memory, the machine description, result rows."""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Timing:
    """Seconds per repetition of one contender, and how much work one repetition is."""

    name: str
    seconds: list[float]
    work: float  # items per repetition (texts, tokens, records, requests)
    unit: str
    peak_mb: float | None = None
    note: str = ""

    @property
    def median(self) -> float:
        """Median seconds per repetition."""
        return statistics.median(self.seconds)

    @property
    def rate(self) -> float:
        """Items per second at the median."""
        return self.work / self.median

    @property
    def spread(self) -> float:
        """(max - min) / median, as a fraction."""
        return (max(self.seconds) - min(self.seconds)) / self.median if len(self.seconds) > 1 else 0.0


@dataclass
class Section:
    """One benchmark's result: contenders, ratios against targets, and free-form lines."""

    title: str
    command: str
    timings: list[Timing] = field(default_factory=list)
    checks: list[tuple[str, float, float | None]] = field(default_factory=list)  # (what, measured, target)
    lines: list[str] = field(default_factory=list)

    def ratio(self, what: str, a: str, b: str, target: float | None) -> float:
        """Record rate(a) / rate(b) against ``target``; returns it."""
        ta, tb = self.get(a), self.get(b)
        value = ta.rate / tb.rate
        self.checks.append((what, value, target))
        return value

    def get(self, name: str) -> Timing:
        """The timing named ``name``."""
        return next(t for t in self.timings if t.name == name)

    def markdown(self) -> str:
        """The section as Markdown: a contenders table, then the ratios against targets."""
        out = [f"## {self.title}", "", f"`{self.command}`", ""]
        if self.timings:
            out += [
                "| contender | median s | spread | rate | peak RSS MB | note |",
                "| --- | ---: | ---: | ---: | ---: | --- |",
            ]
            for t in self.timings:
                peak = f"{t.peak_mb:.0f}" if t.peak_mb else ""
                rate = f"{t.rate:,.1f} {t.unit}/s"
                out.append(f"| {t.name} | {t.median:.3f} | {t.spread * 100:.0f}% | {rate} | {peak} | {t.note} |")
            out.append("")
        if self.checks:
            out += ["| ratio | measured | target | |", "| --- | ---: | ---: | --- |"]
            for what, value, target in self.checks:
                verdict = "" if target is None else ("met" if value >= target else f"missed by {target / value:.2f}x")
                tgt = "" if target is None else f">= {target:g}"
                out.append(f"| {what} | {value:.2f}x | {tgt} | {verdict} |")
            out.append("")
        out += [*self.lines]
        return "\n".join(out).rstrip() + "\n"


def repeat(fn: Callable[[], Any], *, reps: int, warmup: int = 1) -> list[float]:
    """Seconds for each of ``reps`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def interleave(fns: dict[str, Callable[[], Any]], *, reps: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per repetition of each function, taking turns (a, b, c, a, b, c, ...) so that load from
    other processes on a shared machine falls on every contender alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MB.

    VmHWM starts afresh at exec, unlike ru_maxrss, which a child started by fork and exec inherits
    from its parent (so a child would report the bench process's peak as its own).
    """
    try:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(code: str, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter; it prints one JSON object last. Adds the child's peak RSS."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=full_env, cwd=ROOT, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child failed ({proc.returncode}): {proc.stderr[-2000:]}")
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def compose(overrides: Sequence[str], run_dir: Path) -> Any:
    """adam's config as the CLI composes it, writing to ``run_dir``."""
    from adam.manager import compose_config

    return compose_config([*overrides, f"hydra.run.dir={run_dir}", "job.progress=false"])


def fresh_dir(prefix: str) -> Path:
    """A new temporary directory (removed by the OS's tmp cleaning, or by the caller)."""
    return Path(tempfile.mkdtemp(prefix=f"adam-bench-{prefix}-"))


def machine() -> list[str]:
    """Markdown lines describing the machine and the library versions."""
    import torch
    import transformers

    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return [
        f"- CPU: {cpu}, {os.cpu_count()} cores visible, torch threads {torch.get_num_threads()}",
        f"- RAM: {mem_gb:.1f} GiB; no GPU",
        f"- Python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}",
    ]


def setup_env() -> None:
    """Offline; adam's own cache ($ADAM_CACHE_DIR, else ~/.cache/adam) keeps the demo GGUF converted between runs."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    import logging

    logging.getLogger("adam").setLevel(logging.WARNING)
