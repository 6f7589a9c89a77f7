"""job=serve: the same chat requests sent together (micro-batched by the server) and one at a time.

adam's server runs the demo model (SmolLM2-135M, the HF backend, hardware=cpu) on 127.0.0.1 in this
process, built as ``python -m adam job=serve size=demo hardware=cpu`` builds it. Clients post
``/v1/chat/completions`` (greedy, ``max_tokens=MAX_TOKENS``): all N at once, so the server's one
model thread runs them in shared batches, or one after another. Rates are generated tokens/s; the
one-at-a-time contender runs the first prompts only (the same length mix), as in the generation bench.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from bench.common import Section, Timing, fresh_dir, interleave
from bench.generate import make_prompts

MAX_TOKENS = 32


def _post_all(url: str, bodies: list[dict[str, Any]], *, together: bool) -> int:
    """Send ``bodies``, all at once or one by one; the generated tokens."""
    import httpx

    async def go() -> list[Any]:
        async with httpx.AsyncClient(base_url=url, timeout=600, limits=httpx.Limits(max_connections=256)) as client:
            if together:
                return list(await asyncio.gather(*(client.post("/v1/chat/completions", json=b) for b in bodies)))
            return [await client.post("/v1/chat/completions", json=b) for b in bodies]

    replies = asyncio.run(go())
    bad = [r.status_code for r in replies if r.status_code != 200]
    assert not bad, f"failed requests: {bad}"
    return sum(int(r.json()["usage"]["completion_tokens"]) for r in replies)


def _batches(url: str) -> tuple[float, float]:
    """(backend generate calls, requests in them) so far, from /metrics."""
    import httpx

    text = httpx.get(f"{url}/metrics").text
    found = {}
    for name in ("count", "sum"):
        match = re.search(rf'^adam_batch_size_{name}\{{kind="generate",[^}}]*\}} (\S+)$', text, re.M)
        found[name] = float(match.group(1)) if match else 0.0
    return found["count"], found["sum"]


def run(*, quick: bool = False) -> Section:
    """The demo model behind adam's server: N requests together against the same requests one at a time."""
    import torch

    from adam.backends.loaded_models import loaded_models
    from adam.engine import Engine
    from adam.manager import compose_config
    from adam.run.runner import build_backend
    from adam.server.app import create_app
    from adam.server.listen import BackgroundServer
    from adam.server.state import ServeOptions

    n, one_n, reps = (16, 4, 1) if quick else (32, 8, 2)
    sec = Section(
        f"Server: micro-batching on the demo model (HF, fp32, greedy, max_tokens={MAX_TOKENS}, "
        f"{torch.get_num_threads()} threads)",
        f"python -m bench serve{' --quick' if quick else ''}  (adam: `python -m adam job=serve size=demo "
        f"hardware=cpu` in-process; clients post /v1/chat/completions)",
    )
    cfg = compose_config(["job=serve", "size=demo", "hardware=cpu", f"hydra.run.dir={fresh_dir('serve')}"])
    backend = build_backend(cfg)
    backend.load()
    engine = Engine.from_config(backend, cfg.job, cfg.domain)
    model = backend.size.hf_id
    bodies = [
        {"model": model, "messages": [{"role": "user", "content": p}], "temperature": 0, "max_tokens": MAX_TOKENS}
        for p in make_prompts(n)
    ]
    counted: dict[str, int] = {}
    app = create_app([engine], ServeOptions.of(batch_wait_ms=float(cfg.job.batch_wait_ms), max_batch=n))
    with BackgroundServer(app) as server:
        _post_all(server.url, bodies[:2], together=True)  # warm-up
        calls: list[float] = []

        def together() -> None:
            before = _batches(server.url)[0]
            counted["together"] = _post_all(server.url, bodies, together=True)
            calls.append(_batches(server.url)[0] - before)

        def one_by_one() -> None:
            counted["one"] = _post_all(server.url, bodies[:one_n], together=False)

        times = interleave({"together": together, "one": one_by_one}, reps=reps, warmup=0)
    names = [f"{n} requests at once (micro-batched)", f"one request at a time (first {one_n})"]
    sec.timings += [
        Timing(names[0], times["together"], counted["together"], "tok", note=f"{counted['together']} tokens"),
        Timing(names[1], times["one"], counted["one"], "tok", note=f"{counted['one']} tokens"),
    ]
    sec.ratio("micro-batched / one at a time", names[0], names[1], 4.0)
    sec.lines.append(
        f"- The {n} requests sent at once took {', '.join(f'{c:g}' for c in calls)} backend generate calls "
        f"(one per round of requests that arrived while the model was busy); one at a time takes one call "
        f"per request. job.batch_wait_ms={cfg.job.batch_wait_ms:g}, job.max_batch={n}; HTTP and the server "
        "run in the bench process, so their overhead is inside both timings."
    )
    backend.close()
    loaded_models.clear()
    return sec
