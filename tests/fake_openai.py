"""A fake OpenAI-compatible server on pytest-httpserver, answering as the OpenAI API documents.

The real ``openai`` client talks to it, and every request is recorded so tests assert on what adam
sent. It serves /v1/models, /v1/chat/completions and /v1/completions (JSON, or SSE ending in
``data: [DONE]``) and /v1/embeddings. Knobs: scripted failures (``fail``: HTTP statuses to answer
with, in order, before answering normally), a stream cut midway (``cut_stream``), a per-request
delay, a context window (longer prompts get vLLM's 400), and ``reasoning`` (the thinking a
reasoning parser would split off).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

MODEL = "Qwen/Qwen3-0.6B"


@dataclass
class Seen:
    """One request the fake received."""

    path: str
    body: Any
    headers: dict[str, str]


class FakeOpenAI:
    """Answers by echoing the last user message (or prompt), word by word when streaming."""

    def __init__(self, server: HTTPServer, models: tuple[str, ...] = (MODEL,)) -> None:
        self.server = server
        self.models = models
        self.url = server.url_for("/v1")
        self.requests: list[Seen] = []
        self.fail: deque[int] = deque()
        self.cut_stream = False
        self.delay = 0.0
        self.context_window = 10_000  # "tokens" = words here
        self.reasoning: str | None = None
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        server.expect_request(re.compile(r"^/v1/.*")).respond_with_handler(self._handle)

    def bodies(self, path: str) -> list[Any]:
        """JSON bodies received on ``path`` (e.g. "/v1/chat/completions")."""
        return [r.body for r in self.requests if r.path == path]

    # ------------------------------------------------------------------ handler
    def _handle(self, request: Request) -> Response:
        body = json.loads(request.data) if request.data else None
        with self._lock:
            self.requests.append(Seen(request.path, body, dict(request.headers)))
            failure = self.fail.popleft() if self.fail else None
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                time.sleep(self.delay)
            if failure is not None:
                return _error(failure, f"scripted failure {failure}", "server_error")
            route = {
                "/v1/models": self._models,
                "/v1/chat/completions": self._chat,
                "/v1/completions": self._completion,
                "/v1/embeddings": self._embeddings,
            }.get(request.path)
            return route(body) if route else _error(404, f"no route {request.path}", "not_found")
        finally:
            with self._lock:
                self.in_flight -= 1

    def _models(self, body: Any) -> Response:
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in self.models]
        return _json({"object": "list", "data": data})

    def _check(self, body: dict[str, Any], said: str) -> Response | None:
        if body.get("model") not in self.models:
            return _error(404, f"The model `{body.get('model')}` does not exist.", "model_not_found")
        if len(said.split()) > self.context_window:
            return _error(
                400,
                f"This model's maximum context length is {self.context_window} tokens. However, you requested "
                f"{len(said.split())} tokens in the messages.",
                "BadRequestError",
            )
        return None

    def _chat(self, body: dict[str, Any]) -> Response:
        users = [m.get("content", "") for m in body["messages"] if m.get("role") == "user"]
        said = users[-1] if users else ""
        return self._answer(body, said, chat=True)

    def _completion(self, body: dict[str, Any]) -> Response:
        return self._answer(body, body["prompt"], chat=False)

    def _answer(self, body: dict[str, Any], said: str, *, chat: bool) -> Response:
        refused = self._check(body, said)
        if refused is not None:
            return refused
        words = said.split()
        kept = words[: body.get("max_tokens") or len(words)]
        reason = "length" if len(kept) < len(words) else "stop"
        usage = {
            "prompt_tokens": len(words) + 3,
            "completion_tokens": len(kept),
            "total_tokens": len(words) + 3 + len(kept),
        }
        kind = "chat.completion" if chat else "text_completion"
        if body.get("stream"):
            return self._stream(body, kept, reason, usage, kind, chat)
        text = " ".join(kept)
        if chat:
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if self.reasoning:
                message["reasoning_content"] = self.reasoning
            choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": reason}
        else:
            choice = {"index": 0, "text": text, "finish_reason": reason, "logprobs": None}
        return _json(
            {"id": "x1", "object": kind, "created": 0, "model": body["model"], "choices": [choice], "usage": usage}
        )

    def _stream(self, body: dict, kept: list[str], reason: str, usage: dict, kind: str, chat: bool) -> Response:
        chunk_kind = "chat.completion.chunk" if chat else "text_completion"

        def event(choices: list[dict], extra: dict | None = None) -> str:
            doc = {"id": "x1", "object": chunk_kind, "created": 0, "model": body["model"], "choices": choices}
            return f"data: {json.dumps({**doc, **(extra or {})})}\n\n"

        def piece(text: str, finish: str | None = None) -> dict:
            if chat:
                return {"index": 0, "delta": {"content": text} if text else {}, "finish_reason": finish}
            return {"index": 0, "text": text, "finish_reason": finish}

        events = []
        if chat and self.reasoning:
            events.append(event([{"index": 0, "delta": {"reasoning_content": self.reasoning}, "finish_reason": None}]))
        for i, word in enumerate(kept):
            events.append(event([piece(word if i == 0 else " " + word)]))
        if self.cut_stream:
            events = events[: max(len(events) // 2, 1)]
        else:
            events.append(event([piece("", reason)]))
            if (body.get("stream_options") or {}).get("include_usage"):
                events.append(event([], {"usage": usage}))
            events.append("data: [DONE]\n\n")
        return Response("".join(events), content_type="text/event-stream")

    def _embeddings(self, body: dict[str, Any]) -> Response:
        if body.get("model") not in self.models:
            return _error(404, f"The model `{body.get('model')}` does not exist.", "model_not_found")
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        width = body.get("dimensions") or 8
        data = []
        for i, text in enumerate(texts):
            digest = hashlib.sha256(text.encode()).digest()
            vector = [(b - 127.5) for b in digest[:width]]  # not unit length: adam normalises
            data.append({"object": "embedding", "index": i, "embedding": vector})
        tokens = sum(len(t.split()) for t in texts)
        return _json(
            {
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )


def _json(doc: Any, status: int = 200) -> Response:
    return Response(json.dumps(doc), status=status, content_type="application/json")


def _error(status: int, message: str, kind: str) -> Response:
    return _json({"error": {"message": message, "type": kind, "param": None, "code": None}}, status)
