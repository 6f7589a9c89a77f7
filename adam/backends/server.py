"""The base of backends that talk to a model server (Ollama, any OpenAI-compatible server).

The server does the model work, so what such a backend shares is the plumbing around HTTP calls:
a lazily made client, a bounded thread pool that keeps results in order, retries with backoff and
jitter, one choke point where client errors become adam's errors, and streams that pass the
server's own thinking field through. A new server backend is then its wire format and nothing else:
``_make_client``, ``_translate``, ``_generate_one``, ``_stream_raw`` and ``_embed_batch``.
"""

from __future__ import annotations

import contextlib
import math
import threading
from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar, TypeVar

from adam.backends.base import Generation, GenerationRequest, ModelBackend, Priority, StreamChunk
from adam.backends.retry import Backoff
from adam.backends.text import StreamAssembler
from adam.errors import AdamError, BackendError, ConfigError

T = TypeVar("T")


class ServerBackend(ModelBackend):
    """Bounded concurrency with ordered results, retries, error translation and streaming for HTTP backends."""

    label: ClassVar[str] = "server"  # how messages name the server ("Ollama", "OpenAI server")
    concurrent_calls: ClassVar[bool] = True  # every call is its own HTTP request; the server batches

    def __init__(
        self,
        size: Any,
        hardware: Any = None,
        *,
        concurrency: int,
        timeout: float,
        retries: int,
        backoff: float,
        max_backoff: float,
    ) -> None:
        super().__init__(size, hardware)
        if concurrency < 1:
            raise ConfigError(f"backend.concurrency must be at least 1, not {concurrency}")
        if timeout <= 0:
            raise ConfigError(f"backend.timeout must be positive, not {timeout}")
        try:
            self.backoff = Backoff(retries=retries, base=backoff, maximum=max_backoff)
        except ValueError as err:
            raise ConfigError(f"backend: {err}") from err
        self.concurrency = concurrency
        self.timeout = float(timeout)
        self._lock = threading.Lock()
        self._http: Any = None  # the client, made on first use: construction stays offline
        self._pool: ThreadPoolExecutor | None = None

    # ----------------------------------------------------------------- the wire format (subclasses)
    @abstractmethod
    def _make_client(self) -> Any:
        """The HTTP client for the server (called once, on first use)."""

    @abstractmethod
    def _translate(self, err: Exception, what: str) -> AdamError | None:
        """The AdamError a client error means (TransientError: retry it); None for errors not from the server."""

    @abstractmethod
    def _generate_one(self, request: GenerationRequest) -> Generation:
        """One request, one HTTP call."""

    def _close_client(self, client: Any) -> None:
        close = getattr(client, "close", None)
        if close is not None:
            close()

    # ----------------------------------------------------------------- generation
    def generate(
        self, requests: Sequence[GenerationRequest], *, priority: Priority = Priority.batch
    ) -> list[Generation | BackendError]:
        """Generate with up to ``concurrency`` requests in flight; a failed request fails alone, in place.

        The server orders its own queue: ``priority`` is not sent (neither Ollama nor OpenAI's API takes one)."""
        # Each request is its own HTTP call, so the base class's retry-the-batch-one-by-one isolation
        # would only resend the requests that already succeeded.
        return self.map_ordered(self._generate_one, requests)

    def _generate_batch(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        results = self.generate(requests)
        for result in results:
            if isinstance(result, BackendError):
                raise result
        return results  # type: ignore[return-value]

    def map_ordered(self, fn: Callable[[Any], T], items: Sequence[Any]) -> list[T | BackendError]:
        """``fn`` over items on the pool, results in input order; a BackendError is that item's result."""
        if not items:
            return []

        def settle(item: Any) -> T | BackendError:
            try:
                return fn(item)
            except BackendError as err:
                return err

        pool = self._executor()
        futures = [pool.submit(settle, item) for item in items]
        try:
            return [future.result() for future in futures]
        finally:  # BackendUnavailable or an interrupt: do not start what is still queued
            for future in futures:
                future.cancel()

    # ----------------------------------------------------------------- streaming
    def _stream(self, request: GenerationRequest, priority: Priority = Priority.interactive) -> Iterator[StreamChunk]:
        # The base class feeds only chunk.text to the StreamAssembler (which finds thinking in
        # <think> tags), so thinking a server sends in its own field would be lost. Forward those
        # deltas as they come and let the assembler cut stop strings and stray tags from the answer,
        # as finish_generation does. As in generate(), the server's thinking wins: once it sent some,
        # thinking the assembler finds in tags is dropped.
        assembler = StreamAssembler(request.stop)
        server_thinking = False
        with contextlib.closing(self._stream_raw(request)) as raws:  # a stop string hit closes the HTTP stream
            for raw in raws:
                chunk = assembler.feed(raw)
                if raw.thinking:
                    server_thinking = True
                    chunk.thinking = raw.thinking
                elif server_thinking:
                    chunk.thinking = ""
                if chunk.text or chunk.thinking:
                    yield chunk
                if assembler.stopped:
                    break
        last = assembler.close()
        if server_thinking:
            last.thinking = ""
        yield last

    # ----------------------------------------------------------------- calls, errors, threads
    def _client(self) -> Any:
        with self._lock:
            if self._http is None:
                self._http = self._make_client()
            return self._http

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix=f"adam-{self.name}")
            return self._pool

    def close(self) -> None:
        """Stop the worker threads and close the HTTP client."""
        with self._lock:
            pool, self._pool = self._pool, None
            client, self._http = self._http, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if client is not None:
            self._close_client(client)

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """The one wrapper around client calls: errors translated, transient ones retried with backoff."""

        def attempt() -> T:
            try:
                return fn()
            except AdamError:
                raise
            except Exception as err:
                translated = self._translate(err, what)
                if translated is None:
                    raise
                raise translated from err

        return self.backoff.call(attempt, f"{self.label} {what}")

    def _open_stream(self, what: str, fn: Callable[[], Iterator[T]]) -> Iterator[T]:
        """A streamed call, retried until its first part arrives; an error after that is not retried."""

        def first() -> tuple[T, Iterator[T]]:
            parts = fn()
            head = next(parts, None)  # lazy clients send the request on the first next()
            if head is None:
                raise BackendError(f"{self.label} {what} sent an empty stream")
            return head, parts

        head, parts = self._call(what, first)
        yield head
        try:
            yield from parts
        except AdamError:
            raise
        except Exception as err:  # an error event mid-stream
            translated = self._translate(err, what)
            if translated is None:
                raise
            raise translated from err


def split_tokens(total: int | None, texts: Sequence[str], estimate: Callable[[str], int]) -> list[int]:
    """Per-text token counts from a batch total, shared in proportion to text length (exact for one text).

    Servers report one prompt token count for a whole embedding request; without it, each text gets
    the ``estimate``.
    """
    if total is None:
        return [estimate(t) for t in texts]
    if len(texts) == 1:
        return [total]
    weights = [max(len(t), 1) for t in texts]
    shares = [total * w / sum(weights) for w in weights]
    counts = [math.floor(s) for s in shares]
    by_remainder = sorted(range(len(texts)), key=lambda i: shares[i] - counts[i], reverse=True)
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts
