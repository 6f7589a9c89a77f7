"""The one backend interface every model runner implements, and the batching helpers they share.

A backend gets the size and hardware specs and nothing else of the config tree; it never writes
files. The base class owns error isolation (a failing batch is retried record by record so one bad
record fails alone) and the public methods; a backend implements the few primitives that differ.
"""

from __future__ import annotations

import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from adam.backends.text import StreamAssembler, finish_text
from adam.backends.types import Embedding, Generation, GenerationRequest, Priority, StreamChunk, WeightsLocation
from adam.errors import BackendError, UnsupportedError
from adam.planning.memory_estimates import effective_context
from adam.settings.config import HardwareSpec, SizeSpec, to_spec

if TYPE_CHECKING:
    from adam.backends.scheduler import Scheduler

__all__ = [
    "Embedding",
    "Generation",
    "GenerationRequest",
    "ModelBackend",
    "Priority",
    "StreamChunk",
    "WeightsLocation",
    "finish_generation",
    "plan_batches",
]

log = logging.getLogger(__name__)

T = TypeVar("T")


class ModelBackend(ABC):
    """Base of every backend: public batch methods with error isolation over small primitives."""

    name: ClassVar[str] = "base"
    supports_generation: ClassVar[bool] = True
    supports_embeddings: ClassVar[bool] = False
    supports_streaming: ClassVar[bool] = True
    token_budget: int | None = None  # max padded tokens per batch, for backends where padding costs compute
    local_prompt_check: ClassVar[bool] = True  # False: no local tokenizer, the server judges a prompt's length
    model_field: ClassVar[str] = "hf_id"  # the size field naming this backend's model (size=auto needs it set)
    memory_modes: ClassVar[tuple[str, ...]] = ()  # fixed ways the model sits in memory; (): from hardware settings
    reads_hf_cache: ClassVar[bool] = False  # weights come from the Hugging Face cache (size=auto checks it offline)
    concurrent_calls: ClassVar[bool] = False  # safe to call from many threads at once (a server does the work)
    loads_in_process: ClassVar[bool] = False  # load() reads weights into this process: a batch job calls it first
    # what a request may ask beyond text (adam/protocol/structured.py); a backend without it refuses in one line
    supports_json_schema: ClassVar[bool] = False  # response_format: json_object and json_schema
    supports_choice: ClassVar[bool] = False  # choice: the answer is one of a list of labels
    supports_logprobs: ClassVar[bool] = False  # logprobs and top_logprobs on a chat request
    supports_ignore_eos: ClassVar[bool] = False  # ignore_eos: decoding goes on past the end-of-sequence token
    # generation goes through the backend's own scheduler (adam/backends/scheduler.py): callers on many threads
    # share its decode steps, by priority; _generate_batch and _stream_raw then take a ``priority`` keyword
    schedules: ClassVar[bool] = False
    _scheduler: Scheduler | None = None  # once a backend that schedules has started it

    def __init__(self, size: Any, hardware: Any = None) -> None:
        self.size: SizeSpec = to_spec(SizeSpec, size)
        self.hardware: HardwareSpec = to_spec(HardwareSpec, hardware or {"name": "auto"})

    # ----------------------------------------------------------------- public API
    def generate(
        self, requests: Sequence[GenerationRequest], *, priority: Priority = Priority.batch
    ) -> list[Generation | BackendError]:
        """Generate for a batch; each item is a Generation or the BackendError of that request alone."""
        if not self.supports_generation:
            raise UnsupportedError(f"the {self.name} backend cannot generate text")
        if self.schedules:
            return self._isolate(list(requests), lambda batch: self._generate_batch(batch, priority=priority))  # type: ignore[call-arg]
        return self._isolate(list(requests), self._generate_batch)

    def generate_one(self, request: GenerationRequest) -> Generation:
        """Generate for one request, raising its BackendError."""
        (result,) = self.generate([request])
        if isinstance(result, BackendError):
            raise result
        return result

    def embed(self, texts: Sequence[str]) -> list[Embedding | BackendError]:
        """Embed a batch of texts; each item is an Embedding or the BackendError of that text alone."""
        if not self.supports_embeddings:
            raise UnsupportedError(f"the {self.name} backend cannot embed text with size={self.size.name}")
        results = self._isolate(list(texts), self._embed_batch)
        if self.size.dimensions:
            results = [truncate_dimensions(r, self.size.dimensions) for r in results]
        return results

    def embedding_width(self) -> int | None:
        """The width of this backend's vectors where its settings declare it, so no probe is needed; size.dimensions
        (Matryoshka) keeps the first N. None: only the model can tell (the engine embeds one text to learn it)."""
        declared = self.declared_width()
        if declared is None:
            return None
        return min(declared, self.size.dimensions) if self.size.dimensions else declared

    def declared_width(self) -> int | None:
        """The width the backend's own settings fix (backend.dimensions); None when they fix none."""
        return None

    def stream(self, request: GenerationRequest, *, priority: Priority = Priority.interactive) -> Iterator[StreamChunk]:
        """Stream one generation; the joined text equals what generate() returns for the request."""
        if not self.supports_streaming:
            (gen,) = self.generate([request], priority=priority)
            if isinstance(gen, BackendError):
                raise gen
            yield StreamChunk(gen.text, gen.thinking or "", gen.finish_reason, gen.prompt_tokens, gen.completion_tokens)
            return
        yield from self._stream(request, priority)

    def sort_keys(self, texts: Sequence[str]) -> list[int]:
        """A length per text, to group similar inputs into one batch: characters here; backends with a
        tokenizer override it with token counts for a whole window in one call."""
        return [len(text) for text in texts]

    def context_window(self) -> int:
        """Tokens a request's prompt and answer share: the size's context, its YaRN length with size.long_context."""
        return effective_context(self.size)

    @abstractmethod
    def count_tokens(self, text: str) -> int:
        """Tokens the model sees for ``text``."""

    def opens_thinking(self, request: GenerationRequest) -> bool:
        """Whether the prompt fed to the model already opens a <think> block (the answer starts inside it)."""
        return False

    def request_problem(self, request: GenerationRequest) -> str | None:
        """Why this backend cannot honour a request's constraint, log-probabilities or ignore_eos, in one line;
        None: it can."""
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal[1]
        if request.response_format:
            from adam.protocol.structured import output_schema

            return self.schema_problem(output_schema(request.response_format) or {})
        return None

    def refused_field(self, request: GenerationRequest) -> str:
        """The request field request_problem refused."""
        refusal = self._refusal(request)
        return "response_format" if refusal is None else refusal[0]  # else: a schema keyword it cannot decode to

    def _refusal(self, request: GenerationRequest) -> tuple[str, str] | None:
        """(field, why) of the first thing asked that this backend cannot give; None: it can give them all."""
        if request.ignore_eos and request.constrained:
            why = "ignore_eos cannot go with response_format or choice: a constrained answer ends with its grammar"
            return "ignore_eos", why
        if request.response_format and not self.supports_json_schema:
            return "response_format", f"the {self.name} backend cannot constrain answers to JSON (response_format)"
        if request.choice and not self.supports_choice:
            return "choice", f"the {self.name} backend cannot constrain answers to a list of choices"
        if request.logprobs is not None and not self.supports_logprobs:
            return "logprobs", f"the {self.name} backend does not give log-probabilities"
        if request.ignore_eos and not self.supports_ignore_eos:
            return "ignore_eos", f"the {self.name} backend cannot decode past the end-of-sequence token (ignore_eos)"
        return None

    def schema_problem(self, schema: dict[str, Any]) -> str | None:
        """Why this backend cannot decode to ``schema`` (a keyword it lacks), in one line; None: it can."""
        return None

    def format_prompt(self, request: GenerationRequest) -> str:
        """The exact text the model is fed for a request (chat template applied where there is one)."""
        if request.prompt is not None:
            return request.prompt
        return "".join(f"{m['role']}: {m.get('content') or ''}\n" for m in request.messages) + "assistant: "

    @abstractmethod
    def info(self) -> dict[str, Any]:
        """What is being run: backend, model id or path, revision or file hash, kind, context, device."""

    def check_available(self) -> None:
        """Raise BackendUnavailable (or ModelNotFoundError) when no request could succeed."""

    def weights(self) -> dict[str, Any]:
        """Whether the model is on this machine (or its server) and, when not, how to get it; never downloads.

        ``cached`` is None where the question does not apply or cannot be answered now.
        """
        return {"cached": None}

    def has_thinking_mode(self) -> bool | None:
        """Whether job.thinking=true changes what the model does; None when the backend cannot tell."""
        return None

    def suggestions(self) -> list[str]:
        """Settings job=info suggests for this model on this machine (a faster runtime); never loads anything."""
        return []

    def queued(self) -> int:
        """Requests waiting in this backend's own scheduler for a slot (0 without one, or before it starts)."""
        scheduler = self._scheduler
        return scheduler.waiting if scheduler is not None else 0

    def scheduler(self) -> Scheduler:
        """The one loop that decodes for every caller of this backend, made on first use around the backend's
        ``_new_decoder()``; a backend that schedules has a ``_lock``."""
        with self._lock:  # type: ignore[attr-defined]
            if self._scheduler is None:
                from adam.backends.scheduler import Scheduler

                decoder, slots = self._new_decoder()
                self._scheduler = Scheduler(decoder, batch_slots=slots, name=f"adam-{self.name}")
            return self._scheduler

    def _new_decoder(self) -> tuple[Any, int]:
        """(the decoder the scheduler steps, how many batch rows it runs at once): a backend that schedules has one."""
        raise NotImplementedError(f"the {self.name} backend has no scheduler")

    def _stop_scheduler(self) -> None:
        """Close the scheduler's loop, if one started (a backend that schedules calls it under its own lock)."""
        if self._scheduler is not None:
            self._scheduler.close()
            self._scheduler = None

    def load(self) -> None:
        """Load the model now instead of on first use."""

    def close(self) -> None:
        """Release what the backend holds (clients, threads)."""

    def export_weights(self) -> WeightsLocation:
        """Where this backend's weights are on disk, for model sharing."""
        raise UnsupportedError(f"the {self.name} backend has no weights on disk to share")

    # ----------------------------------------------------------------- primitives
    @abstractmethod
    def _generate_batch(self, requests: Sequence[GenerationRequest]) -> Sequence[Generation]:
        """Generate for every request, in order; raise BackendError if the batch fails."""

    def _embed_batch(self, texts: Sequence[str]) -> Sequence[Embedding]:
        """Embed every text, in order; raise BackendError if the batch fails."""
        raise UnsupportedError(f"the {self.name} backend cannot embed text")

    def _stream_raw(self, request: GenerationRequest) -> Iterator[StreamChunk]:
        """Raw model text as it is produced (thinking tags and stop strings still in); the last
        chunk carries the finish reason and token counts."""
        gen = self._generate_batch([request])[0]
        yield StreamChunk(gen.text, "", gen.finish_reason, gen.prompt_tokens, gen.completion_tokens)

    def _stream(self, request: GenerationRequest, priority: Priority = Priority.interactive) -> Iterator[StreamChunk]:
        """Stream via _stream_raw, cutting stop strings and thinking exactly as generate() does."""
        assembler = StreamAssembler(request.stop, self.opens_thinking(request))
        raws = self._stream_raw(request, priority=priority) if self.schedules else self._stream_raw(request)  # type: ignore[call-arg]
        with contextlib.closing(raws):  # a stop string hit gives the slot back at once
            for raw in raws:
                chunk = assembler.feed(raw)
                if chunk.text or chunk.thinking:
                    yield chunk
                if assembler.stopped:
                    break
        yield assembler.close()

    # ----------------------------------------------------------------- helpers
    def _isolate(self, items: list[T], batch_fn: Callable[[list[T]], Sequence[Any]]) -> list[Any]:
        """Run a batch; if it fails, run its items one at a time so only the bad ones fail."""
        if not items:
            return []
        try:
            return list(batch_fn(items))
        except BackendError as err:
            if len(items) == 1:
                return [err]
            log.warning("batch of %d failed (%s); retrying its records one at a time", len(items), err)
        results: list[Any] = []
        for item in items:
            try:
                results.extend(batch_fn([item]))
            except BackendError as err:
                results.append(err)
        return results


def truncate_dimensions(result: Any, dimensions: int) -> Any:
    """Keep the first ``dimensions`` of an embedding and re-normalise (Matryoshka models such as Qwen3-Embedding)."""
    if not isinstance(result, Embedding) or len(result.vector) <= dimensions:
        return result
    import numpy as np

    head = np.asarray(result.vector[:dimensions], dtype=np.float32)
    norm = float(np.linalg.norm(head))
    return Embedding(head / norm if norm > 0 else head, result.tokens, result.truncated)


def finish_generation(
    raw: str,
    request: GenerationRequest,
    *,
    finish_reason: str,
    prompt_tokens: int,
    completion_tokens: int,
    thinking_open: bool = False,
    logprobs: list[dict[str, Any]] | None = None,
) -> Generation:
    """Apply stop strings and split thinking from the answer, the same way for every backend."""
    text, thinking, hit_stop = finish_text(raw, request.stop, thinking_open)
    reason = "stop" if hit_stop else finish_reason
    return Generation(text, thinking, prompt_tokens, completion_tokens, reason, logprobs)


def plan_batches(lengths: Sequence[int], batch_size: int, token_budget: int | None = None) -> list[list[int]]:
    """Indices grouped into batches of similar length, longest first.

    A batch holds at most ``batch_size`` items and, when ``token_budget`` is set, at most that many
    padded tokens (items x longest item), so short inputs share big batches and long ones small ones.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        longest_if_added = max(longest, lengths[i], 1)
        too_many = len(current) >= batch_size
        over_budget = token_budget is not None and current and longest_if_added * (len(current) + 1) > token_budget
        if current and (too_many or over_budget):
            batches.append(current)
            current, longest_if_added = [], max(lengths[i], 1)
        current.append(i)
        longest = longest_if_added
    if current:
        batches.append(current)
    return batches
