"""Result and error lines: adam's native shape, or the OpenAI Batch output shape for OpenAI-format input.

An OpenAI-format line looks like a line of an OpenAI Batch output file (and vLLM run-batch's
output): ``{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}``. A
request that fails is reported the way the API reports a failed request, with an HTTP status
and an error body, plus adam's own ``line`` so it can be found in the input.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from adam.backends.types import Embedding, Generation
from adam.io.records import InvalidRecord, Record
from adam.protocol.openai_bodies import body_of, chat_completion, embedding_list, text_completion, vector_to_list

ErrorCode = Literal[
    "invalid_input", "backend_error", "context_overflow", "invalid_output", "unsupported", "schema_mismatch"
]
_HTTP: dict[str, tuple[int, str]] = {
    "invalid_input": (400, "invalid_request_error"),
    "backend_error": (500, "server_error"),
    "context_overflow": (400, "invalid_request_error"),
    "invalid_output": (500, "server_error"),  # the backend answered with something adam will not write (a NaN vector)
    "unsupported": (400, "invalid_request_error"),  # the backend cannot honour the request (a schema, logprobs)
    "schema_mismatch": (500, "server_error"),  # native records only: an OpenAI line is answered as OpenAI answers
}
_NO_VALUE = object()


def generation_result(record: Record, gen: Generation, *, model: str, value: Any = _NO_VALUE) -> dict[str, Any]:
    """The results.jsonl line for one generation; ``value``: a JSON answer's parsed value (native lines: "json")."""
    usage = {
        "prompt_tokens": gen.prompt_tokens,
        "completion_tokens": gen.completion_tokens,
        "total_tokens": gen.prompt_tokens + gen.completion_tokens,
    }
    if record.format == "openai":  # the body its HTTP route answers with
        body = text_completion([gen], model) if record.url == "/v1/completions" else chat_completion(gen, model)
        return _batch_line(record.id, body_of(body))
    out: dict[str, Any] = {"id": record.id, "text": gen.text}
    if value is not _NO_VALUE:
        out["json"] = value
    if gen.thinking is not None:
        out["thinking"] = gen.thinking
    out.update(finish_reason=gen.finish_reason, usage=usage, model=model)
    if gen.logprobs is not None:
        out["logprobs"] = gen.logprobs
    return _with_passthrough(out, record)


def embedding_result(record: Record, emb: Embedding, *, model: str) -> dict[str, Any]:
    """The results.jsonl line for one embedding."""
    if record.format == "openai":  # the body its HTTP route answers with
        return _batch_line(record.id, body_of(embedding_list([emb.vector], emb.tokens, model)))
    vector = vector_to_list(emb.vector)
    out: dict[str, Any] = {
        "id": record.id,
        "embedding": vector,
        "usage": {"prompt_tokens": emb.tokens, "total_tokens": emb.tokens},
        "truncated": bool(emb.truncated),
        "model": model,
    }
    return _with_passthrough(out, record)


def error_result(
    record: Record | InvalidRecord,
    message: str,
    *,
    code: ErrorCode,
    kept: dict[str, Any] | None = None,
    param: str | None = None,
) -> dict[str, Any]:
    """The errors.jsonl line for a record that was rejected (invalid_input) or failed (backend_error).

    ``kept``: fields a native line keeps beside the error (a schema_mismatch's raw text and finish_reason).
    ``param``: the request field the error is about, in an OpenAI line's body (as the HTTP route names it).
    """
    if code not in _HTTP:
        raise ValueError(f"unknown error code {code!r}; use one of {', '.join(_HTTP)}")
    snippet = record.snippet if isinstance(record, InvalidRecord) else None
    if isinstance(record, InvalidRecord) and record.in_body:  # the request's own 400, as its HTTP route answers
        error = {"message": message, "type": "invalid_request_error", "param": record.param, "code": record.code}
        return refused_request(record, 400, error)
    if record.format == "openai":
        status, kind = _HTTP[code]
        out = refused_request(record, status, {"message": message, "type": kind, "param": param, "code": code})
    else:
        out = {"id": record.id, "line": record.line, "error": {"code": code, "message": message}, **(kept or {})}
    if snippet is not None:
        out["input"] = snippet
    return out


def refused_request(record: Record | InvalidRecord, status_code: int, error: dict[str, Any]) -> dict[str, Any]:
    """The errors.jsonl line for an OpenAI batch request answered with an error, as its HTTP route would answer it.

    ``error`` is the body's ``{"message", "type", "param", "code"}``; adam's own ``line`` is added.
    """
    out = _batch_line(record.id, {"error": error}, status_code=status_code)
    out["line"] = record.line
    return out


def _batch_line(custom_id: str | int | None, body: dict[str, Any], *, status_code: int = 200) -> dict[str, Any]:
    response = {"status_code": status_code, "request_id": uuid.uuid4().hex, "body": body}
    return {"id": f"batch_req_{uuid.uuid4().hex}", "custom_id": custom_id, "response": response, "error": None}


def _with_passthrough(out: dict[str, Any], record: Record) -> dict[str, Any]:
    if record.metadata is not None:
        out["metadata"] = record.metadata
    if record.extra:
        out["extra"] = record.extra
    return out
