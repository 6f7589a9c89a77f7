"""Helpers for the server tests: engines from composed configs, and adam's server on a free loopback port."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from helpers import compose_cfg

from adam.engine import Engine
from adam.run.runner import build_backend
from adam.server.app import create_app
from adam.server.listen import BackgroundServer
from adam.server.read_timeouts import ReadTimeouts
from adam.server.state import ServeOptions

CHAT_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # size=demo under the OpenAI API
OLLAMA_NAME = "smollm2:135m"  # and under Ollama's


def engine_for(*overrides: str) -> Engine:
    """An engine as job=serve builds it, for these overrides (backend=echo size=demo unless they say otherwise)."""
    cfg = compose_cfg("backend=echo", "size=demo", "job=serve", *overrides)
    return Engine.from_config(build_backend(cfg), cfg.job, cfg.domain)


@contextmanager
def serving(*engines: Engine, timeouts: ReadTimeouts | None = None, **options: Any) -> Iterator[BackgroundServer]:
    """adam's server over ``engines`` on 127.0.0.1 and a free port, stopped (gracefully) on exit."""
    app = create_app(list(engines), ServeOptions.of(**options))
    try:
        with BackgroundServer(app, timeouts=timeouts) as server:
            yield server
    finally:
        app.state.adam.close()  # its shutdown let the state dir go; not if it never started
    assert not server.thread.is_alive(), "the server did not shut down"


def metric(url: str, name: str, **labels: str) -> float:
    """One sample from /metrics (0 when absent)."""
    text = httpx.get(f"{url}/metrics").text
    for line in text.splitlines():
        match = re.match(rf"^{re.escape(name)}(\{{.*\}})? (\S+)$", line)
        if match and all(f'{k}="{v}"' in (match.group(1) or "") for k, v in labels.items()):
            return float(match.group(2))
    return 0.0
