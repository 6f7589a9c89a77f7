"""An OpenAI request body -> an Ask (what the engine is asked), read once for every door.

vLLM's batch runner hands a batch line's body to the server's own ``ChatCompletionRequest``; adam does the
same in its terms. The HTTP routes (adam/server/openai_routes.py), a Batch API line and a JSONL job's OpenAI
line (adam/io/record_parser.py) all call ``read_body``: the body is checked against the endpoint's JSON
Schema (adam/io/schemas/openai_{chat,completion,embedding}.json, the one description of its fields), what
adam cannot give is refused from one table (UNSUPPORTED), and each field is read here only:

- a message's text parts are joined with "\\n" (as vLLM joins them); ``developer`` is read as ``system``;
- ``max_completion_tokens`` wins over ``max_tokens``; ``stop`` is always a list; ``seed`` an int; ``ignore_eos``
  (vLLM's and llama.cpp's extension) keeps decoding past the end-of-sequence token;
- ``chat_template_kwargs.enable_thinking`` switches the thinking mode (Qwen3's switch, as vLLM takes it);
- ``response_format``, ``choice``, ``structured_outputs``, ``logprobs`` and ``top_logprobs`` are read by
  adam/protocol/structured.py (the engine asks the backend whether it can honour them); ``n`` must be 1;
- ``tools`` and ``echo`` are refused (a 400 naming the field) when they ask, and so is a text completion's
  ``logprobs``.

A refusal is ``Refused``: the request's own 400, with the same message and ``param`` at every door.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

from adam.io.validation import SchemaName, explain, load_schema
from adam.protocol.refused import Refused
from adam.protocol.structured import STRUCTURED, read_structured

Kind = Literal["generate", "embed"]
CHAT, COMPLETIONS, EMBEDDINGS = "/v1/chat/completions", "/v1/completions", "/v1/embeddings"
URLS: dict[Kind, tuple[str, ...]] = {"generate": (CHAT, COMPLETIONS), "embed": (EMBEDDINGS,)}
SCHEMAS: dict[str, SchemaName] = {CHAT: "openai_chat", COMPLETIONS: "openai_completion", EMBEDDINGS: "openai_embedding"}
# what a request may set: sampling, then structured output and log-probabilities (adam/protocol/structured.py)
PARAMS = ("max_tokens", "temperature", "top_p", "stop", "seed", "ignore_eos", *STRUCTURED)
_INT_PARAMS = frozenset({"max_tokens", "seed"})


# What a request may ask for that adam cannot give: each a 400 naming its field, decided here only. A field an
# endpoint's schema lacks is not asked. (Log-probabilities on a chat request are the answering backend's to give or
# refuse: the engine asks it; a text completion's ``logprobs`` is refused here.)
UNSUPPORTED: dict[str, tuple[Callable[[Any], bool], str]] = {
    "tools": (bool, "tools are not supported by this server"),
    "echo": (bool, "echo is not supported by this server"),
}
_COMPLETION_LOGPROBS = "log-probabilities are given on chat requests only (/v1/chat/completions)"


def refuse_unsupported(
    body: Mapping[str, Any], fields: Collection[str] | None = None, allowed: Collection[str] = ()
) -> None:
    """Raise Refused (code ``unsupported``) when ``body`` asks for something in UNSUPPORTED.

    ``fields``: the names the endpoint knows (its schema's properties); None: every name in the table.
    ``allowed``: names the model answering can give after all (a backend with log-probabilities).
    """
    for name, (asks, message) in UNSUPPORTED.items():
        if (fields is None or name in fields) and name not in allowed and asks(body.get(name)):
            raise Refused(message, param=name, code="unsupported")


@dataclass(frozen=True)
class Ask:
    """What one request body asks of the engine: its texts, the params a request may set, and how to answer."""

    endpoint: str
    model: str | None = None
    messages: list[dict[str, str]] | None = None  # chat
    texts: tuple[str, ...] = ()  # completions: each prompt; embeddings: each input
    params: dict[str, Any] = field(default_factory=dict)  # PARAMS that were set; None falls back to the job's
    thinking: bool | None = None  # chat_template_kwargs.enable_thinking; None: the job's
    stream: bool = False
    include_usage: bool = False  # stream_options.include_usage: a stream ends with a usage chunk
    dimensions: int | None = None  # embeddings: keep the first dimensions
    encoding_format: str = "float"  # embeddings: float or base64

    @property
    def kind(self) -> Kind:
        """The job that answers it."""
        return kind_of(self.endpoint)


def kind_of(endpoint: str) -> Kind:
    """The job an endpoint asks for."""
    return next(k for k, urls in URLS.items() if endpoint in urls)


def read_body(endpoint: str, body: Any, *, allowed: Collection[str] = ()) -> Ask:
    """The Ask of a request body for ``endpoint`` (one of SCHEMAS); Refused when adam cannot answer it as asked.

    ``allowed``: UNSUPPORTED names the answering model can give after all (see refuse_unsupported).
    """
    if not isinstance(body, dict):
        raise Refused("the body must be a JSON object", param=None)
    name = SCHEMAS[endpoint]
    found = explain(name, body)
    if found is not None:
        raise Refused(found[0], param=found[1])
    refuse_unsupported(body, known_fields(endpoint), allowed)
    if endpoint == COMPLETIONS and body.get("logprobs") is not None and "logprobs" not in allowed:
        raise Refused(_COMPLETION_LOGPROBS, param="logprobs", code="unsupported")
    model = body.get("model")
    common: dict[str, Any] = {"endpoint": endpoint, "model": model}
    if endpoint == EMBEDDINGS:
        return Ask(**common, texts=_texts(body["input"]), dimensions=_int(body.get("dimensions")),
                   encoding_format=body.get("encoding_format") or "float")  # fmt: skip
    params = params_of(body)
    if body.get("max_completion_tokens") is not None:
        params["max_tokens"] = int(body["max_completion_tokens"])
    options = body.get("stream_options") or {}
    common.update(params=params, stream=bool(body.get("stream")), include_usage=bool(options.get("include_usage")))
    if endpoint == COMPLETIONS:
        return Ask(**common, texts=_texts(body["prompt"]))
    return Ask(**common, messages=messages_of(body["messages"]), thinking=thinking_of(body))


@cache
def known_fields(endpoint: str) -> frozenset[str]:
    """The body fields adam reads for ``endpoint`` (its schema's properties); others are ignored."""
    return frozenset(load_schema(SCHEMAS[endpoint])["properties"])


def params_of(src: Mapping[str, Any]) -> dict[str, Any]:
    """The PARAMS of a validated body or record; unset (null) ones left out, stop always a list, ints as ints.

    Structured output and log-probabilities are read by read_structured (Refused when malformed).
    """
    params: dict[str, Any] = read_structured(src)
    for name in PARAMS:
        if name in STRUCTURED:
            continue
        value = src.get(name)
        if value is None:
            continue
        if name in _INT_PARAMS:
            value = int(value)  # JSON Schema counts 3.0 as an integer
        elif name == "stop":
            value = [value] if isinstance(value, str) else list(value)
        params[name] = value
    return params


def messages_of(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Validated chat messages as the engine takes them: text parts joined with "\\n", developer read as system."""
    out = []
    for msg in messages:
        content = msg.get("content")
        if isinstance(content, list):
            content = "\n".join(part["text"] for part in content)
        role = "system" if msg["role"] == "developer" else msg["role"]
        item = {"role": role, "content": content or ""}
        item.update({k: msg[k] for k in ("name", "tool_call_id") if k in msg})
        out.append(item)
    return out


def thinking_of(body: Mapping[str, Any]) -> bool | None:
    """chat_template_kwargs.enable_thinking of a validated body (or record); None: the job's setting."""
    kwargs = body.get("chat_template_kwargs") or {}
    value = kwargs.get("enable_thinking")
    return None if value is None else bool(value)


def _texts(value: str | list[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)
