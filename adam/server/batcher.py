"""How the routes reach a model: its scheduler, micro-batches on one worker thread, or straight through.

A backend with a scheduler of its own (``backend.schedules``: llama.cpp and transformers in this
process) gets each generation and stream passed through on a thread pool as an interactive request:
its scheduler batches them at every decode step with whatever else runs, Batch API lines and jobs
after them, and every stream gets its tokens as they are made (adam/backends/scheduler.py).

Any other local model (echo), and every local model's embeddings, are owned by one worker thread:
one batched call beats many small ones. A request waits up to ``wait_s`` for others; then everything waiting is
grouped by sampling settings (and, for embeddings, by query task and truncation) and each group is
one engine call. A streamed request streams token by token when it has the model to itself; when
others are waiting it joins their batch and its answer arrives in one piece, so no client waits
behind a stream.

A backend that says it takes concurrent calls (a server backend: Ollama, OpenAI) gets every request
passed through at once on a thread pool; its server does the batching.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Hashable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from adam.backends.base import Embedding, Generation, GenerationRequest, Priority, StreamChunk
from adam.engine import Engine
from adam.errors import BackendError, BackendUnavailable

log = logging.getLogger(__name__)

_END = object()  # a stream's last item
_STOP = object()  # the worker's last item


class Observer(Protocol):
    """Where a batcher reports its batches and tokens (the server's metrics)."""

    def batch(self, kind: str, size: int, seconds: float) -> None: ...

    def tokens(self, kind: str, count: int) -> None: ...


def sampling_key(request: GenerationRequest) -> Hashable:
    """Requests with equal keys can share one batched generate call. A constraint is no part of it: each row of a
    local backend's batch has its own mask, so constrained and plain requests share a batch."""
    if request.temperature > 0:
        return ("sample", request.temperature, request.top_p, request.seed, request.stop)
    return ("greedy", request.stop)


class _Sink:
    """A stream's chunks, from the thread that makes them to the event loop of the request reading them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.closed = threading.Event()  # the reader is gone: stop making chunks

    def put(self, item: Any) -> bool:
        """Hand ``item`` to the reader; False once nobody reads any more."""
        if self.closed.is_set():
            return False
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the loop is closed
            self.closed.set()
            return False
        return True


@dataclass(eq=False)
class _Work:
    """One request waiting for the model."""

    kind: str  # generate | stream | embed | call
    key: Hashable  # requests with equal kind and key share a batch
    payload: Any
    future: Future[Any] = field(default_factory=Future)
    sink: _Sink | None = None  # stream: where its chunks go


class Batcher:
    """Runs one engine's requests: batched on one worker thread, or passed through for server backends."""

    def __init__(
        self,
        engine: Engine,
        *,
        wait_s: float,  # job.batch_wait_ms, in seconds
        max_batch: int,  # job.max_batch
        observer: Observer | None = None,
        threads: int = 64,
    ) -> None:
        self.engine = engine
        self.wait_s = wait_s
        self.max_batch = max_batch
        self.observer = observer
        self.serial = not engine.backend.concurrent_calls
        self.scheduled = engine.backend.schedules  # generation: the backend's scheduler batches at each step
        self._queue: queue.Queue[Any] = queue.Queue()
        self._lock = threading.Lock()
        self._closed = False
        self._worker: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        if self.serial:
            self._worker = threading.Thread(target=self._run, name="adam-model", daemon=True)
            self._worker.start()
        if not self.serial or self.scheduled:
            self._pool = ThreadPoolExecutor(threads, thread_name_prefix="adam-serve")

    @property
    def queue_depth(self) -> int:
        """Requests waiting for the model now: on the worker's queue, and in the backend's scheduler."""
        return self._queue.qsize() + self.engine.backend.queued()

    # ----------------------------------------------------------------- what routes call
    async def generate(self, request: GenerationRequest) -> Generation:
        """One generation; raises its BackendError (a refusal: ContextOverflowError)."""
        result = await self._submit(_Work("generate", sampling_key(request), request))
        if isinstance(result, BaseException):
            raise result
        return result  # type: ignore[no-any-return]

    async def embed(
        self, texts: Sequence[str], *, query_task: str | None = None, truncate: bool | None = None
    ) -> list[Embedding | BackendError]:
        """Vectors for texts, in order, each an Embedding or the BackendError of that text."""
        return await self._submit(_Work("embed", (query_task, truncate), list(texts)))  # type: ignore[no-any-return]

    async def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` where the model lives (loading it, say), in turn with the requests."""
        return await self._submit(_Work("call", id(fn), fn))

    def call_from_thread(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` where the model lives, from a thread that is not the event loop's; one queue item."""
        work = _Work("call", id(fn), fn)
        self._enqueue(work)
        return work.future.result()

    async def open_stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        """A generation in chunks, the first one already here: a refusal raises now, before any answer is sent."""
        chunks = self._stream(request)
        try:
            first = await anext(chunks, None)
        except BaseException:
            await chunks.aclose()
            raise
        return _prepend(first, chunks)

    async def _stream(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        sink = _Sink(asyncio.get_running_loop())
        work = _Work("stream", sampling_key(request), request, sink=sink)
        self._enqueue(work)
        try:
            while (item := await sink.queue.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:  # done, or the client went away: stop making chunks nobody reads
            sink.closed.set()
            work.future.cancel()

    async def _submit(self, work: _Work) -> Any:
        self._enqueue(work)
        return await asyncio.wrap_future(work.future)

    def _enqueue(self, work: _Work) -> None:
        with self._lock:
            if self._closed:
                raise BackendUnavailable("the server is shutting down")
            if self._pool is not None and (not self.serial or work.kind in ("generate", "stream")):
                self._pool.submit(self._dispatch, [work])
            else:
                self._queue.put(work)

    def close(self, timeout: float | None = None) -> None:
        """Finish what is queued, then stop the worker; later requests are refused."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._worker is not None:
                self._queue.put(_STOP)
        if self._worker is not None:
            self._worker.join(timeout)
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    # ----------------------------------------------------------------- the worker
    def _run(self) -> None:
        while (items := self._collect()) is not None:
            self._dispatch(items)

    def _collect(self) -> list[_Work] | None:
        """The next batch: the first request, and whatever arrives within wait_s of it (up to max_batch)."""
        first = self._queue.get()
        if first is _STOP:
            return None
        items = [first]
        deadline = time.monotonic() + self.wait_s
        while len(items) < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                self._queue.put(_STOP)  # after this batch
                break
            items.append(item)
        return items

    def _dispatch(self, items: list[_Work]) -> None:
        """Run a batch: a lone stream streams, everything else goes in groups to the engine."""
        live = [w for w in items if w.future.set_running_or_notify_cancel()]  # a cancelled one's client is gone
        if len(live) == 1 and live[0].kind == "stream":
            self._guarded([live[0]], lambda: self._stream_one(live[0]))
            return
        groups: dict[tuple[str, Hashable], list[_Work]] = {}
        for work in live:
            kind = "generate" if work.kind == "stream" else work.kind
            groups.setdefault((kind, work.key), []).append(work)
        for (kind, _), group in groups.items():
            run = {"generate": self._generate, "embed": self._embed, "call": self._call}[kind]
            self._guarded(group, lambda run=run, group=group: run(group))

    def _guarded(self, group: list[_Work], fn: Callable[[], None]) -> None:
        """Run ``fn``; an exception fails the group's requests, never the worker."""
        try:
            fn()
        except BaseException as err:  # handed to the requests, which raise it
            if not isinstance(err, BackendError | BackendUnavailable):
                log.exception("a batch of %d failed", len(group))
            for work in group:
                _fail(work, err)

    def _generate(self, group: list[_Work]) -> None:
        started = time.perf_counter()
        results = self.engine.complete([w.payload for w in group], priority=Priority.interactive)
        self._observe("generate", len(group), started)
        for work, result in zip(group, results, strict=True):
            if isinstance(result, Generation):
                self._count(result.prompt_tokens, result.completion_tokens)
            if work.sink is None:
                _settle(work, result)
                continue
            if isinstance(result, Generation):  # a stream that shared a batch: its answer in one piece
                chunk = StreamChunk(
                    result.text, result.thinking or "", result.finish_reason, result.prompt_tokens,
                    result.completion_tokens,
                )  # fmt: skip
                work.sink.put(chunk)
                work.sink.put(_END)
            else:
                work.sink.put(result)
            _settle(work, None)

    def _stream_one(self, work: _Work) -> None:
        assert work.sink is not None
        started = time.perf_counter()
        last = StreamChunk()
        stream = self.engine.stream(work.payload, priority=Priority.interactive)
        with contextlib.closing(stream) as chunks:  # type: ignore[type-var]
            for chunk in chunks:
                last = chunk
                if not work.sink.put(chunk):
                    break  # the client went away: closing the stream stops the generation
        self._observe("stream", 1, started)
        self._count(last.prompt_tokens or 0, last.completion_tokens or 0)
        work.sink.put(_END)
        _settle(work, None)

    def _embed(self, group: list[_Work]) -> None:
        query_task, truncate = group[0].key  # type: ignore[misc]
        texts = [text for work in group for text in work.payload]
        started = time.perf_counter()
        results = self.engine.embed_texts(texts, query_task=query_task, truncate=truncate)
        self._observe("embed", len(group), started)
        if self.observer is not None:
            self.observer.tokens("embedding", sum(r.tokens for r in results if isinstance(r, Embedding)))
        start = 0
        for work in group:
            _settle(work, results[start : start + len(work.payload)])
            start += len(work.payload)

    def _call(self, group: list[_Work]) -> None:
        for work in group:
            _settle(work, work.payload())

    def _observe(self, kind: str, size: int, started: float) -> None:
        if self.observer is not None:
            self.observer.batch(kind, size, time.perf_counter() - started)

    def _count(self, prompt: int, completion: int) -> None:
        if self.observer is not None:
            self.observer.tokens("prompt", prompt)
            self.observer.tokens("completion", completion)


def _settle(work: _Work, result: Any) -> None:
    if not work.future.done():
        work.future.set_result(result)


def _fail(work: _Work, err: BaseException) -> None:
    if work.sink is not None:
        work.sink.put(err)
    if not work.future.done():
        work.future.set_exception(err)


async def _prepend(first: StreamChunk | None, rest: AsyncIterator[StreamChunk]) -> AsyncIterator[StreamChunk]:
    try:
        if first is not None:
            yield first
        async for chunk in rest:
            yield chunk
    finally:
        await rest.aclose()  # type: ignore[attr-defined]
