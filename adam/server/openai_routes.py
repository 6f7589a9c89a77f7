"""The OpenAI API: /v1/chat/completions, /v1/completions, /v1/embeddings and /v1/models.

Each route reads its body with adam.protocol.openai (as a Batch API line and a JSONL job's OpenAI line are
read: the same fields, the same refusals), makes one call into the model's batcher and answers with
adam.protocol.openai_bodies' models, shaped as the official ``openai`` client reads them. Streams are
server-sent events ending in ``data: [DONE]``; with ``stream_options.include_usage``
a last chunk carries the token counts.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict

from adam.backends.base import Embedding, Generation, GenerationRequest, StreamChunk, truncate_dimensions
from adam.errors import AdamError, BackendError
from adam.protocol.bodies import RequestBody
from adam.protocol.openai import CHAT, COMPLETIONS, EMBEDDINGS, Ask, Refused, read_body
from adam.protocol.openai_bodies import (
    ChatCompletion,
    ChatCompletionChunk,
    ChunkChoice,
    Completion,
    CompletionChoice,
    Delta,
    EmbeddingList,
    ModelCard,
    ModelList,
    Usage,
    chat_completion,
    chat_id,
    completion_id,
    embedding_list,
    text_completion,
)
from adam.server.errors import ApiError, error_body, from_adam_error
from adam.server.json_body import JsonBodyRoute
from adam.server.state import Served, state_of

router = APIRouter(route_class=JsonBodyRoute)  # a JSON body whatever its Content-Type
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


# --------------------------------------------------------------------- requests
class OpenAIBody(RequestBody):
    """A request body as JSON (lone surrogates refused by RequestBody); adam.protocol.openai reads its fields."""

    model_config = ConfigDict(extra="allow")


def read(endpoint: str, body: OpenAIBody) -> Ask:
    """The body's Ask; the protocol's refusal as OpenAI's 400 body, and a body without a model as one too."""
    try:
        ask = read_body(endpoint, body.model_dump())
    except Refused as err:
        raise ApiError(err.status, err.message, code=err.code, param=err.param) from err
    if ask.model is None:
        raise ApiError(400, "missing 'model': name a served model (GET /v1/models lists them)", param="model")
    return ask


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
async def chat_completions(body: OpenAIBody, request: Request) -> Any:
    """A chat answer, whole or as server-sent events."""
    ask = read(CHAT, body)
    served = state_of(request).for_generation(ask.model or "")
    gen_request = _request(served, messages=ask.messages, params=ask.params, thinking=ask.thinking)
    ident, created = chat_id(), int(time.time())
    if ask.stream:
        chunks = await served.batcher.open_stream(gen_request)
        return _sse(_chat_events(served, ident, created, chunks, ask.include_usage))
    result = await served.batcher.generate(gen_request)
    return chat_completion(result, served.openai_id, ident=ident, created=created)


@router.post("/v1/completions", response_model=Completion, response_model_exclude_none=True)
async def completions(body: OpenAIBody, request: Request) -> Any:
    """Raw-prompt completions (no chat template); a list of prompts is answered in one batch."""
    ask = read(COMPLETIONS, body)
    served = state_of(request).for_generation(ask.model or "")
    requests = [_request(served, prompt=p, chat=False, params=ask.params) for p in ask.texts]
    ident, created = completion_id(), int(time.time())
    if ask.stream:
        if len(requests) > 1:
            raise ApiError(400, "stream one prompt at a time", param="prompt")
        chunks = await served.batcher.open_stream(requests[0])
        return _sse(_completion_events(served, ident, created, chunks, ask.include_usage))
    results = await _gather([served.batcher.generate(r) for r in requests])
    return text_completion(results, served.openai_id, ident=ident, created=created)


@router.post("/v1/embeddings", response_model=EmbeddingList, response_model_exclude_none=True)
async def embeddings(body: OpenAIBody, request: Request) -> EmbeddingList:
    """Vectors for one text or many; encoding_format=base64 as the official client asks by default."""
    ask = read(EMBEDDINGS, body)
    served = state_of(request).for_embeddings(ask.model or "")
    results = await served.batcher.embed(list(ask.texts))
    vectors = [_vector(r, ask.dimensions) for r in results]
    tokens = sum(v.tokens for v in vectors)
    return embedding_list([v.vector for v in vectors], tokens, served.openai_id, encoding=ask.encoding_format)


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
