"""backend=openai: concurrency against a local OpenAI-protocol server with a fixed delay per request.

The server is a standalone threaded http.server on 127.0.0.1 answering /v1/models,
/v1/chat/completions and /v1/embeddings as the OpenAI API documents, sleeping ``DELAY`` seconds in
every chat and embeddings request, as a model would. llama-cpp-python's real server handles one
request at a time, so it would measure nothing here.
"""

from __future__ import annotations

import json
import math
import shutil
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
    """An OpenAI-protocol server whose chat and embeddings replies each take ``delay`` seconds."""

    daemon_threads = True
    request_queue_size = 64

    def __init__(self, delay: float = DELAY) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.delay = delay
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The /v1 root for backend.base_url."""
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def __enter__(self) -> DelayServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


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
        with self.server.lock:
            self.server.counts[self.path] += 1
        if self.path == "/v1/models":
            self._reply({"object": "list", "data": [{"id": m, "object": "model"} for m in (MODEL, EMBED_MODEL)]})
        else:
            self._reply({"error": {"message": "not found"}}, 404)

    def do_POST(self) -> None:
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
    from adam.runner import run as adam_run

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
    with DelayServer() as server:

        def job(*overrides: str) -> Counter[str]:
            server.counts.clear()
            run_dir = work / f"run{next(counter)}"
            summary = adam_run(compose(["backend=openai", f"backend.base_url={server.url}", *overrides], run_dir))
            assert summary.stats.failed == 0, summary
            shutil.rmtree(run_dir)
            return Counter(server.counts)

        gen = ["size=qwen3_small", f"job.input={prompts}"]
        for conc in (8, 1):
            times = repeat(lambda conc=conc: job(*gen, f"backend.concurrency={conc}"), reps=reps if conc > 1 else 1)
            sec.timings.append(Timing(f"adam generate, backend.concurrency={conc}", times, n, "req"))
        sec.ratio("concurrency 8 / concurrency 1", sec.timings[0].name, sec.timings[1].name, 6.0)
        sec.lines.append(
            f"- {n} chat requests, {n * DELAY:.0f} s of server delay in all; the ideal ratio is 8x. Concurrency 8 "
            f"keeps {sec.timings[0].rate * DELAY:.1f} requests in flight on average, concurrency 1 "
            f"{sec.timings[1].rate * DELAY:.2f}."
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
