"""Any OpenAI-compatible server (vLLM ``serve``, llama.cpp's server, SGLang, LM Studio, adam's own, a hosted API).

It talks through the official ``openai`` client with the client's own retries off: retries with
backoff, bounded concurrency and error translation are the ServerBackend's, as for Ollama. Chat
records go to ``/v1/chat/completions``, raw prompts to ``/v1/completions``, texts to
``/v1/embeddings`` (a whole batch in one request). There is no local tokenizer, so the server is
the judge of a prompt's length: its refusal becomes a ``context_overflow`` error line.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from adam.backends.base import Embedding, Generation, GenerationRequest, StreamChunk, finish_generation
from adam.backends.retry import TransientError
from adam.backends.server import ServerBackend, split_tokens
from adam.errors import AdamError, BackendError, BackendUnavailable, ConfigError, ContextOverflowError, one_line
from adam.settings.config import Thinking

log = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4  # no local tokenizer: count_tokens is this estimate, used for batching only
NO_KEY = "not-needed"  # local servers take any key, but the client insists on one
# What servers say when a prompt does not fit: vLLM, llama.cpp's server, llama-cpp-python, OpenAI
_TOO_LONG = ("maximum context length", "context length", "context_length_exceeded", "exceed", "too long")


class OpenAIBackend(ServerBackend):
    """Runs ``model`` on the server at ``base_url``; the size says which model and its context."""

    name = "openai"
    label = "OpenAI server"
    supports_embeddings = True
    supports_streaming = True
    supports_json_schema = True  # response_format passed through; every answer is still checked here
    supports_choice = True  # vLLM's structured_outputs.choice; a server that ignores it fails the check
    supports_ignore_eos = True  # sent as vLLM and llama.cpp's server take it; OpenAI itself refuses it (a 400)
    local_prompt_check = False  # no local tokenizer: the server's refusal becomes a context_overflow line

    def __init__(
        self,
        size: Any,
        hardware: Any = None,
        base_url: str = "http://127.0.0.1:8000/v1",
        model: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 8,
        timeout: float = 300.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        dimensions: int | None = None,
    ) -> None:
        super().__init__(
            size,
            hardware,
            concurrency=concurrency,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            max_backoff=max_backoff,
        )
        if not base_url or "://" not in base_url:
            raise ConfigError(f"backend.base_url must be a URL such as http://127.0.0.1:8000/v1, not {base_url!r}")
        if dimensions is not None and dimensions < 1:
            raise ConfigError(f"backend.dimensions must be at least 1 or null, not {dimensions}")
        self.base_url = base_url.rstrip("/")
        self.model = model or self.size.hf_id or self.size.name
        self.api_key_env = api_key_env
        self.dimensions = dimensions

    def declared_width(self) -> int | None:
        """backend.dimensions, when set: the server cuts every vector to it."""
        return self.dimensions

    # ----------------------------------------------------------------- generation
    def _generate_one(self, request: GenerationRequest) -> Generation:
        client = self._client()
        if request.prompt is not None:
            reply = self._call("completion", lambda: client.completions.create(**self._completion_args(request)))
            choice = reply.choices[0]
            text, thinking = choice.text or "", None
        else:
            reply = self._call("chat", lambda: client.chat.completions.create(**self._chat_args(request)))
            choice = reply.choices[0]
            text, thinking = choice.message.content or "", _reasoning(choice.message)
        usage = reply.usage
        gen = finish_generation(
            text,
            request,
            finish_reason=_finish_reason(choice.finish_reason),
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
        )
        if thinking:  # the server parsed the thinking itself; it wins over any <think> tags left in the text
            gen.thinking = thinking
        return gen

    def _common(self, request: GenerationRequest) -> dict[str, Any]:
        args: dict[str, Any] = {
            "model": self.model,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
        }
        if request.stop:
            args["stop"] = list(request.stop)
        if request.seed is not None:
            args["seed"] = request.seed
        extra: dict[str, Any] = {}
        if request.choice:
            extra["structured_outputs"] = {"choice": list(request.choice)}
        if request.ignore_eos:  # vLLM's and llama.cpp's server's own field; sent only when asked (OpenAI refuses it)
            extra["ignore_eos"] = True
        if extra:
            args["extra_body"] = extra
        return args

    def _chat_args(self, request: GenerationRequest, *, stream: bool = False) -> dict[str, Any]:
        args = {**self._common(request), "messages": [_message(m) for m in request.messages]}
        if request.response_format:
            args["response_format"] = dict(request.response_format)
        if request.thinking or self.size.thinking is Thinking.switch:
            # Qwen3's switch, as vLLM and SGLang take it; sent only where the model has one (OpenAI refuses it)
            switch = {"enable_thinking": bool(request.thinking)}
            args["extra_body"] = {**args.get("extra_body", {}), "chat_template_kwargs": switch}
        if stream:
            args.update(stream=True, stream_options={"include_usage": True})
        return args

    def _completion_args(self, request: GenerationRequest, *, stream: bool = False) -> dict[str, Any]:
        args = {**self._common(request), "prompt": request.prompt}
        if request.response_format:  # not in the openai client's completions signature; vLLM reads it
            args["extra_body"] = {**args.get("extra_body", {}), "response_format": dict(request.response_format)}
        if stream:
            args.update(stream=True, stream_options={"include_usage": True})
        return args

    # ----------------------------------------------------------------- streaming
    def _stream_raw(self, request: GenerationRequest) -> Iterator[StreamChunk]:
        client = self._client()
        if request.prompt is not None:
            what, open_call = (
                "completion",
                lambda: iter(client.completions.create(**self._completion_args(request, stream=True))),
            )
        else:
            what, open_call = (
                "chat",
                lambda: iter(client.chat.completions.create(**self._chat_args(request, stream=True))),
            )
        reason: str | None = None
        usage = None
        for part in self._open_stream(what, open_call):
            usage = part.usage or usage
            for choice in part.choices or ():
                if what == "chat":
                    delta = choice.delta
                    text, thinking = (delta.content or "") if delta else "", _reasoning(delta) if delta else None
                else:
                    text, thinking = choice.text or "", None
                if text or thinking:
                    yield StreamChunk(text, thinking or "")
                if choice.finish_reason:
                    reason = choice.finish_reason
        if reason is None:
            raise BackendError(f"the {self.label} {what} stream ended before the server said it was done")
        yield StreamChunk(
            "",
            "",
            _finish_reason(reason),
            usage.prompt_tokens if usage else 0,
            usage.completion_tokens if usage else 0,
        )

    # ----------------------------------------------------------------- embeddings
    def _embed_batch(self, texts: Sequence[str]) -> list[Embedding]:
        import numpy as np

        client = self._client()
        args: dict[str, Any] = {"model": self.model, "input": list(texts), "encoding_format": "float"}
        if self.dimensions is not None:
            args["dimensions"] = self.dimensions
        reply = self._call("embeddings", lambda: client.embeddings.create(**args))
        rows = sorted(reply.data, key=lambda d: d.index)
        if len(rows) != len(texts):
            raise BackendError(f"the {self.label} returned {len(rows)} embeddings for {len(texts)} texts")
        widths = {len(r.embedding) for r in rows}
        if len(widths) != 1:
            raise BackendError(f"the {self.label} returned embeddings of mixed widths {sorted(widths)}")
        vectors = np.asarray([r.embedding for r in rows], dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        if not np.allclose(norms, 1.0, atol=1e-3):  # adam's vectors are unit length; not every server's are
            vectors = vectors / np.where(norms > 0, norms, 1.0)
        total = reply.usage.prompt_tokens if reply.usage else None
        tokens = split_tokens(total, texts, self.count_tokens)
        return [Embedding(vector, count, truncated=False) for vector, count in zip(vectors, tokens, strict=True)]

    # ----------------------------------------------------------------- the server
    def count_tokens(self, text: str) -> int:
        """An estimate (about 4 characters a token): the tokenizer is on the server."""
        return math.ceil(len(text) / CHARS_PER_TOKEN)

    def info(self) -> dict[str, Any]:
        """Backend, server URL, model name and context; never the key."""
        return {
            "backend": self.name,
            "base_url": self.base_url,
            "model": self.model,
            "kind": self.size.kind.value,
            "context_length": self.context_window(),
        }

    def check_available(self) -> None:
        """Reach ``/v1/models`` and make sure the server serves the model."""
        client = self._client()
        listed = self._call("models", lambda: client.models.list())
        served = [m.id for m in getattr(listed, "data", None) or []]
        if served and self.model not in served:
            from adam.errors import ModelNotFoundError

            raise ModelNotFoundError(
                f"the {self.label} at {self.base_url} does not serve {self.model} (it serves "
                f"{', '.join(served[:5])}{', ...' if len(served) > 5 else ''}): set backend.model=<one of them>"
            )

    def _make_client(self) -> Any:
        import openai

        key = os.environ.get(self.api_key_env) or NO_KEY
        return openai.OpenAI(base_url=self.base_url, api_key=key, timeout=self.timeout, max_retries=0)

    def _translate(self, err: Exception, what: str) -> AdamError | None:
        """The AdamError an ``openai`` client error means, or None for errors that are not the server's."""
        import openai

        where = f"{self.label} {what}"
        if isinstance(err, openai.APITimeoutError):
            return TransientError(f"{where} timed out after {self.timeout:g}s")
        if isinstance(err, openai.APIConnectionError):
            cause = err.__cause__
            refused = isinstance(cause, ConnectionError) or "connect" in type(cause).__name__.lower()
            if refused:
                return BackendUnavailable(
                    f"no OpenAI-compatible server at {self.base_url}: start it (vllm serve, llama_cpp.server) "
                    "or set backend.base_url"
                )
            return TransientError(f"{where} lost the connection: {one_line(str(cause or err))}")
        if isinstance(err, openai.APIStatusError):
            status, reason = err.status_code, _error_text(err)
            if status in (401, 403):
                return BackendUnavailable(
                    f"{where} refused the key (HTTP {status}): set ${self.api_key_env} to the server's key"
                )
            if status == 404 and "model" in reason.lower():
                return BackendError(f"{where}: {reason} (HTTP 404); check backend.model")
            if status == 429 or status >= 500:
                return TransientError(f"{where} failed: {reason} (HTTP {status})")
            if status in (400, 413, 422) and any(word in reason.lower() for word in _TOO_LONG):
                return ContextOverflowError(f"the server refused the prompt as too long: {reason}")
            return BackendError(f"{where} failed: {reason} (HTTP {status})")
        if isinstance(err, openai.APIError):  # an error event inside a stream
            return BackendError(f"{where} failed mid-stream: {one_line(str(err))}")
        if isinstance(err, ValueError):
            return BackendError(f"unexpected reply to {where}: {one_line(str(err))}")
        return None


def _error_text(err: Any) -> str:
    """The server's own message from an error body ({"error": {"message": ...}} or {"error": "..."}), on one line."""
    body = getattr(err, "body", None)
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping):
            inner = inner.get("message") or inner
        if isinstance(inner, str):
            return one_line(inner)
    return one_line(str(getattr(err, "message", None) or err))


def _reasoning(message: Any) -> str | None:
    """Thinking a server split off itself: ``reasoning_content`` (vLLM, SGLang, DeepSeek) or ``reasoning``."""
    for key in ("reasoning_content", "reasoning"):
        value = getattr(message, key, None)
        if value is None:
            value = (getattr(message, "model_extra", None) or {}).get(key)
        if value:
            return str(value)
    return None


def _finish_reason(reason: str | None) -> str:
    return "length" if reason == "length" else "stop"


def _message(message: Mapping[str, Any]) -> dict[str, Any]:
    """A chat message as sent: role and content (content parts are passed through)."""
    return {"role": message["role"], "content": message.get("content") or ""}
