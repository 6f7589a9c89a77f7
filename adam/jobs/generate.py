"""job=generate: one generation per input record, written to results.jsonl as batches finish."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from adam.backends.base import GenerationRequest
from adam.errors import BackendError
from adam.io.openai_batch import error_result, generation_result
from adam.io.records import Record
from adam.jobs.batching import BatchOutput, JobStats
from adam.jobs.context import JobContext
from adam.jobs.overflow import fit_prompt


def make_request(
    *,
    messages: Sequence[Mapping[str, Any]] | None = None,
    prompt: str | None = None,
    chat: bool = True,
    params: Mapping[str, Any] | None = None,
    defaults: Mapping[str, Any],
    system_prompt: str | None = None,
    thinking: bool = False,
) -> GenerationRequest:
    """A request from a record's own params, falling back to job settings, then the domain's.

    ``defaults`` holds max_tokens, temperature, top_p, stop and seed; a None there means unset.
    The domain system prompt is added only when the messages bring no system message of their own.
    """
    params = dict(params or {})

    def pick(key: str) -> Any:
        return params[key] if params.get(key) is not None else defaults.get(key)

    if chat:
        msgs = [dict(m) for m in messages] if messages is not None else [{"role": "user", "content": prompt or ""}]
        if system_prompt and not any(m.get("role") == "system" for m in msgs):
            msgs.insert(0, {"role": "system", "content": system_prompt})
        text_kwargs: dict[str, Any] = {"messages": tuple(msgs)}
    else:
        text_kwargs = {"prompt": prompt or ""}
    stop = pick("stop") or ()
    return GenerationRequest(
        **text_kwargs,
        max_tokens=int(pick("max_tokens")),
        temperature=float(pick("temperature")),
        top_p=float(pick("top_p")),
        stop=tuple([stop] if isinstance(stop, str) else stop),
        seed=pick("seed"),
        thinking=thinking,
        response_format=params.get("response_format"),
    )


def generation_defaults(job: Any, domain: Any) -> dict[str, Any]:
    """Job-level settings where set, else the domain's."""

    def first(*values: Any) -> Any:
        return next((v for v in values if v is not None), None)

    return {
        "max_tokens": first(job.max_tokens, domain.max_tokens),
        "temperature": first(job.temperature, domain.temperature),
        "top_p": first(job.top_p, domain.top_p),
        "stop": list(job.stop) or None,
        "seed": job.seed,
    }


def request_builder(ctx: JobContext) -> Callable[[Record], GenerationRequest]:
    """record -> backend request, with the job's settings read once (a config lookup costs microseconds)."""
    defaults = generation_defaults(ctx.job, ctx.domain)
    system_prompt = ctx.domain.system_prompt
    thinking = bool(ctx.job.thinking)

    def request_for(record: Record) -> GenerationRequest:
        return make_request(
            messages=record.messages,
            prompt=record.prompt,
            chat=record.chat,
            params=record.params,
            defaults=defaults,
            system_prompt=system_prompt,
            thinking=thinking,
        )

    return request_for


def run_generate(ctx: JobContext) -> JobStats:
    """Generate for every record of job.input."""
    backend, model = ctx.backend, ctx.model_name
    request_for = request_builder(ctx)

    truncate = str(ctx.job.get("overflow", "error")) == "truncate"
    truncated = 0

    def process(batch: Sequence[Record]) -> BatchOutput:
        nonlocal truncated
        out = BatchOutput()
        requests = []
        for record in batch:
            request, problem = fit_prompt(backend, request_for(record), truncate=truncate)
            if problem and problem != "truncated":
                out.errors.append(error_result(record, problem, code="context_overflow"))
                out.rejected += 1
            else:
                truncated += problem == "truncated"
                requests.append((record, request))
        batch = [record for record, _ in requests]
        results = backend.generate([request for _, request in requests]) if requests else []
        for record, result in zip(batch, results, strict=True):
            if isinstance(result, BackendError):
                out.errors.append(error_result(record, str(result), code="backend_error"))
            else:
                out.results.append(generation_result(record, result, model=model))
                out.tokens += result.completion_tokens
        return out

    stats = ctx.run_batches("generate", process)
    stats.extra["truncated"] = truncated
    return stats
