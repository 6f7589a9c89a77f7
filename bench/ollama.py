"""Ollama: adam's concurrency and embedding batching against a local server with a fixed delay per request.

The server is a standalone threaded http.server on 127.0.0.1 that answers /api/chat, /api/embed and
the model-listing endpoints as Ollama documents them, sleeping ``DELAY`` seconds in every chat and
embed request, as a model would. It counts the requests it gets per path.
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
MODEL = "qwen3:0.6b"
EMBED_MODEL = "all-minilm:l6-v2"


class DelayServer(ThreadingHTTPServer):
    """An Ollama-protocol server whose chat and embed replies each take ``delay`` seconds."""

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
        """Base URL for backend.host."""
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> DelayServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


def _model_entry(name: str) -> dict[str, Any]:
    details = {"format": "gguf", "family": "qwen3", "parameter_size": "751.63M", "quantization_level": "Q4_K_M"}
    return {"name": name, "model": name, "modified_at": "2025-06-01T12:00:00Z", "size": 1, "digest": "0" * 64,
            "details": details}  # fmt: skip


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else headers and body in two writes wait on delayed ACKs (40 ms)
    wbufsize = 1 << 16  # one write per reply; flushed after each request
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
        if self.path == "/api/tags":
            self._reply({"models": [_model_entry(f"{MODEL}"), _model_entry(EMBED_MODEL)]})
        elif self.path == "/api/version":
            self._reply({"version": "0.12.6"})
        else:
            self._reply({"error": "not found"}, 404)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        with self.server.lock:
            self.server.counts[self.path] += 1
        model = body.get("model", "")
        if self.path == "/api/show":
            self._reply({"modelfile": "", "parameters": "", "template": "{{ .Prompt }}", "details": {},
                         "model_info": {"general.architecture": "qwen3"}, "capabilities": ["completion"]})  # fmt: skip
            return
        done = {"model": model, "created_at": "2025-06-01T12:00:00Z", "done": True, "total_duration": 1,
                "prompt_eval_count": 3, "eval_count": 2}  # fmt: skip
        if self.path == "/api/chat":
            time.sleep(self.server.delay)
            said = body["messages"][-1]["content"]
            message = {"role": "assistant", "content": f"You said: {said}"}
            self._reply({**done, "done_reason": "stop", "message": message})
        elif self.path == "/api/embed":
            time.sleep(self.server.delay)
            texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
            self._reply({**done, "embeddings": [[0.6, 0.8, 0.0] for _ in texts], "prompt_eval_count": len(texts)})
        else:
            self._reply({"error": "not found"}, 404)


def run(*, quick: bool = False) -> Section:
    """Generation at concurrency 8 vs 1, and how many requests embedding 1,000 texts takes."""
    from adam.run.runner import run as adam_run

    n = 200
    n_embed = 1000
    embed_batch = 32
    reps = 2 if quick else 3
    work = fresh_dir("ollama")
    prompts = work / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"p{i}", "prompt": f"question {i}"}) + "\n" for i in range(n)))
    texts = work / "texts.jsonl"
    texts.write_text("".join(json.dumps({"id": f"t{i}", "text": f"text number {i}"}) + "\n" for i in range(n_embed)))
    sec = Section(
        f"Ollama: local threaded server on 127.0.0.1, {DELAY * 1000:.0f} ms per request",
        f"python -m bench ollama{' --quick' if quick else ''}  (adam: run(cfg) for `python -m adam backend=ollama "
        "size=qwen3_small backend.host=http://127.0.0.1:PORT backend.concurrency=8 job.input=prompts.jsonl`)",
    )
    counter = iter(range(10**6))
    with DelayServer() as server:

        def job(*overrides: str) -> Counter[str]:
            server.counts.clear()
            run_dir = work / f"run{next(counter)}"
            summary = adam_run(compose(["backend=ollama", f"backend.host={server.url}", *overrides], run_dir))
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
        counts = job(*emb)
        seconds = time.perf_counter() - t0
        embeds = counts["/api/embed"]
        sec.timings.append(Timing(f"adam embed {n_embed} texts, batch {embed_batch}", [seconds], n_embed, "texts"))
        expected = math.ceil(n_embed / embed_batch)
        verdict = "as expected" if embeds == expected else f"expected {expected}"
        sec.lines.append(f"- Embedding {n_embed} texts sent {embeds} /api/embed requests ({verdict}), not {n_embed}.")
    shutil.rmtree(work, ignore_errors=True)
    return sec
