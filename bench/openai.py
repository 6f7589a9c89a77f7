"""backend=openai: concurrency against a local OpenAI-protocol server with a fixed delay per request.

The server is a standalone threaded http.server on 127.0.0.1 answering /v1/models,
/v1/chat/completions and /v1/embeddings as the OpenAI API documents, sleeping ``DELAY`` seconds in
every chat and embeddings request, as a model would. It runs in a child process, as a real server
does: in the bench's own process its request handling would take the GIL from the client under
measurement. llama-cpp-python's real server handles one request at a time, so it would measure
nothing here.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import shutil
import statistics
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bench.common import Section, Timing, compose, fresh_dir, repeat

DELAY = 0.05
MODEL = "Qwen/Qwen3-0.6B"  # size=qwen3_small's hub id, the name backend=openai sends by default
EMBED_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


class DelayServer(ThreadingHTTPServer):
    """An OpenAI-protocol server whose chat and embeddings replies each take ``delay`` seconds (run by _serve)."""

    daemon_threads = True
    request_queue_size = 64

    def __init__(self, delay: float = DELAY) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.delay = delay
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()


class DelayServerProcess:
    """A DelayServer in a child process; ``counts()`` are the requests it has answered since ``reset()``."""

    def __init__(self, delay: float = DELAY) -> None:
        self.delay = delay
        self.port = 0
        self._proc: Any = None

    @property
    def url(self) -> str:
        """The /v1 root for backend.base_url."""
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> DelayServerProcess:
        ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: nothing of the bench's state is copied
        ports = ctx.Queue()
        self._proc = ctx.Process(target=_serve, args=(self.delay, ports), daemon=True)
        self._proc.start()
        self.port = ports.get(timeout=120)
        return self

    def __exit__(self, *exc: object) -> None:
        self._proc.terminate()
        self._proc.join(10)

    def reset(self) -> None:
        """Start counting requests afresh."""
        self._control("POST", "/_reset")

    def counts(self) -> Counter[str]:
        """Requests answered since the last reset, by path."""
        return Counter(json.loads(self._control("GET", "/_counts")))

    def _control(self, method: str, path: str) -> bytes:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=b"" if method == "POST" else None)
            return conn.getresponse().read()
        finally:
            conn.close()


def _serve(delay: float, ports: Any) -> None:
    server = DelayServer(delay)
    ports.put(server.server_address[1])
    server.serve_forever()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else headers and body in two writes wait on delayed ACKs (40 ms)
    wbufsize = 1 << 16
    server: DelayServer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: no line per request on stderr."""

    def _reply(self, obj: Any, status: int = 200) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/_counts":  # the bench asks, from its own process
            with self.server.lock:
                self._reply(dict(self.server.counts))
            return
        with self.server.lock:
            self.server.counts[self.path] += 1
        if self.path == "/v1/models":
            self._reply({"object": "list", "data": [{"id": m, "object": "model"} for m in (MODEL, EMBED_MODEL)]})
        else:
            self._reply({"error": {"message": "not found"}}, 404)

    def do_POST(self) -> None:
        if self.path == "/_reset":
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with self.server.lock:
                self.server.counts.clear()
            self._reply({})
            return
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        with self.server.lock:
            self.server.counts[self.path] += 1
        usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
        if self.path == "/v1/chat/completions":
            time.sleep(self.server.delay)
            said = body["messages"][-1]["content"]
            message = {"role": "assistant", "content": f"You said: {said}"}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            self._reply({"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                         "choices": [choice], "usage": usage})  # fmt: skip
        elif self.path == "/v1/embeddings":
            time.sleep(self.server.delay)
            data = [
                {"object": "embedding", "index": i, "embedding": [0.6, 0.8, 0.0]} for i in range(len(body["input"]))
            ]
            self._reply({"object": "list", "data": data, "model": body["model"], "usage": usage})
        else:
            self._reply({"error": {"message": "not found"}}, 404)


def run(*, quick: bool = False) -> Section:
    """Generation at concurrency 8 vs 1, and how many requests embedding 1,000 texts takes."""
    from adam.run.runner import run as adam_run

    n, n_embed, embed_batch = 200, 1000, 32
    reps = 2 if quick else 3
    work = fresh_dir("openai")
    prompts = work / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"p{i}", "prompt": f"question {i}"}) + "\n" for i in range(n)))
    texts = work / "texts.jsonl"
    texts.write_text("".join(json.dumps({"id": f"t{i}", "text": f"text number {i}"}) + "\n" for i in range(n_embed)))
    sec = Section(
        f"backend=openai: local threaded server on 127.0.0.1, {DELAY * 1000:.0f} ms per request",
        f"python -m bench openai{' --quick' if quick else ''}  (adam: run(cfg) for `python -m adam backend=openai "
        "size=qwen3_small backend.base_url=http://127.0.0.1:PORT/v1 backend.concurrency=8 job.input=prompts.jsonl`)",
    )
    counter = iter(range(10**6))
    with DelayServerProcess() as server:

        def job(*overrides: str, walls: list[float] | None = None) -> Counter[str]:
            """One run; its manifest's wall_time_s (the run without its set-up and teardown) goes to ``walls``."""
            server.reset()
            run_dir = work / f"run{next(counter)}"
            summary = adam_run(compose(["backend=openai", f"backend.base_url={server.url}", *overrides], run_dir))
            assert summary.stats.failed == 0, summary
            if walls is not None:
                walls.append(float(json.loads((run_dir / "manifest.json").read_text())["wall_time_s"]))
            shutil.rmtree(run_dir)
            return server.counts()

        gen = ["size=qwen3_small", f"job.input={prompts}"]
        in_job: dict[int, float] = {}  # median wall_time_s of the timed runs (the warm-up left out)
        for conc in (8, 1):
            walls: list[float] = []
            key = f"backend.concurrency={conc}"
            times = repeat(lambda key=key, walls=walls: job(*gen, key, walls=walls), reps=reps if conc > 1 else 1)
            sec.timings.append(Timing(f"adam generate, {key}", times, n, "req"))
            in_job[conc] = statistics.median(walls[-len(times) :])
        names = (sec.timings[0].name, sec.timings[1].name)
        sec.ratio("concurrency 8 / concurrency 1, start to end of run(cfg)", *names, 6.0)
        one, eight = in_job[1], in_job[8]
        sec.checks.append(("concurrency 8 / concurrency 1, in-job (manifest wall_time_s)", one / eight, None))
        sec.lines.append(
            f"- {n} chat requests, {n * DELAY:.0f} s of server delay in all; the ideal ratio is 8x. Concurrency 8 "
            f"keeps {sec.timings[0].rate * DELAY:.1f} requests in flight on average, concurrency 1 "
            f"{sec.timings[1].rate * DELAY:.2f}. In-job: {eight:.2f} s and {one:.2f} s."
        )
        emb = ["job=embed", "size=minilm", f"job.input={texts}", f"job.batch_size={embed_batch}"]
        t0 = time.perf_counter()
        counts = job(*emb, f"backend.model={EMBED_MODEL}")
        seconds = time.perf_counter() - t0
        sent = counts["/v1/embeddings"]
        sec.timings.append(Timing(f"adam embed {n_embed} texts, batch {embed_batch}", [seconds], n_embed, "texts"))
        expected = math.ceil(n_embed / embed_batch)
        verdict = "as expected" if sent == expected else f"expected {expected}"
        sec.lines.append(f"- Embedding {n_embed} texts sent {sent} /v1/embeddings requests ({verdict}), not {n_embed}.")
    shutil.rmtree(work, ignore_errors=True)
    return sec
