"""A fake Ollama server on pytest-httpserver that answers as Ollama's REST API documents.

The real ``ollama.Client`` talks to it over HTTP, and every request it receives is recorded, so
tests assert on what adam sent. It knows /api/version, /api/tags, /api/show, /api/chat and
/api/generate (one JSON reply or NDJSON stream), /api/embed, /api/pull and /api/create (streamed
status lines), HEAD and POST /api/blobs/sha256:<hex>. Knobs: scripted failures
(``fail``), slow replies (``stall``, ``delay``), an error line in the middle of a stream
(``stream_error``), vectors rewritten per text (``embedding_of``), and the in-flight high-water
mark (``max_in_flight``).
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

CREATED_AT = "2025-06-01T12:00:00.000000Z"
VERSION = "0.12.6"
NS = 1_000_000  # durations are nanoseconds; every fake step "takes" a millisecond


@dataclass
class Recorded:
    """One request the fake received."""

    method: str
    path: str
    body: Any  # parsed JSON, or None when the body is not JSON
    data: bytes
    headers: dict[str, str]


@dataclass
class Model:
    """A model the fake server holds."""

    name: str
    family: str = "qwen3"
    parameter_size: str = "751.63M"
    quantization_level: str = "Q4_K_M"
    digest: str = field(default="")

    def __post_init__(self) -> None:
        self.digest = self.digest or hashlib.sha256(self.name.encode()).hexdigest()


Responder = Callable[[dict[str, Any]], tuple[str | None, str]]


def full_name(name: str) -> str:
    """``name:tag`` with Ollama's implicit ``:latest``."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def echo_responder(body: dict[str, Any]) -> tuple[str | None, str]:
    """(thinking, answer): echoes the last user message (or raw prompt); thinks only when asked to."""
    if "messages" in body:
        users = [m.get("content", "") for m in body["messages"] if m.get("role") == "user"]
        said = users[-1] if users else ""
    else:
        said = body.get("prompt", "")
    thinking = f"The user said {said!r}. I will echo it." if body.get("think") else None
    return thinking, f"You said: {said}"


def pieces(text: str) -> list[str]:
    """Text cut into word-sized stream deltas that join back to it."""
    return re.findall(r"\s*\S+|\s+$", text) if text else []


class FakeOllama:
    """Handlers for Ollama's endpoints on one pytest-httpserver, with a record of every request."""

    def __init__(self, server: HTTPServer, models: Iterable[str] = ("qwen3:0.6b",)) -> None:
        self.server = server
        self.models: dict[str, Model] = {full_name(m): Model(full_name(m)) for m in models}
        self.blobs: set[str] = set()
        self.pullable: set[str] | None = None  # None: the registry has every model
        self.responder: Responder = echo_responder
        self.reject: Callable[[dict[str, Any]], tuple[int, str] | None] = lambda body: None  # per-request errors
        self.embedding_dim = 8
        self.normalize_embeddings = True  # Ollama's /api/embed returns unit vectors
        self.embedding_of: Callable[[str, list[float]], Any] = lambda text, vector: vector  # to send a bad one
        self.delay = 0.0  # seconds each chat/generate/embed reply takes
        self.stream_error: tuple[int, str] | None = None  # (after N answer deltas, error text)
        self.requests: list[Recorded] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._failures: dict[str, deque[tuple[int, str]]] = defaultdict(deque)
        self._stalls: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._routes: dict[tuple[str, str], Callable[[Request, Any], Response]] = {
            ("GET", "/api/version"): lambda r, b: _json({"version": VERSION}),
            ("GET", "/api/tags"): self._tags,
            ("POST", "/api/show"): self._show,
            ("POST", "/api/chat"): self._chat,
            ("POST", "/api/generate"): self._generate,
            ("POST", "/api/embed"): self._embed,
            ("POST", "/api/pull"): self._pull,
            ("POST", "/api/create"): self._create,
        }
        server.expect_request(re.compile(r"^/.*$")).respond_with_handler(self._dispatch)

    # ----------------------------------------------------------------- test-facing
    @property
    def url(self) -> str:
        """Base URL, as a user would put it in backend.host."""
        return self.server.url_for("")

    def fail(self, path: str, status: int, error: str = "something went wrong", times: int = 1) -> None:
        """The next ``times`` requests to ``path`` get ``status`` and ``{"error": error}``."""
        self._failures[path].extend([(status, error)] * times)

    def stall(self, path: str, seconds: float, times: int = 1) -> None:
        """The next ``times`` requests to ``path`` wait ``seconds`` before being served."""
        self._stalls[path].extend([seconds] * times)

    def calls(self, path: str, method: str | None = None) -> list[Recorded]:
        """Requests received for ``path`` (and ``method``), in arrival order."""
        with self._lock:
            return [r for r in self.requests if r.path == path and (method is None or r.method == method)]

    def bodies(self, path: str) -> list[Any]:
        """JSON bodies received for ``path``."""
        return [r.body for r in self.calls(path)]

    # ----------------------------------------------------------------- dispatch
    def _dispatch(self, request: Request) -> Response:
        data = request.get_data()
        try:
            body = json.loads(data) if data else None
        except ValueError:
            body = None
        with self._lock:
            self.requests.append(Recorded(request.method, request.path, body, data, dict(request.headers)))
            stall = self._stalls[request.path].popleft() if self._stalls[request.path] else 0.0
            failure = self._failures[request.path].popleft() if self._failures[request.path] else None
        if stall:
            time.sleep(stall)
        if failure is not None:
            status, error = failure
            return _json({"error": error}, status)
        if request.path.startswith("/api/blobs/"):
            return self._blob(request, data)
        route = self._routes.get((request.method, request.path))
        if route is None:
            return Response("404 page not found", 404, content_type="text/plain")
        return route(request, body or {})

    # ----------------------------------------------------------------- models
    def _model(self, body: dict[str, Any]) -> Model | None:
        return self.models.get(full_name(body.get("model") or body.get("name") or ""))

    def _not_found(self, body: dict[str, Any]) -> Response:
        return _json({"error": f'model "{body.get("model")}" not found, try pulling it first'}, 404)

    def _tags(self, request: Request, body: Any) -> Response:
        return _json({"models": [_listing(m) for m in self.models.values()]})

    def _show(self, request: Request, body: dict[str, Any]) -> Response:
        model = self._model(body)
        if model is None:
            return _json({"error": f"model '{body.get('model')}' not found"}, 404)
        return _json(
            {
                "modelfile": f"FROM {model.name}\n",
                "parameters": 'stop "<|im_start|>"\nstop "<|im_end|>"',
                "template": "{{ .Prompt }}",
                "details": _details(model),
                "model_info": {"general.architecture": model.family, f"{model.family}.context_length": 40960},
                "capabilities": ["completion", "thinking"],
                "modified_at": CREATED_AT,
            }
        )

    # ----------------------------------------------------------------- generation
    def _chat(self, request: Request, body: dict[str, Any]) -> Response:
        return self._complete(body, chat=True)

    def _generate(self, request: Request, body: dict[str, Any]) -> Response:
        if not body.get("prompt") and self._model(body) is not None:  # an empty prompt just loads the model
            return _json({"model": body["model"], "created_at": CREATED_AT, "response": "", "done": True,
                          "done_reason": "load"})  # fmt: skip
        return self._complete(body, chat=False)

    def _complete(self, body: dict[str, Any], *, chat: bool) -> Response:
        model = self._model(body)
        if model is None:
            return self._not_found(body)
        rejected = self.reject(body)
        if rejected is not None:
            return _json({"error": rejected[1]}, rejected[0])
        thinking, answer = self.responder(body)
        limit = (body.get("options") or {}).get("num_predict")
        words = pieces(answer)
        reason = "stop"
        if isinstance(limit, int) and 0 <= limit < len(words):
            words, reason = words[:limit], "length"
        answer = "".join(words)
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", [])) + len(
            str(body.get("prompt", "")).split()
        )
        final = {
            "model": body["model"],
            "created_at": CREATED_AT,
            "done": True,
            "done_reason": reason,
            "total_duration": 5 * NS,
            "load_duration": NS,
            "prompt_eval_count": prompt_tokens,
            "prompt_eval_duration": NS,
            "eval_count": len(words),
            "eval_duration": 2 * NS,
        }
        if not body.get("stream", True):
            with self._counting():
                return _json({**final, **self._delta(chat, answer, thinking)})
        parts = [self._delta(chat, "", t) for t in pieces(thinking or "")]
        parts += [self._delta(chat, w, None) for w in words]
        return _ndjson(self._stream(body["model"], parts, final, self._delta(chat, "", None)))

    def _stream(self, model: str, parts: list[dict], final: dict, empty: dict) -> Iterator[dict]:
        answered = 0
        for part in parts:
            if self.stream_error is not None and answered >= self.stream_error[0]:
                yield {"error": self.stream_error[1]}
                return
            answered += bool(part.get("response") or (part.get("message") or {}).get("content"))
            yield {"model": model, "created_at": CREATED_AT, "done": False, **part}
        yield {**final, **empty}

    @staticmethod
    def _delta(chat: bool, text: str, thinking: str | None) -> dict[str, Any]:
        if chat:
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if thinking:
                message["thinking"] = thinking
            return {"message": message}
        return {"response": text, **({"thinking": thinking} if thinking else {})}

    class _InFlight:
        def __init__(self, fake: FakeOllama) -> None:
            self.fake = fake

        def __enter__(self) -> None:
            with self.fake._lock:
                self.fake.in_flight += 1
                self.fake.max_in_flight = max(self.fake.max_in_flight, self.fake.in_flight)
            if self.fake.delay:
                time.sleep(self.fake.delay)

        def __exit__(self, *exc: object) -> None:
            with self.fake._lock:
                self.fake.in_flight -= 1

    def _counting(self) -> FakeOllama._InFlight:
        return FakeOllama._InFlight(self)

    # ----------------------------------------------------------------- embeddings
    def _embed(self, request: Request, body: dict[str, Any]) -> Response:
        if self._model(body) is None:
            return self._not_found(body)
        texts = body.get("input", [])
        texts = [texts] if isinstance(texts, str) else list(texts)
        dim = body.get("dimensions") or self.embedding_dim
        with self._counting():
            vectors = [self.embedding_of(t, self._vector(t, dim)) for t in texts]
        return _json(
            {
                "model": body["model"],
                "embeddings": vectors,
                "total_duration": 3 * NS,
                "load_duration": NS,
                "prompt_eval_count": sum(max(len(t.split()), 1) for t in texts),
            }
        )

    def _vector(self, text: str, dim: int) -> list[float]:
        seed = hashlib.sha256(text.encode()).digest() * (dim // 8 + 1)
        raw = [b - 127.5 for b in seed[:dim]]
        norm = sum(x * x for x in raw) ** 0.5 or 1.0
        scale = 1.0 / norm if self.normalize_embeddings else 3.0 / norm
        return [struct.unpack("f", struct.pack("f", x * scale))[0] for x in raw]

    # ----------------------------------------------------------------- pull, blobs, create
    def _pull(self, request: Request, body: dict[str, Any]) -> Response:
        name = full_name(body.get("model") or body.get("name") or "")
        lines: list[dict[str, Any]] = [{"status": "pulling manifest"}]
        if self.pullable is not None and name not in self.pullable:
            lines.append({"error": "pull model manifest: file does not exist"})
            return _ndjson(iter(lines))
        for size, salt in ((3000, "weights"), (500, "template")):
            digest = "sha256:" + hashlib.sha256(f"{name}/{salt}".encode()).hexdigest()
            for done in (0, size // 2, size):
                lines.append({"status": f"pulling {digest[7:19]}", "digest": digest, "total": size, "completed": done})
        lines += [{"status": "verifying sha256 digest"}, {"status": "writing manifest"}, {"status": "success"}]
        self.models[name] = Model(name)
        if not body.get("stream", True):
            return _json(lines[-1])
        return _ndjson(iter(lines))

    def _blob(self, request: Request, data: bytes) -> Response:
        digest = request.path.rsplit("/", 1)[-1]
        if request.method == "HEAD":
            return Response(status=200 if digest in self.blobs else 404)
        if request.method != "POST":
            return Response("405 method not allowed", 405)
        actual = "sha256:" + hashlib.sha256(data).hexdigest()
        if actual != digest:
            return _json({"error": f'digest mismatch, expected "{digest}", got "{actual}"'}, 400)
        self.blobs.add(digest)
        return Response(status=201)

    def _create(self, request: Request, body: dict[str, Any]) -> Response:
        name = full_name(body.get("model", ""))
        lines: list[dict[str, Any]] = [{"status": "gathering model components"}]
        for digest in (body.get("files") or {}).values():
            if digest not in self.blobs:
                lines.append({"error": f"blob {digest} not found: upload it first"})
                return _ndjson(iter(lines))
            lines.append({"status": f"using existing layer {digest}"})
        lines += [{"status": "parsing GGUF"}, {"status": "writing manifest"}, {"status": "success"}]
        self.models[name] = Model(name)
        return _ndjson(iter(lines))


def _details(model: Model) -> dict[str, Any]:
    return {
        "parent_model": "",
        "format": "gguf",
        "family": model.family,
        "families": [model.family],
        "parameter_size": model.parameter_size,
        "quantization_level": model.quantization_level,
    }


def _listing(model: Model) -> dict[str, Any]:
    return {
        "name": model.name,
        "model": model.name,
        "modified_at": CREATED_AT,
        "size": 522_653_767,
        "digest": model.digest,
        "details": _details(model),
    }


def _json(payload: Any, status: int = 200) -> Response:
    return Response(json.dumps(payload), status, content_type="application/json; charset=utf-8")


def _ndjson(lines: Iterator[dict[str, Any]]) -> Response:
    return Response((json.dumps(line) + "\n" for line in lines), 200, content_type="application/x-ndjson")
