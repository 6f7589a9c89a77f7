"""Result and error lines: adam's native shape, or the OpenAI Batch output shape for OpenAI-format input.

An OpenAI-format line looks like a line of an OpenAI Batch output file (and vLLM run-batch's
output): ``{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}``. A
request that fails is reported the way the API reports a failed request, with an HTTP status
and an error body, plus adam's own ``line`` so it can be found in the input.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

import numpy as np

from adam.backends.types import Embedding, Generation
from adam.io.records import InvalidRecord, Record

ErrorCode = Literal["invalid_input", "backend_error", "context_overflow", "invalid_output"]
_HTTP: dict[str, tuple[int, str]] = {
    "invalid_input": (400, "invalid_request_error"),
    "backend_error": (500, "server_error"),
    "context_overflow": (400, "invalid_request_error"),
    "invalid_output": (500, "server_error"),  # the backend answered with something adam will not write (a NaN vector)
}


def generation_result(record: Record, gen: Generation, *, model: str) -> dict[str, Any]:
    """The results.jsonl line for one generation."""
    usage = {
        "prompt_tokens": gen.prompt_tokens,
        "completion_tokens": gen.completion_tokens,
        "total_tokens": gen.prompt_tokens + gen.completion_tokens,
    }
    if record.format == "openai":
        return _batch_line(record.id, _completion_body(record, gen, model, usage))
    out: dict[str, Any] = {"id": record.id, "text": gen.text}
    if gen.thinking is not None:
        out["thinking"] = gen.thinking
    out.update(finish_reason=gen.finish_reason, usage=usage, model=model)
    return _with_passthrough(out, record)


def embedding_result(record: Record, emb: Embedding, *, model: str) -> dict[str, Any]:
    """The results.jsonl line for one embedding."""
    vector = vector_to_list(emb.vector)
    if record.format == "openai":
        body = {
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": vector}],
            "model": model,
            "usage": {"prompt_tokens": emb.tokens, "total_tokens": emb.tokens},
        }
        return _batch_line(record.id, body)
    out: dict[str, Any] = {
        "id": record.id,
        "embedding": vector,
        "usage": {"prompt_tokens": emb.tokens, "total_tokens": emb.tokens},
        "truncated": bool(emb.truncated),
        "model": model,
    }
    return _with_passthrough(out, record)


def error_result(record: Record | InvalidRecord, message: str, *, code: ErrorCode) -> dict[str, Any]:
    """The errors.jsonl line for a record that was rejected (invalid_input) or failed (backend_error)."""
    if code not in _HTTP:
        raise ValueError(f"unknown error code {code!r}; use one of {', '.join(_HTTP)}")
    snippet = record.snippet if isinstance(record, InvalidRecord) else None
    if record.format == "openai":
        status, kind = _HTTP[code]
        out = refused_request(record, status, {"message": message, "type": kind, "param": None, "code": code})
    else:
        out = {"id": record.id, "line": record.line, "error": {"code": code, "message": message}}
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


def vector_to_list(vector: Any) -> list[float]:
    """A vector as JSON-ready floats; float32 values keep their shortest repr (about half the text)."""
    arr = np.asarray(vector).ravel()
    if arr.dtype.kind == "f" and arr.dtype.itemsize < 8:
        # numpy prints each float32 with the fewest digits that read back to the same float32
        return list(map(float, arr.astype(str).tolist()))
    return [float(x) for x in arr.tolist()]


def _completion_body(record: Record, gen: Generation, model: str, usage: dict[str, int]) -> dict[str, Any]:
    """A chat.completion, or a text_completion for /v1/completions requests."""
    created = int(time.time())
    if record.url == "/v1/completions":
        choice: dict[str, Any] = {"index": 0, "text": gen.text, "logprobs": None, "finish_reason": gen.finish_reason}
        return _body(f"cmpl-{uuid.uuid4().hex}", "text_completion", created, model, choice, usage)
    message = {"role": "assistant", "content": gen.text}
    if gen.thinking is not None:
        message["reasoning_content"] = gen.thinking
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": gen.finish_reason}
    return _body(f"chatcmpl-{uuid.uuid4().hex}", "chat.completion", created, model, choice, usage)


def _body(
    id_: str, kind: str, created: int, model: str, choice: dict[str, Any], usage: dict[str, int]
) -> dict[str, Any]:
    return {"id": id_, "object": kind, "created": created, "model": model, "choices": [choice], "usage": usage}


def _batch_line(custom_id: str | int | None, body: dict[str, Any], *, status_code: int = 200) -> dict[str, Any]:
    response = {"status_code": status_code, "request_id": uuid.uuid4().hex, "body": body}
    return {"id": f"batch_req_{uuid.uuid4().hex}", "custom_id": custom_id, "response": response, "error": None}


def _with_passthrough(out: dict[str, Any], record: Record) -> dict[str, Any]:
    if record.metadata is not None:
        out["metadata"] = record.metadata
    if record.extra:
        out["extra"] = record.extra
    return out
