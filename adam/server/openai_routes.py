"""The OpenAI API: /v1/chat/completions, /v1/completions, /v1/embeddings and /v1/models.

Each route is a pydantic request model, one call into the model's batcher and a pydantic response
model, shaped as the official ``openai`` client reads them. Streams are server-sent events ending in
``data: [DONE]``; with ``stream_options.include_usage`` a last chunk carries the token counts.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from adam.backends.base import Embedding, Generation, GenerationRequest, StreamChunk, truncate_dimensions
from adam.errors import AdamError, BackendError
from adam.server.bodies import RequestBody
from adam.server.errors import ApiError, error_body, from_adam_error
from adam.server.json_body import JsonBodyRoute
from adam.server.state import Served, state_of

router = APIRouter(route_class=JsonBodyRoute)  # a JSON body whatever its Content-Type
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


# --------------------------------------------------------------------- requests
class _Request(RequestBody):  # fields adam does not use (user, logit_bias, ...) are ignored
    model: str = Field(min_length=1)


class StreamOptions(BaseModel):
    include_usage: bool = False


class _Sampling(_Request):
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = Field(1, ge=1, le=1)  # one choice per request
    stream: bool = False
    stream_options: StreamOptions | None = None

    def params(self) -> dict[str, Any]:
        """The generation params a record may set; None falls back to the job's, then the domain's."""
        return {"max_tokens": self.max_tokens, "temperature": self.temperature, "top_p": self.top_p,
                "stop": self.stop, "seed": self.seed}  # fmt: skip

    @property
    def include_usage(self) -> bool:
        """Whether a stream ends with a usage chunk."""
        return bool(self.stream_options and self.stream_options.include_usage)


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None

    def as_dict(self) -> dict[str, str]:
        """The message as the engine takes it: role and text."""
        content = self.content
        if isinstance(content, list):
            if any(part.type != "text" for part in content):
                raise ApiError(400, "only text content parts are supported", param="messages")
            content = "".join(part.text or "" for part in content)
        return {"role": "system" if self.role == "developer" else self.role, "content": content or ""}


class ThinkingSwitch(BaseModel):
    enable_thinking: bool | None = None


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    response_format: dict[str, Any] | None = None
    chat_template_kwargs: ThinkingSwitch | None = None  # Qwen3's switch, as vLLM and SGLang take it
    tools: list[Any] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool = False
    logprobs: int | None = None  # 0 asks too: the sampled token's log-probability


class EmbeddingRequest(_Request):
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)


# What a request may ask for that this server cannot give yet: each a 400 naming its field, decided here only,
# so that log-probabilities (when the engine has them) are a line removed, and a protocol module can take the
# table over whole. A field absent from a request's model is not checked.
UNSUPPORTED: dict[str, tuple[Callable[[Any], bool], str]] = {
    "tools": (bool, "tools are not supported by this server"),
    "logprobs": (lambda v: v is not None and v is not False, "log-probabilities are not supported by this server"),
    "top_logprobs": (bool, "log-probabilities are not supported by this server"),
    "echo": (bool, "echo is not supported by this server"),
}


def refuse_unsupported(body: BaseModel) -> None:
    """400 (OpenAI's body, ``param`` naming the field) when ``body`` asks for something in UNSUPPORTED."""
    for name, (asks, message) in UNSUPPORTED.items():
        if name in type(body).model_fields and asks(getattr(body, name)):
            raise ApiError(400, message, code="unsupported", param=name)


# --------------------------------------------------------------------- responses
class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int = 0
    total_tokens: int

    @classmethod
    def of(cls, prompt: int, completion: int) -> Usage:
        """Counts and their sum."""
        return cls(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


class AssistantMessage(BaseModel):
    role: str = "assistant"
    content: str | None = None
    reasoning_content: str | None = None  # thinking, as vLLM and SGLang send it


class ChatChoice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: str


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class Delta(BaseModel):
    role: str | None = None
    content: str | None = None
    reasoning_content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta = Field(default_factory=Delta)
    finish_reason: str | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    finish_reason: str | None = None
    logprobs: None = None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class EmbeddingData(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str  # a base64 string of little-endian float32 with encoding_format=base64


class EmbeddingList(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingData]
    model: str
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "adam"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


# --------------------------------------------------------------------- routes
@router.get("/v1/models", response_model=ModelList)
async def list_models(request: Request) -> ModelList:
    """Every served model under its hub id (or size name)."""
    models = state_of(request).models
    return ModelList(data=[ModelCard(id=m.openai_id, created=m.created) for m in models])


@router.get("/v1/models/{model:path}", response_model=ModelCard)
async def get_model(model: str, request: Request) -> ModelCard:
    """One served model; 404 model_not_found for any other."""
    served = state_of(request).find(model)
    return ModelCard(id=served.openai_id, created=served.created)


@router.post("/v1/chat/completions", response_model=ChatCompletion, response_model_exclude_none=True)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
    """A chat answer, whole or as server-sent events."""
    served = state_of(request).for_generation(body.model)
    refuse_unsupported(body)
    params = {**body.params(), "response_format": body.response_format}
    params["max_tokens"] = body.max_completion_tokens or body.max_tokens
    thinking = body.chat_template_kwargs.enable_thinking if body.chat_template_kwargs else None
    gen_request = _request(served, messages=[m.as_dict() for m in body.messages], params=params, thinking=thinking)
    ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    if body.stream:
        chunks = await served.batcher.open_stream(gen_request)
        return _sse(_chat_events(served, ident, created, chunks, body.include_usage))
    result = await served.batcher.generate(gen_request)
    message = AssistantMessage(content=result.text, reasoning_content=result.thinking or None)
    return ChatCompletion(
        id=ident,
        created=created,
        model=served.openai_id,
        choices=[ChatChoice(message=message, finish_reason=result.finish_reason)],
        usage=Usage.of(result.prompt_tokens, result.completion_tokens),
    )


@router.post("/v1/completions", response_model=Completion, response_model_exclude_none=True)
async def completions(body: CompletionRequest, request: Request) -> Any:
    """Raw-prompt completions (no chat template); a list of prompts is answered in one batch."""
    served = state_of(request).for_generation(body.model)
    refuse_unsupported(body)
    prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise ApiError(400, "prompt must be a string or a non-empty list of strings (token ids are not supported)")
    requests = [_request(served, prompt=p, chat=False, params=body.params()) for p in prompts]  # type: ignore[arg-type]
    ident, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
    if body.stream:
        if len(requests) > 1:
            raise ApiError(400, "stream one prompt at a time", param="prompt")
        chunks = await served.batcher.open_stream(requests[0])
        return _sse(_completion_events(served, ident, created, chunks, body.include_usage))
    results = await _gather([served.batcher.generate(r) for r in requests])
    return Completion(
        id=ident,
        created=created,
        model=served.openai_id,
        choices=[CompletionChoice(index=i, text=g.text, finish_reason=g.finish_reason) for i, g in enumerate(results)],
        usage=Usage.of(sum(g.prompt_tokens for g in results), sum(g.completion_tokens for g in results)),
    )


@router.post("/v1/embeddings", response_model=EmbeddingList)
async def embeddings(body: EmbeddingRequest, request: Request) -> EmbeddingList:
    """Vectors for one text or many; encoding_format=base64 as the official client asks by default."""
    served = state_of(request).for_embeddings(body.model)
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not texts or not all(isinstance(t, str) for t in texts):
        raise ApiError(400, "input must be a string or a non-empty list of strings (token ids are not supported)")
    results = await served.batcher.embed(texts)  # type: ignore[arg-type]
    vectors = [_vector(r, body.dimensions) for r in results]
    data = [EmbeddingData(index=i, embedding=_encoded(v.vector, body.encoding_format)) for i, v in enumerate(vectors)]
    tokens = sum(v.tokens for v in vectors)
    return EmbeddingList(data=data, model=served.openai_id, usage=Usage.of(tokens, 0))


# --------------------------------------------------------------------- helpers
def _request(served: Served, **kwargs: Any) -> GenerationRequest:
    """The engine's request (job and domain defaults filled in); a malformed one is the client's 400."""
    try:
        return served.engine.request(**kwargs)
    except (ValueError, TypeError) as err:
        raise ApiError(400, f"invalid request: {err}") from err


async def _gather(calls: list[Any]) -> list[Generation]:
    """Await generations together (so they share a batch); the first error is raised."""
    return list(await asyncio.gather(*calls))


def _vector(result: Embedding | BackendError, dimensions: int | None) -> Embedding:
    if isinstance(result, BackendError):
        raise result
    if dimensions is not None:
        if dimensions > len(result.vector):
            raise ApiError(400, f"dimensions={dimensions} is more than the model's {len(result.vector)}")
        result = truncate_dimensions(result, dimensions)
    return result


def _encoded(vector: Any, encoding: str) -> list[float] | str:
    import numpy as np

    if encoding == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return [float(x) for x in vector]


def _sse(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream", headers=SSE_HEADERS)


def _data(doc: BaseModel | dict[str, Any]) -> str:
    text = doc.model_dump_json(exclude_none=True) if isinstance(doc, BaseModel) else json.dumps(doc)
    return f"data: {text}\n\n"


async def _events(
    chunks: AsyncIterator[StreamChunk],
    piece: Callable[[StreamChunk | None, str | None], BaseModel | None],
    usage_event: Callable[[Usage], BaseModel],
    include_usage: bool,
) -> AsyncIterator[str]:
    """The shared SSE loop: a piece per chunk, the finishing piece, usage on request, [DONE]; errors as events."""
    reason, last = "stop", StreamChunk()
    try:
        async for chunk in chunks:
            if chunk.text or chunk.thinking:
                event = piece(chunk, None)
                if event is not None:
                    yield _data(event)
            if chunk.finish_reason:
                reason, last = chunk.finish_reason, chunk
    except AdamError as err:
        error = from_adam_error(err)
        yield _data(error_body("/v1", error.status, error.message, error.code))
        return
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]
    final = piece(None, reason)
    if final is not None:
        yield _data(final)
    if include_usage:
        yield _data(usage_event(Usage.of(last.prompt_tokens or 0, last.completion_tokens or 0)))
    yield "data: [DONE]\n\n"


async def _chat_events(
    served: Served, ident: str, created: int, chunks: AsyncIterator[StreamChunk], include_usage: bool
) -> AsyncIterator[str]:
    def event(choices: list[ChunkChoice], usage: Usage | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(id=ident, created=created, model=served.openai_id, choices=choices, usage=usage)

    def piece(chunk: StreamChunk | None, reason: str | None) -> ChatCompletionChunk:
        if chunk is None:
            return event([ChunkChoice(finish_reason=reason)])
        delta = Delta(content=chunk.text or None, reasoning_content=chunk.thinking or None)
        return event([ChunkChoice(delta=delta)])

    yield _data(event([ChunkChoice(delta=Delta(role="assistant", content=""))]))
    async for line in _events(chunks, piece, lambda usage: event([], usage), include_usage):
        yield line


async def _completion_events(
    served: Served, ident: str, created: int, chunks: AsyncIterator[StreamChunk], include_usage: bool
) -> AsyncIterator[str]:
    def event(choices: list[CompletionChoice], usage: Usage | None = None) -> Completion:
        return Completion(id=ident, created=created, model=served.openai_id, choices=choices, usage=usage)

    def piece(chunk: StreamChunk | None, reason: str | None) -> Completion | None:
        if chunk is None:
            return event([CompletionChoice(text="", finish_reason=reason)])
        return event([CompletionChoice(text=chunk.text)]) if chunk.text else None

    async for line in _events(chunks, piece, lambda usage: event([], usage), include_usage):
        yield line
