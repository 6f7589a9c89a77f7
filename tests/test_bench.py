"""The benchmark suite stays runnable: its CLI answers --help and every benchmark module imports (no timings here)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_bench_help_lists_every_benchmark() -> None:
    from bench.__main__ import BENCHES

    out = subprocess.run([sys.executable, "-m", "bench", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for name in BENCHES:
        assert name in out.stdout


@pytest.mark.parametrize(
    "name",
    [
        "common",
        "embed",
        "generate",
        "llamacpp",
        "runner",
        "ollama",
        "serve",
        "shard",
        "startup",
        "weights",
        "prefix",
        "scheduler",
        "structured",
        "onnx",
    ],
)
def test_bench_module_imports(name: str) -> None:
    module = importlib.import_module(f"bench.{name}")
    assert module.__doc__
