"""Micro-batching, a bounded load test on loopback, and job=serve end to end with a graceful SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from fake_ollama import FakeOllama
from helpers import REPO
from serving import CHAT_ID, engine_for, metric, serving


def chat(text: str, **extra: object) -> dict[str, object]:
    return {"model": CHAT_ID, "messages": [{"role": "user", "content": text}], "temperature": 0, **extra}


async def _together(url: str, bodies: list[tuple[str, dict[str, object]]]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        return list(await asyncio.gather(*(client.post(path, json=body) for path, body in bodies)))


def test_requests_that_arrive_together_share_batches() -> None:
    # every backend call takes 0.2 s, so requests pile up behind the first and share the next calls
    with serving(engine_for("backend.delay=0.2"), batch_wait_ms=50) as server:
        bodies = [("/v1/chat/completions", chat(f"request number {i}")) for i in range(12)]
        bodies += [("/v1/chat/completions", chat(f"sampled {i}", temperature=0.5, seed=1)) for i in range(4)]
        bodies += [("/api/chat", {"model": "smollm2:135m", "messages": [{"role": "user", "content": "streamed"}]})]
        bodies += [("/v1/embeddings", {"model": CHAT_ID, "input": [f"text {i}", "more"]}) for i in range(8)]
        replies = asyncio.run(_together(server.url, bodies))
        assert [r.status_code for r in replies] == [200] * len(bodies)
        assert replies[3].json()["choices"][0]["message"]["content"] == "request number 3"
        assert replies[13].json()["choices"][0]["message"]["content"] == "sampled 1"
        streamed = [json.loads(line) for line in replies[16].text.splitlines()]
        assert "".join(p["message"]["content"] for p in streamed) == "streamed" and streamed[-1]["done"]
        assert [len(r.json()["data"]) for r in replies[17:]] == [2] * 8
        labels = {"model": CHAT_ID, "kind": "generate"}
        calls = metric(server.url, "adam_batch_size_count", **labels)
        served = metric(server.url, "adam_batch_size_sum", **labels)
        embed_calls = metric(server.url, "adam_batch_size_count", model=CHAT_ID, kind="embed")
    assert served == 17  # the stream joined a batch too
    assert calls < 17 / 2, f"{calls:g} backend calls for 17 generations"
    assert embed_calls < 8 / 2, f"{embed_calls:g} backend calls for 8 embedding requests"


async def _load(url: str, clients: int, seconds: float) -> tuple[list[float], list[int]]:
    latencies: list[float] = []
    statuses: list[int] = []
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients)

    async def one_client(n: int, client: httpx.AsyncClient) -> None:
        i = 0
        while time.perf_counter() < deadline:
            body = chat(f"client {n} asks question {i}", max_tokens=16)
            started = time.perf_counter()
            reply = await client.post("/v1/chat/completions", json=body)
            latencies.append(time.perf_counter() - started)
            statuses.append(reply.status_code)
            assert reply.json()["choices"][0]["message"]["content"] == f"client {n} asks question {i}"
            i += 1

    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        await asyncio.gather(*(one_client(n, client) for n in range(clients)))
    return latencies, statuses


def test_32_clients_on_loopback_nothing_dropped_and_a_clean_shutdown() -> None:
    with serving(engine_for("backend.delay=0.005")) as server:
        latencies, statuses = asyncio.run(_load(server.url, clients=32, seconds=3))
        answered = metric(server.url, "adam_requests_total", path="/v1/chat/completions", status="200")
    cuts = statistics.quantiles(latencies, n=100)
    print(  # shown with -s; a number to watch, not to assert on
        f"\nload: {len(latencies)} requests from 32 clients in 3 s ({len(latencies) / 3:.0f}/s); "
        f"p50 {cuts[49] * 1000:.1f} ms, p95 {cuts[94] * 1000:.1f} ms, p99 {cuts[98] * 1000:.1f} ms"
    )
    assert set(statuses) == {200}
    assert answered == len(latencies)  # every request the clients sent was answered, none dropped


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_job_serve_ends_on_sigterm_after_finishing_what_is_in_flight(tmp_path: Path) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("ADAM_API_KEY", None)
    command = [sys.executable, "-m", "adam", "job=serve", "backend=echo", "backend.delay=1.5", f"job.port={port}",
               "job.embed_size=minilm", f"hydra.run.dir={tmp_path}"]  # fmt: skip
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"{url}/health", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
                time.sleep(0.1)
        assert health.json()["models"] == [CHAT_ID, "sentence-transformers/all-MiniLM-L6-v2"]
        reply: dict[str, httpx.Response] = {}

        def ask_slowly() -> None:
            reply["r"] = httpx.post(f"{url}/v1/chat/completions", json=chat("still answered"), timeout=30)

        slow = threading.Thread(target=ask_slowly)
        slow.start()
        time.sleep(0.5)  # the request is in the model's hands now
        proc.send_signal(signal.SIGTERM)
        slow.join(30)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert reply["r"].status_code == 200
    assert reply["r"].json()["choices"][0]["message"]["content"] == "still answered"
    assert proc.returncode == 0, stderr[-3000:]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["status"] == "completed"
    assert manifest["counts"]["ok"] >= 2 and manifest["counts"]["stopped_by"] == "SIGTERM"


def test_a_server_backend_gets_requests_passed_through_concurrently(fake_ollama: FakeOllama) -> None:
    fake_ollama.delay = 0.3  # every reply of the (fake) Ollama server behind adam's takes 0.3 s
    engine = engine_for(
        "backend=ollama", "size=qwen3_small", f"backend.host={fake_ollama.url}", "backend.concurrency=8"
    )
    with serving(engine) as server:
        chats = [{"model": "qwen3:0.6b", "messages": [{"role": "user", "content": f"q {i}"}]} for i in range(7)]
        bodies = [("/api/chat", {**body, "stream": i == 0}) for i, body in enumerate(chats)]
        replies = asyncio.run(_together(server.url, bodies))
    assert [r.status_code for r in replies] == [200] * 7
    assert replies[0].text.count("\n") > 1 and replies[1].json()["done"]  # one streamed, the others whole
    assert fake_ollama.max_in_flight >= 4  # not queued behind one worker: the server behind batches them
