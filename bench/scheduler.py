"""The scheduler: streams under load, a chat's first token while a Batch API batch runs, and a job's throughput.

- Streaming under load: 32 clients post a streamed ``/v1/chat/completions`` at once to adam's server on the
  demo model, on each in-process backend; every client's time to its first content chunk (TTFT) and how many
  chunks its answer came in.
- Interactive first (``backend=llamacpp``): a streamed chat's TTFT on an idle server, then while a 2,000-line
  Batch API batch runs on the same model (cancelled once measured).
- Throughput kept (``backend=llamacpp``): prompts as a job sends them (backend.generate, 32 a call) through
  the scheduler, against the decode loop called directly on the caller's thread as before the scheduler
  (BatchDecoder.run over the same prompts, n_seq sequences, no slot kept for chats).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from typing import Any

from bench.common import Section, Timing, fresh_dir, interleave
from bench.generate import make_prompts

MAX_TOKENS = 32
CLIENTS = 32
BATCH_LINES = 2000
# one thread: llama.cpp's threads spin-wait for each other, which on a CPU shared with other work costs many times more
HARDWARE = ("hardware=cpu", "hardware.threads=1")


def _body(model: str, text: str, **extra: Any) -> dict[str, Any]:
    messages = [{"role": "user", "content": text}]
    return {"model": model, "messages": messages, "temperature": 0, "max_tokens": MAX_TOKENS, **extra}


async def _one_stream(client: Any, body: dict[str, Any]) -> tuple[float, int]:
    """(seconds to the first content chunk, content chunks) of one streamed chat."""
    started, first, chunks = time.perf_counter(), None, 0
    async with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as reply:
        assert reply.status_code == 200, reply.status_code
        async for line in reply.aiter_lines():
            if not line.startswith("data: {"):
                continue
            choices = json.loads(line[6:])["choices"]
            if choices and choices[0]["delta"].get("content"):
                chunks += 1
                first = first if first is not None else time.perf_counter() - started
    return (first if first is not None else time.perf_counter() - started), chunks


def _streams(url: str, bodies: list[dict[str, Any]]) -> list[tuple[float, int]]:
    import httpx

    async def go() -> list[tuple[float, int]]:
        limits = httpx.Limits(max_connections=256)
        async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
            return list(await asyncio.gather(*(_one_stream(client, b) for b in bodies)))

    return asyncio.run(go())


def _engine_ttft(engine: Any, body: dict[str, Any]) -> float:
    """Seconds to the first text of a chat asked of the engine in this process, as the route asks it (no HTTP)."""
    from adam.backends.types import Priority

    params = {"max_tokens": body["max_tokens"], "temperature": 0}
    request = engine.request(messages=tuple(body["messages"]), params=params)
    started = time.perf_counter()
    stream = engine.stream(request, priority=Priority.interactive)
    try:
        next(chunk for chunk in stream if chunk.text)
    finally:
        stream.close()
    return time.perf_counter() - started


def _pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def _engine(overrides: list[str]) -> Any:
    from adam.engine import Engine
    from adam.manager import compose_config
    from adam.run.runner import build_backend

    cfg = compose_config(["job=serve", "size=demo", *HARDWARE, *overrides, f"hydra.run.dir={fresh_dir('sched')}"])
    backend = build_backend(cfg)
    backend.load()
    return Engine.from_config(backend, cfg.job, cfg.domain)


def _under_load(sec: Section, backend: str, clients: int) -> None:
    from adam.server.app import create_app
    from adam.server.listen import BackgroundServer
    from adam.server.state import ServeOptions

    engine = _engine([f"backend={backend}"])
    model = engine.backend.size.hf_id
    bodies = [_body(model, p) for p in make_prompts(clients)]
    app = create_app([engine], ServeOptions.of(max_batch=clients))
    with BackgroundServer(app) as server:
        _streams(server.url, bodies[:2])  # warm-up
        started = time.perf_counter()
        results = _streams(server.url, bodies)
        seconds = time.perf_counter() - started
    engine.backend.close()
    ttft = [r[0] for r in results]
    chunks = sorted(r[1] for r in results)
    one_piece = sum(c <= 1 for c in chunks)
    sec.lines.append(
        f"| {backend} | {clients} | {_pct(ttft, 50) * 1000:.0f} | {_pct(ttft, 95) * 1000:.0f} | "
        f"{chunks[0]} / {statistics.median(chunks):g} / {chunks[-1]} | {one_piece} | {seconds:.1f} |"
    )


def _interactive_first(sec: Section, quick: bool, *overrides: str) -> None:
    import httpx
    import openai

    from adam.server.app import create_app
    from adam.server.listen import BackgroundServer
    from adam.server.state import ServeOptions

    engine = _engine(["backend=llamacpp", *overrides])
    model = engine.backend.size.hf_id
    chat = _body(model, "What is the capital of France?")
    setting = f" ({' '.join(overrides)})" if overrides else ""
    lines = BATCH_LINES if not quick else 400
    prompts = make_prompts(lines, seed=1)
    data = "".join(
        json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions", "body": _body(model, p)})
        + "\n"
        for i, p in enumerate(prompts)
    ).encode()
    tries = 3 if quick else 6
    app = create_app([engine], ServeOptions.of(state_dir=str(fresh_dir("sched-state"))))
    with BackgroundServer(app) as server:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
        _streams(server.url, [chat])  # warm-up
        idle = [_streams(server.url, [chat])[0][0] for _ in range(tries)]
        idle_engine = [_engine_ttft(engine, chat) for _ in range(tries)]
        upload = client.files.create(file=("lines.jsonl", data), purpose="batch")
        batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h")
        deadline = time.monotonic() + 300
        while client.batches.retrieve(batch.id).request_counts.completed < 32 and time.monotonic() < deadline:
            time.sleep(0.1)
        scheduler = engine.backend.scheduler()
        busy, steps, busy_engine = [], [], []
        for _ in range(tries):
            before = scheduler.stepped
            busy.append(_streams(server.url, [chat])[0][0])
            steps.append(scheduler.stepped - before)
            time.sleep(0.2)  # the batch refills every slot between chats
            busy_engine.append(_engine_ttft(engine, chat))
            time.sleep(0.2)
        done = client.batches.retrieve(batch.id).request_counts.completed
        client.batches.cancel(batch.id)
        httpx.get(f"{server.url}/health")
    engine.backend.close()
    idle_ms, busy_ms = statistics.median(idle) * 1000, statistics.median(busy) * 1000
    sec.timings += [
        Timing(f"chat TTFT, idle server{setting}", idle, 1, "chat", note=f"median of {tries}"),
        Timing(f"chat TTFT, {lines}-line batch running{setting}", busy, 1, "chat", note=f"median of {tries}"),
    ]
    what = f"idle TTFT / TTFT while the batch runs{setting} (target: busy <= 2x idle)"
    sec.checks.append((what, idle_ms / busy_ms, 0.5))
    sec.lines.append(
        f"- Interactive first{setting}: TTFT {idle_ms:.0f} ms idle, {busy_ms:.0f} ms while the batch ran "
        f"({busy_ms / idle_ms:.2f}x; target <= 2x). Every slot but the one kept for chats was decoding batch "
        f"lines throughout (the batch had answered {done} of {lines} lines when it was cancelled); "
        f"each chat shared {statistics.median(steps):.0f} tokens' worth of decode steps with it. The same chat "
        f"asked of the engine in the server's process, without HTTP: {statistics.median(idle_engine) * 1000:.0f} ms "
        f"idle, {statistics.median(busy_engine) * 1000:.0f} ms beside the batch."
    )


def _throughput(sec: Section, quick: bool) -> None:
    from adam.backends.base import GenerationRequest
    from adam.manager import compose_config
    from adam.run.runner import build_backend

    def backend_with(*overrides: str) -> Any:
        cfg = compose_config(["size=demo", *HARDWARE, "backend=llamacpp", *overrides])
        built = build_backend(cfg)
        built.load()
        return built

    scheduled = backend_with()  # n_seq=8 for batch work (+1 kept for chats, unused here)
    direct = backend_with("backend.interactive_slots=0")  # the decoder alone: 8 sequences, as before
    n = 32
    requests = [GenerationRequest(messages=({"role": "user", "content": p},), max_tokens=MAX_TOKENS, temperature=0)
                for p in make_prompts(n, seed=2)]  # fmt: skip
    counted: dict[str, int] = {}

    def through_scheduler() -> None:
        tokens = 0
        for start in range(0, n, 32):
            tokens += sum(g.completion_tokens for g in scheduled.generate(requests[start : start + 32]))
        counted["scheduler"] = tokens

    def decode_loop() -> None:
        decoder, tokens = direct._batch_decoder(), 0
        for start in range(0, n, 32):
            prompts = [direct._prepare(r) for r in requests[start : start + 32]]
            for events in decoder.run(prompts):
                tokens += sum(1 for e in events)
        counted["direct"] = tokens

    times = interleave({"scheduler": through_scheduler, "direct": decode_loop}, reps=1 if quick else 2)
    names = ["a job's batches through the scheduler", "BatchDecoder.run on the caller's thread (before)"]
    sec.timings += [
        Timing(names[0], times["scheduler"], counted["scheduler"], "tok"),
        Timing(names[1], times["direct"], counted["direct"], "tok"),
    ]
    sec.ratio("throughput through the scheduler / direct decode calls (llamacpp)", names[0], names[1], 0.95)
    scheduled.close()
    direct.close()
    _hf_throughput(sec, requests[:16], reps=1 if quick else 2)


def _hf_throughput(sec: Section, requests: list[Any], reps: int) -> None:
    """The HF backend: a job's batch through the scheduler and hf_decode, against one generate() call as before."""
    from adam.manager import compose_config
    from adam.run.runner import build_backend

    backend = build_backend(compose_config(["size=demo", "hardware=cpu", "backend=huggingface"]))
    backend.load()
    counted: dict[str, int] = {}

    def through_scheduler() -> None:
        counted["scheduler"] = sum(g.completion_tokens for g in backend.generate(requests))

    def generate_call() -> None:
        counted["generate"] = _generate_call(backend, requests)

    times = interleave({"scheduler": through_scheduler, "generate": generate_call}, reps=reps)
    names = [f"HF: a job's batch of {len(requests)} through the scheduler", "HF: one generate() call (before)"]
    sec.timings += [
        Timing(names[0], times["scheduler"], counted["scheduler"], "tok"),
        Timing(names[1], times["generate"], counted["generate"], "tok"),
    ]
    sec.ratio("throughput through the scheduler / generate() (huggingface)", names[0], names[1], 0.95)
    backend.close()


def _generate_call(backend: Any, requests: list[Any]) -> int:
    """The HF backend's way before the scheduler: one greedy generate() call over the left-padded batch, each row
    cut to its max_tokens and first end token; returns the tokens generated."""
    from adam.backends.hf_model import running
    from adam.backends.hf_tensors import pad_rows

    lm = backend._model()
    prompts = [backend._prompt_ids(r) for r in requests]
    ids, mask = pad_rows(prompts, lm.tokenizer.pad_token_id, "left")
    with running(lm, "generation"):
        out = lm.model.generate(
            input_ids=ids.to(lm.device),
            attention_mask=mask.to(lm.device),
            max_new_tokens=max(r.max_tokens for r in requests),
            pad_token_id=lm.tokenizer.pad_token_id,
            eos_token_id=lm.eos_ids or None,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
        )
    tokens, eos = 0, set(lm.eos_ids)
    for request, row in zip(requests, out[:, ids.shape[1] :].tolist(), strict=True):
        row = row[: request.max_tokens]
        ends = [n for n, token in enumerate(row) if token in eos]
        tokens += ends[0] + 1 if ends else len(row)
    return tokens


def _hf_join(sec: Section, quick: bool) -> None:
    """Requests arriving one by one at the HF backend: each joins the running batch, or waits for it to empty."""
    import threading

    from adam.backends.hf_decode import HfPrompt, RowDecoder
    from adam.backends.scheduler import Scheduler, events
    from adam.backends.types import Priority

    engine = _engine(["backend=huggingface"])
    backend = engine.backend
    lm = backend._model()
    n, gap = (8, 0.3) if quick else (16, 0.3)
    prompts = []
    for p in make_prompts(n, seed=3):
        request = engine.request(messages=({"role": "user", "content": p},), params={"max_tokens": MAX_TOKENS})
        prompts.append(HfPrompt(backend._prompt_ids(request), MAX_TOKENS))
    rows = ["", "| HF decode loop | all done s | latency mean s | TTFT mean s | forward passes |",
            "| --- | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for name, join in (("waiting prompts join the running batch (adam)", True),
                       ("a new batch when the last empties", False)):  # fmt: skip
        scheduler = Scheduler(RowDecoder(lm, 64, join=join), batch_slots=64, name="bench-hf")
        latency, ttft = [0.0] * n, [0.0] * n

        def ask(i: int, scheduler: Scheduler = scheduler, latency: list = latency, ttft: list = ttft) -> None:
            started, first = time.perf_counter(), None
            for _ in events(scheduler, prompts[i], Priority.interactive):
                first = first if first is not None else time.perf_counter() - started
            latency[i], ttft[i] = time.perf_counter() - started, first or 0.0

        started = time.perf_counter()
        threads = []
        for i in range(n):
            threads.append(threading.Thread(target=ask, args=(i,)))
            threads[-1].start()
            time.sleep(gap)
        for thread in threads:
            thread.join()
        total = time.perf_counter() - started
        scheduler.close()
        rows.append(f"| {name} | {total:.1f} | {statistics.mean(latency):.2f} | {statistics.mean(ttft):.2f} | "
                    f"{scheduler.steps} |")  # fmt: skip
    backend.close()
    sec.lines += [
        "",
        f"HF, requests arriving one by one: {n} chats (max_tokens={MAX_TOKENS}), one every {gap:g} s, on the "
        "demo model, through the scheduler over hf_decode.RowDecoder: joining (their prompts read in a pass of "
        "their own, their KV left-padded and stacked onto the running batch's), or waiting for the batch to empty.",
        *rows,
    ]


def run(*, quick: bool = False) -> Section:
    """Streams under load on both in-process backends, interactive first and throughput on llamacpp."""
    from adam.backends.loaded_models import loaded_models

    sec = Section(
        f"Scheduler: streams under load, interactive first, throughput (demo model, greedy, max_tokens={MAX_TOKENS})",
        f"python -m bench scheduler{' --quick' if quick else ''}",
    )
    _throughput(sec, quick)
    _interactive_first(sec, quick)
    _interactive_first(sec, quick, "backend.n_batch=128")  # smaller prompt chunks: a chat waits less for one
    clients = 16 if quick else CLIENTS
    sec.lines += [
        "",
        f"Streaming under load: {clients} streamed chats posted at once (one warm-up round of 2 first).",
        "",
        "| backend | clients | TTFT p50 ms | TTFT p95 ms | chunks per answer min / median / max | answers in one "
        "piece | all done s |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for backend in ("llamacpp", "huggingface"):
        _under_load(sec, backend, clients)
        loaded_models.clear()
    _hf_join(sec, quick)
    loaded_models.clear()
    return sec
