"""Prometheus metrics at /metrics: requests, latency, tokens, batch sizes and queue depth.

Each app has its own registry (two servers in one process, as in the tests, never share counters).
Paths are labelled only by the routes the server has, so a scan of random URLs cannot grow the series.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from adam.server.security import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    """The server's counters, histograms and gauges, in a registry of their own."""

    def __init__(self, paths: Iterable[str]) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.paths = frozenset(paths)
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("adam_requests", "HTTP requests answered", ["path", "status"], registry=r)
        self.latency = Histogram(
            "adam_request_seconds", "Time to the last byte of an answer", ["path"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.in_flight = Gauge("adam_requests_in_flight", "Requests being answered now", registry=r)
        self.tokens = Counter("adam_tokens", "Tokens read and generated", ["model", "kind"], registry=r)
        self.batch_size = Histogram(
            "adam_batch_size", "Requests per backend batch call", ["model", "kind"], buckets=BATCH_BUCKETS, registry=r
        )
        self.batch_seconds = Histogram(
            "adam_batch_seconds", "Seconds per backend batch call", ["model", "kind"], buckets=LATENCY_BUCKETS,
            registry=r,
        )  # fmt: skip
        self.queue_depth = Gauge("adam_queue_depth", "Requests waiting for the model", ["model"], registry=r)

    def path_label(self, path: str) -> str:
        """The path as a label: one of the server's routes, else "other"."""
        return path if path in self.paths else "other"

    def observer(self, model: str) -> BatchMetrics:
        """What a model's batcher reports into."""
        return BatchMetrics(self, model)

    def watch_queue(self, model: str, depth: Callable[[], int]) -> None:
        """Read the model's queue depth whenever /metrics is scraped."""
        self.queue_depth.labels(model).set_function(depth)

    def answered(self) -> int:
        """Requests answered so far, on every path with every status."""
        samples = (s for metric in self.requests.collect() for s in metric.samples if s.name.endswith("_total"))
        return int(sum(s.value for s in samples))

    def render(self) -> tuple[bytes, str]:
        """(body, content type) for /metrics."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class BatchMetrics:
    """One model's batch sizes, batch times and tokens (the batcher's observer)."""

    def __init__(self, metrics: Metrics, model: str) -> None:
        self.metrics = metrics
        self.model = model

    def batch(self, kind: str, size: int, seconds: float) -> None:
        """A backend call of ``size`` requests took ``seconds``."""
        self.metrics.batch_size.labels(self.model, kind).observe(size)
        self.metrics.batch_seconds.labels(self.model, kind).observe(seconds)

    def tokens(self, kind: str, count: int) -> None:
        """``count`` tokens of ``kind`` (prompt, completion, embedding)."""
        if count > 0:
            self.metrics.tokens.labels(self.model, kind).inc(count)


class MetricsMiddleware:
    """ASGI middleware counting every answer and timing it to its last byte (streams included)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = self.metrics.path_label(scope.get("path", ""))
        started = time.perf_counter()
        status: dict[str, Any] = {"code": 500, "done": False}

        async def counted_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                status["done"] = True

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, counted_send)
        except Exception:
            status.update(code=500, done=True)  # answered by the error middleware around this one
            raise
        finally:
            self.metrics.in_flight.dec()
            code = status["code"] if status["done"] else 499  # the client went away before the end
            self.metrics.requests.labels(path, str(code)).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - started)
