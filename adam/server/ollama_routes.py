"""The Ollama API: /api/chat, /api/generate, /api/embed(dings), /api/tags, /api/show, /api/ps, /api/pull, /api/version.

Answers carry the fields the official ``ollama`` client and Open WebUI read; streams are NDJSON, one
object a line, the last with ``done: true`` and the token counts. Model names always carry a tag
(the size's ``ollama_tag``, else ``<name>:latest``). There is nothing to pull: ``/api/pull`` of a
served model succeeds at once, any other is an error. A prompt-less ``/api/generate`` (or a chat
without messages) loads the model, as adam's own ``backend=ollama`` asks.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import BaseModel

from adam.backends.base import Generation, GenerationRequest, StreamChunk, truncate_dimensions
from adam.errors import AdamError, BackendError
from adam.server.errors import ApiError, from_adam_error
from adam.server.json_body import JsonBodyRoute
from adam.server.ollama_models import (
    AssistantMessage,
    ChatRequest,
    ChatResponse,
    Details,
    EmbeddingsRequest,
    EmbeddingsResponse,
    EmbedRequest,
    EmbedResponse,
    GenerateRequest,
    GenerateResponse,
    ListedModel,
    NamedRequest,
    PsResponse,
    RunningModel,
    ShowResponse,
    StatusResponse,
    TagsResponse,
    VersionResponse,
)
from adam.server.state import Served, ServerState, state_of

router = APIRouter(route_class=JsonBodyRoute)  # a JSON body whatever its Content-Type
OLLAMA_API_VERSION = "0.12.0"  # the Ollama release whose API fields these answers carry
RUNNING = "Ollama is running"  # what GET / says; health checks written for Ollama look for it


# --------------------------------------------------------------------- routes
@router.get("/", response_class=PlainTextResponse)
@router.head("/", response_class=PlainTextResponse)
async def running() -> str:
    """The text Ollama answers GET / with."""
    return RUNNING


@router.get("/api/version", response_model=VersionResponse)
async def version() -> VersionResponse:
    """The Ollama API version this server answers as."""
    return VersionResponse(version=OLLAMA_API_VERSION)


@router.get("/api/tags", response_model=TagsResponse)
async def tags(request: Request) -> TagsResponse:
    """Every served model, under its name:tag."""
    state = state_of(request)
    return TagsResponse(models=[_listed(state, m) for m in state.models])


@router.get("/api/ps", response_model=PsResponse)
async def ps(request: Request) -> PsResponse:
    """The served models (all of them stay loaded while the server runs)."""
    state = state_of(request)
    forever = "2318-01-01T00:00:00Z"  # Ollama's answer for keep_alive=-1
    return PsResponse(
        models=[
            RunningModel(
                **_listed(state, m).model_dump(),
                expires_at=forever,
                size_vram=0,
                context_length=m.engine.backend.context_window(),
            )
            for m in state.models
        ]
    )


@router.post("/api/show", response_model=ShowResponse)
async def show(body: NamedRequest, request: Request) -> ShowResponse:
    """A served model's details, architecture facts and capabilities."""
    state = state_of(request)
    served = state.find(body.wanted, ollama=True)
    size = served.engine.backend.size
    arch = size.architecture or size.family or "unknown"
    info: dict[str, Any] = {
        "general.architecture": arch,
        f"{arch}.context_length": served.engine.backend.context_window(),
    }
    if size.parameters:
        info["general.parameter_count"] = size.parameters
    capabilities = ["completion"] if served.can_generate else ["embedding"]
    if served.can_generate and size.thinking.value != "none":
        capabilities.append("thinking")
    return ShowResponse(details=_details(served), model_info=info, capabilities=capabilities,
                        modified_at=_iso(state.started))  # fmt: skip


@router.post("/api/pull", response_model=StatusResponse)
async def pull(body: NamedRequest, request: Request) -> Any:
    """Success for a served model (there is nothing to download); 404 for any other."""
    state_of(request).find(body.wanted, ollama=True)
    if body.stream:
        lines = [StatusResponse(status="pulling manifest"), StatusResponse(status="success")]
        return _ndjson(_lines(lines))
    return StatusResponse(status="success")


@router.post("/api/chat", response_model=ChatResponse, response_model_exclude_none=True)
async def chat(body: ChatRequest, request: Request) -> Any:
    """A chat answer, whole or as NDJSON; no messages: load the model."""
    served = state_of(request).for_generation(body.model, ollama=True)
    started = time.perf_counter_ns()
    if body.tools:
        raise ApiError(400, "tools are not supported by this server")
    if not body.messages:
        await served.batcher.call(served.engine.backend.load)
        return ChatResponse(model=served.ollama_name, created_at=_now(), message=AssistantMessage(), done=True,
                            done_reason="load")  # fmt: skip
    if any(m.images for m in body.messages):
        raise ApiError(400, "images are not supported by this server")
    messages = [{"role": m.role, "content": m.content or ""} for m in body.messages]
    gen_request = _request(served, messages=messages, params=body.params(), thinking=body.thinking)
    if body.stream:
        chunks = await served.batcher.open_stream(gen_request)
        return _ndjson(_stream_lines(served, chunks, started, chat=True))
    result = await served.batcher.generate(gen_request)
    message = AssistantMessage(content=result.text, thinking=result.thinking or None)
    return ChatResponse(message=message, **_final(served, result, started))


@router.post("/api/generate", response_model=GenerateResponse, response_model_exclude_none=True)
async def generate(body: GenerateRequest, request: Request) -> Any:
    """A completion of ``prompt`` (with the chat template unless raw), whole or as NDJSON; no prompt: load."""
    served = state_of(request).for_generation(body.model, ollama=True)
    started = time.perf_counter_ns()
    if not body.prompt:
        await served.batcher.call(served.engine.backend.load)
        return GenerateResponse(model=served.ollama_name, created_at=_now(), done=True, done_reason="load")
    if body.images:
        raise ApiError(400, "images are not supported by this server")
    gen_request = _request(
        served, prompt=body.prompt, chat=not body.raw, params=body.params(), system_prompt=body.system,
        thinking=body.thinking,
    )  # fmt: skip
    if body.stream:
        chunks = await served.batcher.open_stream(gen_request)
        return _ndjson(_stream_lines(served, chunks, started, chat=False))
    result = await served.batcher.generate(gen_request)
    return GenerateResponse(response=result.text, thinking=result.thinking or None, **_final(served, result, started))


@router.post("/api/embed", response_model=EmbedResponse)
async def embed(body: EmbedRequest, request: Request) -> EmbedResponse:
    """Vectors for one text or many (``truncate``: cut texts longer than the model reads, as Ollama does)."""
    served = state_of(request).for_embeddings(body.model, ollama=True)
    started = time.perf_counter_ns()
    texts = [body.input] if isinstance(body.input, str) else body.input
    results = await served.batcher.embed(texts, truncate=body.truncate) if texts else []
    vectors = []
    for result in results:
        if isinstance(result, BackendError):
            raise result
        if body.dimensions:  # Matryoshka: the first dimensions, unit length again
            result = truncate_dimensions(result, body.dimensions)
        vectors.append([float(x) for x in result.vector])
    tokens = sum(r.tokens for r in results if not isinstance(r, BackendError))
    return EmbedResponse(model=served.ollama_name, embeddings=vectors, total_duration=time.perf_counter_ns() - started,
                         prompt_eval_count=tokens)  # fmt: skip


@router.post("/api/embeddings", response_model=EmbeddingsResponse)
async def embeddings(body: EmbeddingsRequest, request: Request) -> EmbeddingsResponse:
    """The older single-text endpoint: ``prompt`` in, ``embedding`` out."""
    served = state_of(request).for_embeddings(body.model, ollama=True)
    if not body.prompt:
        return EmbeddingsResponse(embedding=[])
    (result,) = await served.batcher.embed([body.prompt])
    if isinstance(result, BackendError):
        raise result
    return EmbeddingsResponse(embedding=[float(x) for x in result.vector])


# --------------------------------------------------------------------- helpers
def _request(served: Served, **kwargs: Any) -> GenerationRequest:
    try:
        return served.engine.request(**kwargs)
    except (ValueError, TypeError) as err:
        raise ApiError(400, f"invalid request: {err}") from err


def _now() -> str:
    return _iso(time.time())


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def _final(served: Served, result: Generation | StreamChunk, started: int) -> dict[str, Any]:
    """The fields of a last answer: done, why, counts and durations."""
    total = time.perf_counter_ns() - started
    return {
        "model": served.ollama_name,
        "created_at": _now(),
        "done": True,
        "done_reason": result.finish_reason or "stop",
        "total_duration": total,
        "load_duration": 0,
        "prompt_eval_count": result.prompt_tokens or 0,
        "eval_count": result.completion_tokens or 0,
        "eval_duration": total,
    }


def _details(served: Served) -> Details:
    size, hardware = served.engine.backend.size, served.engine.backend.hardware
    source = str(size.path or size.package or "")
    family = size.family or size.architecture or "unknown"
    quant = hardware.quantization if hardware.quantization not in ("none", "auto") else hardware.dtype.value
    quant = "unknown" if quant == "auto" else quant
    return Details(
        format="gguf" if source.endswith(".gguf") else "safetensors",
        family=family,
        families=[family],
        parameter_size=_count(size.parameters),
        quantization_level=str(quant).upper(),
    )


def _listed(state: ServerState, served: Served) -> ListedModel:
    digest = hashlib.sha256(f"{served.openai_id}|{served.engine.backend.name}".encode()).hexdigest()
    return ListedModel(name=served.ollama_name, model=served.ollama_name, modified_at=_iso(state.started), size=0,
                       digest=digest, details=_details(served))  # fmt: skip


def _count(parameters: int | None) -> str:
    """135M, 1.7B: parameter counts as Ollama writes them."""
    if not parameters:
        return "unknown"
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if parameters >= scale:
            return f"{parameters / scale:.3g}{unit}"
    return str(parameters)


def _ndjson(lines: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(lines, media_type="application/x-ndjson")


async def _lines(docs: list[BaseModel]) -> AsyncIterator[str]:
    for doc in docs:
        yield doc.model_dump_json(exclude_none=True) + "\n"


async def _stream_lines(
    served: Served, chunks: AsyncIterator[StreamChunk], started: int, *, chat: bool
) -> AsyncIterator[str]:
    """NDJSON lines of a stream: a line per piece, then the done line; an error as Ollama's error line."""

    def line(doc: BaseModel) -> str:
        return doc.model_dump_json(exclude_none=True) + "\n"

    def piece(text: str, thinking: str | None, extra: dict[str, Any]) -> BaseModel:
        if chat:
            return ChatResponse(message=AssistantMessage(content=text, thinking=thinking), **extra)
        return GenerateResponse(response=text, thinking=thinking, **extra)

    last = StreamChunk()
    try:
        async for chunk in chunks:
            if chunk.text or chunk.thinking:
                partial = {"model": served.ollama_name, "created_at": _now(), "done": False}
                yield line(piece(chunk.text, chunk.thinking or None, partial))
            if chunk.finish_reason:
                last = chunk
    except AdamError as err:
        yield json.dumps({"error": from_adam_error(err).message}) + "\n"
        return
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]
    yield line(piece("", None, _final(served, last, started)))
