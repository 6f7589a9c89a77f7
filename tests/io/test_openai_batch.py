"""Result and error lines in the native and the OpenAI Batch output shapes."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from adam.backends.types import Embedding, Generation
from adam.io.openai_batch import embedding_result, error_result, generation_result, vector_to_list
from adam.io.records import InvalidRecord, Record

GEN = Generation(text="Berlin.", prompt_tokens=7, completion_tokens=2, finish_reason="stop")
HEX32 = re.compile(r"[0-9a-f]{32}")


def _openai(url: str, **kwargs: object) -> Record:
    return Record(line=4, id="req-1", format="openai", url=url, **kwargs)  # type: ignore[arg-type]


def _check_batch_envelope(line: dict, custom_id: object, status: int) -> dict:
    assert set(line) >= {"id", "custom_id", "response", "error"}
    assert line["id"].startswith("batch_req_") and HEX32.fullmatch(line["id"].removeprefix("batch_req_"))
    assert line["custom_id"] == custom_id and line["error"] is None
    assert line["response"]["status_code"] == status and HEX32.fullmatch(line["response"]["request_id"])
    return line["response"]["body"]


def test_native_generation_result() -> None:
    record = Record(line=1, id="a", prompt="capital?", metadata={"k": 1}, extra={"team": "x"})
    assert generation_result(record, GEN, model="tiny") == {
        "id": "a",
        "text": "Berlin.",
        "finish_reason": "stop",
        "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9},
        "model": "tiny",
        "metadata": {"k": 1},
        "extra": {"team": "x"},
    }


def test_native_generation_result_with_thinking_and_nothing_passed_through() -> None:
    gen = Generation(text="4", thinking="2+2", prompt_tokens=3, completion_tokens=5, finish_reason="length")
    out = generation_result(Record(line=2, id=2, prompt="2+2?"), gen, model="m")
    assert list(out) == ["id", "text", "thinking", "finish_reason", "usage", "model"]
    assert (out["thinking"], out["finish_reason"], out["usage"]["total_tokens"]) == ("2+2", "length", 8)


def test_openai_chat_completion_line() -> None:
    out = generation_result(
        _openai("/v1/chat/completions", messages=[{"role": "user", "content": "q"}]), GEN, model="m"
    )
    body = _check_batch_envelope(out, "req-1", 200)
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert isinstance(body["created"], int) and body["model"] == "m"
    assert body["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": "Berlin."}, "logprobs": None, "finish_reason": "stop"}
    ]
    assert body["usage"] == {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}


def test_openai_chat_completion_carries_thinking_as_reasoning_content() -> None:
    gen = Generation(text="4", thinking="2+2 is 4", prompt_tokens=1, completion_tokens=1)
    out = generation_result(
        _openai("/v1/chat/completions", messages=[{"role": "user", "content": "q"}]), gen, model="m"
    )
    message = out["response"]["body"]["choices"][0]["message"]
    assert message == {"role": "assistant", "content": "4", "reasoning_content": "2+2 is 4"}


def test_openai_text_completion_line() -> None:
    out = generation_result(_openai("/v1/completions", prompt="Once", chat=False), GEN, model="m")
    body = _check_batch_envelope(out, "req-1", 200)
    assert body["object"] == "text_completion" and body["id"].startswith("cmpl-")
    assert body["choices"] == [{"index": 0, "text": "Berlin.", "logprobs": None, "finish_reason": "stop"}]


def test_native_and_openai_embedding_lines() -> None:
    vec = np.array([0.1, -2.5, 1e-8], dtype=np.float32)
    native = embedding_result(
        Record(line=1, id="d", text="t", metadata=[1]), Embedding(vec, tokens=3, truncated=True), model="e"
    )
    assert native == {
        "id": "d",
        "embedding": [0.1, -2.5, 1e-8],
        "usage": {"prompt_tokens": 3, "total_tokens": 3},
        "truncated": True,
        "model": "e",
        "metadata": [1],
    }
    out = embedding_result(_openai("/v1/embeddings", text="t"), Embedding(vec, tokens=3), model="e")
    body = _check_batch_envelope(out, "req-1", 200)
    assert body == {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.1, -2.5, 1e-8]}],
        "model": "e",
        "usage": {"prompt_tokens": 3, "total_tokens": 3},
    }


def test_float32_vectors_round_trip_exactly_through_json() -> None:
    vec = np.random.default_rng(0).standard_normal(512).astype(np.float32)
    back = np.array(json.loads(json.dumps(vector_to_list(vec))), dtype=np.float32)
    assert np.array_equal(back, vec)
    wide = np.array([0.1, 1 / 3])
    assert vector_to_list(wide) == [0.1, 1 / 3]  # float64 keeps full precision


def test_native_error_lines() -> None:
    invalid = InvalidRecord(line=3, id=None, message="not valid JSON: ...", snippet="{oops")
    assert error_result(invalid, invalid.message, code="invalid_input") == {
        "id": None,
        "line": 3,
        "error": {"code": "invalid_input", "message": "not valid JSON: ..."},
        "input": "{oops",
    }
    failed = error_result(Record(line=9, id="x", prompt="p"), "out of memory", code="backend_error")
    assert failed == {"id": "x", "line": 9, "error": {"code": "backend_error", "message": "out of memory"}}


def test_openai_error_lines_look_like_failed_api_requests() -> None:
    invalid = InvalidRecord(line=5, id=None, message="missing 'custom_id'", format="openai", snippet='{"url": 1}')
    out = error_result(invalid, invalid.message, code="invalid_input")
    body = _check_batch_envelope(out, None, 400)
    assert body == {
        "error": {
            "message": "missing 'custom_id'",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_input",
        }
    }
    assert (out["line"], out["input"]) == (5, '{"url": 1}')

    failed = error_result(_openai("/v1/chat/completions", messages=[]), "model crashed", code="backend_error")
    body = _check_batch_envelope(failed, "req-1", 500)
    assert body["error"]["type"] == "server_error" and body["error"]["code"] == "backend_error"
    assert failed["line"] == 4 and "input" not in failed


def test_unknown_error_code_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown error code"):
        error_result(Record(line=1, id=1, prompt="p"), "x", code="oops")  # type: ignore[arg-type]
