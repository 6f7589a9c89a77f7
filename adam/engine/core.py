"""The engine: every rule between a record and a backend, in one place for jobs, ModelManager and the server.

A job is reader -> engine -> writer; ModelManager and the HTTP server are thin faces over the same
engine. The engine resolves settings (record, then job, then domain), fits prompts into the
backend's one context window (or refuses them), adds query instructions for embedders, checks
vectors before they are written, and turns backend answers into result and error lines. It never
reads files or writes them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from adam.backends.base import Embedding, Generation, GenerationRequest, ModelBackend, Priority, StreamChunk
from adam.engine.fitting import fit_prompt, text_overflow
from adam.engine.settings import Settings
from adam.engine.vectors import VectorCheck
from adam.errors import (
    BackendError,
    BackendUnavailable,
    ContextOverflowError,
    InvalidOutputError,
    SchemaMismatchError,
    UnsupportedError,
    UnsupportedRequestError,
)
from adam.io.openai_batch import embedding_result, error_result, generation_result
from adam.io.records import Record
from adam.protocol.structured import check_output
from adam.settings.job_schemas import Overflow

log = logging.getLogger(__name__)

WIDTH_PROBE = "How wide are your vectors?"  # the one text embedded to learn a model's width, when nothing declares it
REMEMBERED_ANSWERS = 4096  # answers a job's engine keeps, so a request repeated in a later batch is not computed again


@dataclass
class Outcome:
    """What the engine made of a batch of records: result and error lines, with what the writers need."""

    results: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    tokens: int = 0  # generated tokens (generate) or input tokens (embed)
    rejected: int = 0  # how many of ``errors`` are the records' own problems (context overflow), not the backend's
    truncated: int = 0
    deduplicated: int = 0  # records answered with the answer of an identical request instead of their own call
    vectors: list[Any] = field(default_factory=list)  # embed: the float32 array of each result line, in order

    def fail(self, record: Record, err: BackendError) -> None:
        """Add ``record``'s error line for ``err`` (its code says what kind of failure)."""
        kept = None
        if isinstance(err, SchemaMismatchError) and isinstance(err.generation, Generation):
            gen = err.generation  # what was generated, so the line shows why it failed (cut short: "length")
            kept = {"text": gen.text, "finish_reason": gen.finish_reason}
            if gen.thinking is not None:
                kept["thinking"] = gen.thinking
        param = getattr(err, "param", None)
        self.errors.append(error_result(record, str(err), code=err.code, kept=kept, param=param))  # type: ignore[arg-type]
        self.rejected += isinstance(err, ContextOverflowError | UnsupportedRequestError)


class Engine:
    """Requests from records, answers into lines; built once per job, manager or server model."""

    def __init__(
        self,
        backend: ModelBackend,
        settings: Settings | None = None,
        *,
        model_name: str | None = None,
        vector_width: int | None = None,
        on_vector_width: Callable[[int], None] | None = None,
    ) -> None:
        self.backend = backend
        self.settings = settings or Settings()
        self.model_name = model_name or backend.size.name
        self._check = VectorCheck(vector_width, on_width=on_vector_width)  # one width for everything it embeds
        self._thinking_checked = False  # job.thinking on a model without a thinking mode: warned once
        self._answers: OrderedDict[str, Generation] = OrderedDict()  # generate(): by request_key
        if self.settings.response_format or self.settings.choice:  # the job's own constraint: refused before the run
            asked = self.settings.request(prompt="constraint check")
            problem = backend.request_problem(asked)
            if problem is not None:
                raise UnsupportedError(
                    f"{problem}: the job's constraint (job.response_format, job.schema or job.choice)"
                )

    @classmethod
    def from_config(cls, backend: ModelBackend, job: Any, domain: Any, **kwargs: Any) -> Engine:
        """An engine with the settings of a composed config's job and domain."""
        return cls(backend, Settings.from_config(job, domain), **kwargs)

    # ----------------------------------------------------------------- generation
    def request(self, **kwargs: Any) -> GenerationRequest:
        """A request from messages or a prompt and per-request params (see Settings.request)."""
        return self.settings.request(**kwargs)

    def request_for(self, record: Record) -> GenerationRequest:
        """The request a record asks for."""
        return self.settings.request(
            messages=record.messages, prompt=record.prompt, chat=record.chat, params=record.params,
            thinking=record.thinking,
        )  # fmt: skip

    def fit(self, request: GenerationRequest) -> tuple[GenerationRequest, BackendError | None, bool]:
        """(the request to send, the refusal of it, whether it was truncated): a constraint, log-probabilities or
        ignore_eos the backend cannot honour is refused in one line, a prompt over the context window under
        job.overflow."""
        if request.thinking and not self._thinking_checked:
            self._thinking_checked = True
            self._warn_without_thinking()
        if request.constrained or request.logprobs is not None or request.ignore_eos:
            problem = self.backend.request_problem(request)
            if problem is not None:
                return request, UnsupportedRequestError(problem, self.backend.refused_field(request)), False
        if not self.backend.local_prompt_check:  # no local tokenizer: the server refuses what does not fit
            return request, None, False
        fitted, problem = fit_prompt(self.backend, request, truncate=self.settings.overflow is Overflow.truncate)
        if problem == "truncated":
            return fitted, None, True
        return fitted, (ContextOverflowError(problem) if problem else None), False

    def _warn_without_thinking(self) -> None:
        if self.backend.has_thinking_mode() is False:
            log.warning(
                "job.thinking=true, but %s has no thinking mode (no enable_thinking switch or <think> in its chat "
                "template): it answers as it would without it",
                self.model_name,
            )

    def complete(
        self, requests: Sequence[GenerationRequest], *, priority: Priority = Priority.batch
    ) -> list[Generation | BackendError]:
        """Generate for requests (ModelManager, the server): each fitted first, a refusal in its place.

        ``priority``: the HTTP routes ask as interactive, so a backend's scheduler runs them before batch work."""
        out: list[Generation | BackendError | None] = []
        sent: list[tuple[int, GenerationRequest]] = []
        for request in requests:
            fitted, refused, _ = self.fit(request)
            out.append(refused)
            if refused is None:
                sent.append((len(out) - 1, fitted))
        answers = self.backend.generate([r for _, r in sent], priority=priority)
        for (index, _), result in zip(sent, answers, strict=True):
            out[index] = result
        return out  # type: ignore[return-value]

    def generate(self, records: Sequence[Record], *, priority: Priority = Priority.batch) -> Outcome:
        """One result or error line per record (jobs and Batch API lines: batch work, after interactive requests)."""
        outcome = Outcome()
        sent: list[tuple[Record, GenerationRequest]] = []
        for record in records:
            request, refused, truncated = self.fit(self.request_for(record))
            if refused is not None:
                outcome.fail(record, refused)
                continue
            outcome.truncated += truncated
            sent.append((record, request))
        results, outcome.deduplicated = self._generate_once([request for _, request in sent], priority)
        for (record, request), result in zip(sent, results, strict=True):
            if isinstance(result, BackendError):
                outcome.fail(record, result)
                continue
            outcome.tokens += result.completion_tokens
            extra: dict[str, Any] = {}
            if request.constrained:
                value, problem = check_output(
                    result.text, response_format=request.response_format, choice=request.choice
                )
                if problem is not None and record.format == "native":  # an OpenAI line is answered as OpenAI does
                    cut = " (cut short by max_tokens: raise it)" if result.finish_reason == "length" else ""
                    outcome.fail(record, SchemaMismatchError(problem + cut, result))
                    continue
                if problem is None and request.response_format:
                    extra["value"] = value
            outcome.results.append(generation_result(record, result, model=self.model_name, **extra))
        return outcome

    def _generate_once(
        self, requests: Sequence[GenerationRequest], priority: Priority
    ) -> tuple[list[Generation | BackendError], int]:
        """(an answer per request, how many were not computed): identical repeatable requests, in this batch or
        among the job's last REMEMBERED_ANSWERS answers, share one backend call and its answer."""
        keys = [request_key(r) or f"#{i}" for i, r in enumerate(requests)]  # '#i': its own call (JSON keys start '{')
        todo: dict[str, GenerationRequest] = {}
        for key, request in zip(keys, requests, strict=True):
            if key not in self._answers and key not in todo:
                todo[key] = request
        answers = self.backend.generate(list(todo.values()), priority=priority) if todo else []
        fresh = dict(zip(todo, answers, strict=True))
        out = [fresh[key] if key in fresh else self._answers[key] for key in keys]
        for key in keys:
            if key in self._answers:
                self._answers.move_to_end(key)
            elif isinstance(fresh.get(key), Generation) and not key.startswith("#"):  # an error is tried again later
                self._answers[key] = fresh[key]
        while len(self._answers) > REMEMBERED_ANSWERS:
            self._answers.popitem(last=False)
        return out, len(requests) - len(todo)

    def stream(self, request: GenerationRequest, *, priority: Priority = Priority.interactive) -> Iterator[StreamChunk]:
        """One generation in pieces; joined, it equals what complete() returns. Raises the overflow refusal."""
        fitted, refused, _ = self.fit(request)
        if refused is not None:
            raise refused
        if request.logprobs is not None:
            raise UnsupportedRequestError("log-probabilities are not streamed: ask for them without stream", "logprobs")
        return self.backend.stream(fitted, priority=priority)

    # ----------------------------------------------------------------- embeddings
    def query_prefix(self, task: str | None = None) -> str:
        """The text put before each query (Qwen3-Embedding's instruction with {task}); documents get none."""
        task = task if task is not None else self.settings.query_task
        if not task:
            return ""
        instruction = self.backend.size.query_instruction
        if not instruction:
            log.warning("a query task is set but this model has no query instruction (size.query_instruction)")
            return ""
        return instruction.replace("{task}", task)

    def embed_texts(
        self, texts: Sequence[str], *, query_task: str | None = None, truncate: bool | None = None
    ) -> list[Embedding | BackendError]:
        """Vectors for texts, in order: the query prefix added, overflow refused under job.overflow=error (or
        ``truncate=False``), every vector checked (finite, one width) before anyone writes it."""
        prefix = self.query_prefix(query_task)
        refuse = self.settings.overflow is Overflow.error if truncate is None else not truncate
        out: list[Embedding | BackendError | None] = []
        sent: list[tuple[int, str]] = []
        for text in texts:
            full = prefix + text
            problem = text_overflow(self.backend, full) if refuse else None
            out.append(ContextOverflowError(problem) if problem else None)
            if problem is None:
                sent.append((len(out) - 1, full))
        if sent and self._check.width is None:
            self._check.fix(self.model_width())  # the model's, before any vector is judged: never an outlier's
        for (index, _), result in zip(sent, self.backend.embed([t for _, t in sent]), strict=True):
            if isinstance(result, Embedding) and (problem := self._check.problem(result.vector)) is not None:
                result = InvalidOutputError(problem)
            out[index] = result
        return out  # type: ignore[return-value]

    def embed(self, records: Sequence[Record]) -> Outcome:
        """One result line (and its vector) or error line per record."""
        outcome = Outcome()
        for record, result in zip(records, self.embed_texts([r.text or "" for r in records]), strict=True):
            if isinstance(result, BackendError):
                outcome.fail(record, result)
                continue
            outcome.results.append(embedding_result(record, result, model=self.model_name))
            outcome.vectors.append(result.vector)
            outcome.tokens += result.tokens
            outcome.truncated += int(result.truncated)
        return outcome

    @property
    def vector_width(self) -> int | None:
        """The width every vector of this engine has (None until given or learned before the first embedding)."""
        return self._check.width

    def model_width(self) -> int:
        """The width of the model's vectors: declared by the backend (backend.dimensions), else probed once by
        embedding one short text. A probe that fails stops the run (BackendUnavailable): no vector could be judged."""
        declared = self.backend.embedding_width()
        if declared is not None:
            return declared
        (probe,) = self.backend.embed([WIDTH_PROBE])
        problem = str(probe) if isinstance(probe, BackendError) else VectorCheck().problem(probe.vector)
        if problem is not None:
            raise BackendUnavailable(f"cannot learn the vector width of {self.model_name} from a short text: {problem}")
        log.debug("%s embeds into %d dimensions", self.model_name, len(probe.vector))
        return len(probe.vector)

    def store_key(self, info: Mapping[str, Any]) -> str:
        """The model part of an embedding store's key: name, revision or file hash, kept dimensions, and the runtime
        where it is not torch (+onnx, +onnx-int8), so vectors of two runtimes never mix in one store."""
        key = str(info.get("model") or "unknown")
        pin = info.get("revision") or info.get("sha256")
        if pin:
            key += f"@{str(pin)[:16]}"
        if self.backend.size.dimensions:
            key += f"#{self.backend.size.dimensions}"
        runtime = info.get("runtime")
        if runtime and runtime != "torch":  # torch's keys stay as they were before runtimes existed
            key += f"+{runtime}"
            if info.get("quantization") not in (None, "none"):
                key += f"-{info['quantization']}"
        return key

    def content_sha(self, text: str, *, query_task: str | None = None) -> str:
        """sha256 of the exact text the model reads for ``text`` (prefix included)."""
        full = self.query_prefix(query_task) + text
        return hashlib.sha256(full.encode("utf-8", "surrogatepass")).hexdigest()


def request_key(request: GenerationRequest) -> str | None:
    """What makes two requests the same computation; None for one sampled without a seed (each call differs)."""
    if request.temperature > 0 and request.seed is None:
        return None
    return json.dumps(dataclasses.asdict(request), sort_keys=True, default=str)
