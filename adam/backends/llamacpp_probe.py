"""Whether llama-cpp-python runs on this CPU, asked in a child process so a crash cannot take the caller down.

A wheel built for another CPU (AVX512 code on an AVX2-only machine, or AMX instructions that a VM traps) dies
with SIGILL at its first quantized matmul. The child loads a GGUF and evaluates a few tokens; the tests and
the benchmark skip llama.cpp with its answer instead of dying with it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

_PROBE = """
import sys, llama_cpp
model = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=64, n_threads=1, verbose=False)
model.eval(model.tokenize(b"The capital of France is"))
"""

REBUILD = "rebuild it: rm .venv/.llamacpp-tried && make llamacpp (LLAMA_CMAKE_ARGS sets the build's flags)"


def llama_cpp_problem(gguf: Path, python: str = sys.executable, timeout: float = 300) -> str | None:
    """Why llama.cpp cannot run ``gguf`` here, in one line; None when it runs."""
    proc = subprocess.run(
        [python, "-c", _PROBE, str(gguf)], capture_output=True, text=True, timeout=timeout, check=False
    )
    if proc.returncode == 0:
        return None
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        return f"llama-cpp-python dies with {name} on this CPU (was it built for another one?); {REBUILD}"
    last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
    return f"llama-cpp-python cannot run {gguf.name}: {last}"
