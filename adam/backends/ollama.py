"""The Ollama backend: generation, streaming and embeddings on an Ollama server via the official client.

The server does the model work, so this backend only shapes requests and replies. It sends
``num_ctx`` = the size's context length with every generation (Ollama's small default context
silently cuts long prompts), keeps up to ``concurrency`` requests in flight, and translates every
client error in one place (``_translate``): a missing model is a ModelNotFoundError with the pull
hint, 429/5xx and timeouts are retried with backoff, a refused connection is BackendUnavailable.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from adam.backends.base import Embedding, Generation, GenerationRequest, StreamChunk, finish_generation
from adam.backends.retry import TransientError
from adam.backends.server import ServerBackend, split_tokens
from adam.errors import AdamError, BackendError, BackendUnavailable, ConfigError, ModelNotFoundError, one_line
from adam.settings.config import PullPolicy

log = logging.getLogger(__name__)

__all__ = ["OllamaBackend", "normalise_host", "ollama_format", "split_tokens"]

DEFAULT_HOST = "http://127.0.0.1:11434"
DEFAULT_PORT = 11434
CHARS_PER_TOKEN = 4  # Ollama has no tokenize endpoint; count_tokens is this estimate


class OllamaBackend(ServerBackend):
    """Runs the size's ``ollama_tag`` on an Ollama server; ``hardware`` is the server's business."""

    name = "ollama"
    label = "Ollama"
    model_field = "ollama_tag"
    memory_modes = ("4bit",)  # Ollama's default tags are 4-bit (Q4_K_M) GGUFs
    supports_embeddings = True
    supports_streaming = True
    supports_json_schema = True  # Ollama's format (its own grammar sampler)
    supports_choice = True  # format {"enum": [...]}: the JSON string it answers is read back as the label

    def __init__(
        self,
        size: Any,
        hardware: Any = None,
        host: str | None = None,
        concurrency: int = 4,
        timeout: float = 300.0,
        keep_alive: str | float | None = None,
        pull: PullPolicy | str = PullPolicy.missing,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        dimensions: int | None = None,
        truncate: bool = True,
        share_store: str | None = None,
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
        if not self.size.ollama_tag:
            raise ConfigError(
                f"size={self.size.name} has no Ollama model; pick a size with an ollama_tag "
                f"({', '.join(_sizes_with_ollama_tag()) or 'qwen3_small, ...'}) or set size.ollama_tag=<name:tag>"
            )
        if dimensions is not None and dimensions < 1:
            raise ConfigError(f"backend.dimensions must be at least 1 or null, not {dimensions}")
        try:
            self.pull_policy = PullPolicy(pull)
        except ValueError as err:
            raise ConfigError(f"backend.pull: {err} (missing | never | always)") from err
        self.model: str = self.size.ollama_tag
        self.host = normalise_host(host or os.environ.get("OLLAMA_HOST"))
        self.keep_alive = _keep_alive(keep_alive)
        self.dimensions = dimensions
        self.truncate = truncate
        self.share_store = share_store

    def declared_width(self) -> int | None:
        """backend.dimensions, when set: the server cuts every vector to it."""
        return self.dimensions

    # ----------------------------------------------------------------- generation
    def _generate_one(self, request: GenerationRequest) -> Generation:
        what, call = self._generation_call(request, stream=False)
        reply = self._call(what, call)
        text, thinking = _reply_text(reply)
        gen = finish_generation(
            text,
            request,
            finish_reason=_finish_reason(reply.done_reason),
            prompt_tokens=reply.prompt_eval_count or 0,
            completion_tokens=reply.eval_count or 0,
        )
        if thinking:  # Ollama parsed the thinking itself; it wins over any <think> tags left in the text
            gen.thinking = thinking
        if request.choice:
            gen.text = _label(gen.text)
        return gen

    def _generation_call(self, request: GenerationRequest, *, stream: bool) -> tuple[str, Callable[[], Any]]:
        """(what, call): /api/chat for messages, raw /api/generate for a prompt."""
        client = self._client()
        kwargs: dict[str, Any] = {
            "model": self.model,
            "stream": stream,
            "format": _choice_format(request.choice) if request.choice else ollama_format(request.response_format),
            "options": self._options(request),
            "keep_alive": self.keep_alive,
        }
        if request.prompt is not None:  # no chat template, so no thinking switch either
            return "generate", lambda: client.generate(prompt=request.prompt, raw=True, **kwargs)
        messages = [_message(m) for m in request.messages]
        return "chat", lambda: client.chat(messages=messages, think=request.thinking, **kwargs)

    def _options(self, request: GenerationRequest) -> dict[str, Any]:
        options: dict[str, Any] = {
            "num_ctx": self.context_window(),  # the YaRN length when size.long_context is on
            "num_predict": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
        }
        if request.seed is not None:
            options["seed"] = request.seed
        if request.stop:
            options["stop"] = list(request.stop)
        return options

    # ----------------------------------------------------------------- streaming
    def _stream_raw(self, request: GenerationRequest) -> Iterator[StreamChunk]:
        what, call = self._generation_call(request, stream=True)
        for part in self._open_stream(what, call):
            text, thinking = _reply_text(part)
            if part.done:
                reason = _finish_reason(part.done_reason)
                yield StreamChunk(text, thinking or "", reason, part.prompt_eval_count or 0, part.eval_count or 0)
                return
            yield StreamChunk(text, thinking or "")
        raise BackendError(f"the Ollama {what} stream ended before the server said it was done")

    # ----------------------------------------------------------------- embeddings
    def _embed_batch(self, texts: Sequence[str]) -> list[Embedding]:
        import numpy as np

        client = self._client()
        reply = self._call(
            "embed",
            lambda: client.embed(
                model=self.model,
                input=list(texts),
                truncate=self.truncate,
                dimensions=self.dimensions,
                keep_alive=self.keep_alive,
            ),
        )
        if len(reply.embeddings) != len(texts):
            raise BackendError(f"Ollama embed returned {len(reply.embeddings)} vectors for {len(texts)} texts")
        try:  # one array per text: a ragged reply is judged vector by vector (by the job), not all at once
            with np.errstate(over="ignore"):  # a value past float32 becomes inf, which the job refuses
                vectors = [np.asarray(v, dtype=np.float32).ravel() for v in reply.embeddings]
        except (TypeError, ValueError) as err:
            raise BackendError(f"Ollama embed returned vectors that are not lists of numbers: {err}") from err
        for i, vector in enumerate(vectors):
            norm = float(np.linalg.norm(vector))
            if math.isfinite(norm) and norm > 0 and abs(norm - 1.0) > 1e-3:  # older servers may not normalise
                vectors[i] = vector / norm
        tokens = split_tokens(reply.prompt_eval_count, texts, self.count_tokens)
        return [Embedding(vector, count, truncated=False) for vector, count in zip(vectors, tokens, strict=True)]

    # ----------------------------------------------------------------- the model on the server
    def count_tokens(self, text: str) -> int:
        """An estimate (about 4 characters a token): Ollama has no tokenize endpoint."""
        return math.ceil(len(text) / CHARS_PER_TOKEN)

    def info(self) -> dict[str, Any]:
        """Backend, host, model tag and context; family, size, quantization and digest when the server has it."""
        out: dict[str, Any] = {
            "backend": self.name,
            "host": self.host,
            "model": self.model,
            "kind": self.size.kind.value,
            "context_length": self.context_window(),
        }
        client = self._client()
        try:
            shown = self._call("show", lambda: client.show(self.model))
            listed = self._call("list", client.list)
        except AdamError as err:
            log.debug("no model details from Ollama: %s", err)
            return out
        details = shown.details
        if details is not None:
            for key in ("family", "parameter_size", "quantization_level", "format"):
                if getattr(details, key, None):
                    out[key] = getattr(details, key)
        digests = [m.digest for m in listed.models if m.model and _same_model(m.model, self.model)]
        if digests and digests[0]:
            out["digest"] = digests[0]
        return out

    def reach(self) -> None:
        """Ask the server for its models: a server that does not answer raises BackendUnavailable."""
        client = self._client()
        self._call("list", client.list)  # a refused connection becomes BackendUnavailable here

    def check_available(self) -> None:
        """Reach the server, then make sure it has the model, pulling it as ``pull`` says."""
        self.reach()
        if self.pull_policy is PullPolicy.always:
            self.pull()
        elif not self.has_model():
            if self.pull_policy is PullPolicy.never:
                raise ModelNotFoundError(self._missing_hint())
            self.pull()

    def has_model(self) -> bool:
        """Whether the server has the model now."""
        client = self._client()
        try:
            self._call("show", lambda: client.show(self.model))
        except ModelNotFoundError:
            return False
        return True

    def load(self) -> None:
        """Load the model into the server's memory now (a generate call with no prompt)."""
        client = self._client()
        self._call("load", lambda: client.generate(model=self.model, keep_alive=self.keep_alive))

    def pull(self) -> None:
        """Put the model on the server: created from the shared store when adam shared it, else pulled."""
        from adam.sharing.ollama_server import OllamaModels

        OllamaModels(self).pull()

    # ----------------------------------------------------------------- client, errors, threads
    def _make_client(self) -> Any:
        import ollama

        return ollama.Client(host=self.host, timeout=self.timeout)

    def _translate(self, err: Exception, what: str) -> AdamError | None:
        """The AdamError a client error means, or None for errors that are not the server's."""
        import httpx
        import ollama

        if isinstance(err, ollama.ResponseError):
            status, reason = err.status_code, one_line(str(err.error))
            if status == 404 and "model" in reason.lower():
                return ModelNotFoundError(self._missing_hint())
            if status < 0:  # no HTTP status: an error line inside a 200 stream
                return BackendError(f"Ollama {what} failed mid-stream: {reason}")
            if status == 429 or status >= 500:
                return TransientError(f"Ollama {what} failed: {reason} (HTTP {status})")
            return BackendError(f"Ollama {what} failed: {reason} (HTTP {status})")
        if isinstance(err, httpx.TimeoutException):
            return TransientError(f"Ollama {what} timed out after {self.timeout:g}s ({type(err).__name__})")
        if isinstance(err, ConnectionError | httpx.ConnectError):
            return BackendUnavailable(
                f"no Ollama server at {self.host}: start it with `ollama serve` or set backend.host"
            )
        if isinstance(err, httpx.TransportError):  # reset or closed mid-reply: the server may be restarting
            return TransientError(f"Ollama {what} lost the connection: {one_line(str(err)) or type(err).__name__}")
        if isinstance(err, ValueError | ollama.RequestError):  # unparsable or unexpected reply
            return BackendError(f"unexpected reply to Ollama {what}: {one_line(str(err))}")
        return None

    def _missing_hint(self) -> str:
        return (
            f"model {self.model} is not on the Ollama server at {self.host}: "
            f"run `ollama pull {self.model}`, or set backend.pull=missing"
        )


# --------------------------------------------------------------------- helpers
def normalise_host(host: str | None) -> str:
    """``scheme://host:port[/path]`` from a URL, ``host:port`` or bare host, read as ollama-python reads OLLAMA_HOST."""
    raw = (host or "").strip()
    if not raw:
        return DEFAULT_HOST
    scheme, sep, _ = raw.partition("://")
    if not sep:
        scheme, raw = "http", f"http://{raw}"
    default_port = {"http": 80, "https": 443}.get(scheme, DEFAULT_PORT) if sep else DEFAULT_PORT
    split = urlsplit(raw)
    name = split.hostname or "127.0.0.1"
    if ":" in name:  # IPv6 literal
        name = f"[{name}]"
    try:
        port = split.port or default_port
    except ValueError as err:
        raise ConfigError(f"backend.host {host!r} has a bad port: {err}") from err
    path = split.path.rstrip("/")
    return f"{scheme}://{name}:{port}{path}"


def ollama_format(response_format: Mapping[str, Any] | None) -> str | dict[str, Any] | None:
    """Ollama's ``format`` for an OpenAI ``response_format`` or a bare JSON schema."""
    if not response_format:
        return None
    kind = response_format.get("type")
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        if not isinstance(schema, Mapping):
            raise BackendError("response_format type json_schema needs json_schema.schema, a JSON schema object")
        return dict(schema)
    if kind == "json_object":
        return "json"
    if kind == "text":
        return None
    return dict(response_format)  # a JSON schema itself


def _choice_format(choice: Sequence[str]) -> dict[str, Any]:
    """Ollama's format for a list of labels: a JSON string that is one of them."""
    return {"type": "string", "enum": list(choice)}


def _label(text: str) -> str:
    """The label of a choice answer, which Ollama writes as a JSON string (as it came where it is not one)."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, str) else text


def _reply_text(reply: Any) -> tuple[str, str | None]:
    """(text, server thinking) of a chat or generate reply or stream part."""
    message = getattr(reply, "message", None)
    if message is not None:
        return message.content or "", message.thinking or None
    return reply.response or "", reply.thinking or None


def _finish_reason(done_reason: str | None) -> str:
    return "length" if done_reason == "length" else "stop"


def _message(message: Mapping[str, Any]) -> dict[str, Any]:
    """An Ollama chat message: role and text (OpenAI content parts joined)."""
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, Mapping) and p.get("type") == "text")
    return {"role": message["role"], "content": content or ""}


def _same_model(listed: str, wanted: str) -> bool:
    def full(name: str) -> str:
        return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"

    return full(listed) == full(wanted)


def _keep_alive(value: str | float | None) -> str | float | None:
    """Seconds as a number (a unitless string is not a Go duration to Ollama); "5m" and the like as they are."""
    if isinstance(value, str) and re.fullmatch(r"-?\d+(\.\d+)?", value.strip()):
        return float(value)
    return value


def _sizes_with_ollama_tag() -> list[str]:
    """Sizes in conf/size whose YAML sets an ollama_tag (for the error hint)."""
    from importlib import resources

    import yaml

    from adam.settings import catalog
    from adam.settings.catalog import CONFIG_MODULE

    folder = resources.files(CONFIG_MODULE).joinpath("size")
    names = []
    for name in catalog.sizes():
        try:
            data = yaml.safe_load(folder.joinpath(f"{name}.yaml").read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            continue
        if data.get("ollama_tag"):
            names.append(name)
    return names
