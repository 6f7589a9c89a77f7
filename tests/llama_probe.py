"""Whether llama-cpp-python runs on this CPU, asked once per session (adam.backends.llamacpp_probe)."""

from __future__ import annotations

import functools


@functools.cache
def llama_cpp_problem() -> str | None:
    """Why the llama.cpp tests must skip here (None: it runs, or there is no demo model to try it on)."""
    from helpers import compose_cfg

    from adam.backends.hf_loading import _from_package
    from adam.backends.llamacpp_probe import llama_cpp_problem as probe

    source = _from_package(compose_cfg("size=demo").size, download=False)
    return None if source is None else probe(source.path)
