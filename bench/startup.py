"""Start-up: `python -m adam --help` and `python -m adam --cfg job` in fresh processes, and what they import."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import ROOT, Section, Timing

# Runs adam's entry point as `python -m adam` does, then reports which heavy modules got imported.
_PROBE = """
import atexit, json, os, runpy, sys
def report():
    heavy = sorted(m for m in ("torch", "transformers", "sentence_transformers", "pyarrow") if m in sys.modules)
    with open("/proc/self/status") as fh:
        peak = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) / 1024
    with open(os.environ["ADAM_BENCH_PROBE"], "w") as out:
        json.dump({"heavy": heavy, "peak_mb": peak}, out)
atexit.register(report)
sys.argv = ["adam", *sys.argv[1:]]
runpy.run_module("adam", run_name="__main__", alter_sys=True)
"""


def _probe(args: list[str]) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "probe.json"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "ADAM_BENCH_PROBE": str(report)}
        cmd = [sys.executable, "-c", _PROBE, *args]
        subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, check=False)
        got: dict[str, object] = json.loads(report.read_text())
    return got


TARGET_S = 1.0  # issue 30: --help under 1 s (it loads the config once, as --cfg job does)


def run(*, quick: bool = False) -> Section:
    """Median wall time of each command over several fresh processes, and the heavy modules it imported."""
    reps = 3 if quick else 7
    sec = Section("Start-up (fresh process each time)", "python -m bench startup")
    for args in (["--help"], ["--cfg", "job"]):
        cmd = [sys.executable, "-m", "adam", *args]
        subprocess.run(cmd, cwd=ROOT, capture_output=True, check=True)  # warm the file cache
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            subprocess.run(cmd, cwd=ROOT, capture_output=True, check=True)
            times.append(time.perf_counter() - start)
        probe = _probe(args)
        heavy = probe.get("heavy") or []
        note = f"imports {', '.join(heavy)}" if heavy else "imports neither torch nor transformers"  # type: ignore[arg-type]
        sec.timings.append(Timing(f"python -m adam {' '.join(args)}", times, 1, "runs", probe.get("peak_mb"), note))  # type: ignore[arg-type]
        med = statistics.median(times)
        sec.checks.append((f"{TARGET_S:g} s / `{' '.join(args)}` median ({med:.2f} s)", TARGET_S / med, 1.0))
    return sec
