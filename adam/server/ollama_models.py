"""The Ollama API's response bodies, with the fields the official ``ollama`` client and Open WebUI read.

Its request bodies are adam.protocol.ollama's (re-exported here for the routes).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from adam.protocol.bodies import RequestBody
from adam.protocol.ollama import ChatRequest, EmbeddingsRequest, EmbedRequest, GenerateRequest, Message, Options
from adam.server.errors import ApiError

__all__ = ["ChatRequest", "EmbedRequest", "EmbeddingsRequest", "GenerateRequest", "Message", "Options"]


# --------------------------------------------------------------------- requests
class NamedRequest(RequestBody):
    """/api/show and /api/pull: ``model`` (older clients send ``name``)."""

    model: str | None = None
    name: str | None = None
    stream: bool = True

    @property
    def wanted(self) -> str:
        """The model asked for."""
        if not (self.model or self.name):
            raise ApiError(400, "model is required")
        return str(self.model or self.name)


# --------------------------------------------------------------------- responses
class AssistantMessage(BaseModel):
    role: str = "assistant"
    content: str = ""
    thinking: str | None = None


class _Answer(BaseModel):
    model: str
    created_at: str
    done: bool
    done_reason: str | None = None
    total_duration: int | None = None  # nanoseconds
    load_duration: int | None = None
    prompt_eval_count: int | None = None
    eval_count: int | None = None
    eval_duration: int | None = None


class ChatResponse(_Answer):
    message: AssistantMessage


class GenerateResponse(_Answer):
    response: str = ""
    thinking: str | None = None


class EmbedResponse(BaseModel):
    model: str
    embeddings: list[list[float]]
    total_duration: int
    load_duration: int = 0
    prompt_eval_count: int


class EmbeddingsResponse(BaseModel):
    embedding: list[float]


class Details(BaseModel):
    parent_model: str = ""
    format: str
    family: str
    families: list[str]
    parameter_size: str
    quantization_level: str


class ListedModel(BaseModel):
    name: str
    model: str
    modified_at: str
    size: int
    digest: str
    details: Details


class TagsResponse(BaseModel):
    models: list[ListedModel]


class RunningModel(ListedModel):
    expires_at: str
    size_vram: int
    context_length: int


class PsResponse(BaseModel):
    models: list[RunningModel]


class ShowResponse(BaseModel):
    license: str = ""
    modelfile: str = ""
    parameters: str = ""
    template: str = ""
    details: Details
    model_info: dict[str, Any]
    capabilities: list[str]
    modified_at: str


class VersionResponse(BaseModel):
    version: str


class StatusResponse(BaseModel):
    status: str
