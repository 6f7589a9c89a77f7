"""OpenAI response bodies, shaped as the official ``openai`` client reads them, built once for every door.

The HTTP routes answer with these models; a Batch API batch and a JSONL job's OpenAI lines put the same
body (``model_dump(exclude_none=True)``) under ``response.body``, so one request reads the same answer
whichever door it came through.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer

from adam.backends.types import Generation


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int | None = None  # left out of an embedding's usage, as OpenAI leaves it out
    total_tokens: int

    @classmethod
    def of(cls, prompt: int, completion: int) -> Usage:
        """Counts and their sum."""
        return cls(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


class AssistantMessage(BaseModel):
    role: str = "assistant"
    content: str | None = None
    reasoning_content: str | None = None  # thinking, as vLLM and SGLang send it


class _Choice(BaseModel):
    """A choice: ``logprobs`` is always there, null unless asked for, as OpenAI answers."""

    index: int = 0
    logprobs: Any = None

    @model_serializer(mode="wrap")
    def _with_logprobs(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out: dict[str, Any] = handler(self)
        out.setdefault("logprobs", self.logprobs)  # kept when the rest of the body leaves out nulls
        return out


class ChatChoice(_Choice):
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


class CompletionChoice(_Choice):
    text: str
    finish_reason: str | None = None


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


def chat_id() -> str:
    """A new chat completion's id."""
    return f"chatcmpl-{uuid.uuid4().hex}"


def completion_id() -> str:
    """A new text completion's id."""
    return f"cmpl-{uuid.uuid4().hex}"


def chat_completion(
    gen: Generation, model: str, *, ident: str | None = None, created: int | None = None
) -> ChatCompletion:
    """The chat.completion for one generation."""
    message = AssistantMessage(content=gen.text, reasoning_content=gen.thinking or None)
    return ChatCompletion(
        id=ident or chat_id(),
        created=int(time.time()) if created is None else created,
        model=model,
        choices=[ChatChoice(message=message, finish_reason=gen.finish_reason, logprobs=chat_logprobs(gen))],
        usage=Usage.of(gen.prompt_tokens, gen.completion_tokens),
    )


def chat_logprobs(gen: Generation) -> dict[str, Any] | None:
    """A chat choice's ``logprobs`` (``{"content": [{"token", "logprob", "bytes", "top_logprobs"}]}``), or None."""
    return None if gen.logprobs is None else {"content": gen.logprobs, "refusal": None}


def text_completion(
    gens: Sequence[Generation], model: str, *, ident: str | None = None, created: int | None = None
) -> Completion:
    """The text_completion for one prompt's generation, or a list of prompts' (one choice each)."""
    return Completion(
        id=ident or completion_id(),
        created=int(time.time()) if created is None else created,
        model=model,
        choices=[CompletionChoice(index=i, text=g.text, finish_reason=g.finish_reason) for i, g in enumerate(gens)],
        usage=Usage.of(sum(g.prompt_tokens for g in gens), sum(g.completion_tokens for g in gens)),
    )


def embedding_list(vectors: Sequence[Any], tokens: int, model: str, *, encoding: str = "float") -> EmbeddingList:
    """The list of embeddings for vectors in input order, ``tokens`` read in all."""
    data = [EmbeddingData(index=i, embedding=encoded(v, encoding)) for i, v in enumerate(vectors)]
    return EmbeddingList(data=data, model=model, usage=Usage(prompt_tokens=tokens, total_tokens=tokens))


def encoded(vector: Any, encoding: str = "float") -> list[float] | str:
    """A vector as floats, or as base64 of little-endian float32 (what the official client asks for by default)."""
    import numpy as np

    if encoding == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return vector_to_list(vector)


def vector_to_list(vector: Any) -> list[float]:
    """A vector as JSON-ready floats; float32 values keep their shortest repr (about half the text)."""
    import numpy as np

    arr = np.asarray(vector).ravel()
    if arr.dtype.kind == "f" and arr.dtype.itemsize < 8:
        # numpy prints each float32 with the fewest digits that read back to the same float32
        return list(map(float, arr.astype(str).tolist()))
    return [float(x) for x in arr.tolist()]


def body_of(doc: BaseModel) -> dict[str, Any]:
    """A response model as the JSON object a route sends (unset optional fields left out)."""
    return doc.model_dump(exclude_none=True)
