"""The Ollama API's request and response bodies, with the fields the official ``ollama`` client and Open WebUI read."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from adam.server.bodies import RequestBody
from adam.server.errors import ApiError


# --------------------------------------------------------------------- requests
class _Request(RequestBody):
    model: str = Field(min_length=1)


class Options(BaseModel):
    model_config = ConfigDict(extra="ignore")  # num_ctx, num_thread and the like are the server's business

    num_predict: int | None = None
    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None

    def params(self) -> dict[str, Any]:
        """The engine's params; num_predict -1 (no limit) and -2 (fill the context) take the default."""
        max_tokens = self.num_predict if self.num_predict and self.num_predict > 0 else None
        return {"max_tokens": max_tokens, "temperature": self.temperature, "top_p": self.top_p,
                "stop": self.stop, "seed": self.seed}  # fmt: skip


class _Generating(_Request):
    stream: bool = True  # Ollama streams unless told not to
    format: str | dict[str, Any] | None = None
    options: Options | None = None
    think: bool | str | None = None
    keep_alive: float | str | None = None

    def params(self) -> dict[str, Any]:
        """Options, and ``format`` as an OpenAI response_format."""
        fmt = self.format
        response_format = {"type": "json_object"} if fmt == "json" else fmt if isinstance(fmt, dict) else None
        return {**(self.options or Options()).params(), "response_format": response_format}

    @property
    def thinking(self) -> bool | None:
        """think: true, or a level ("low", "high"); None: the job's default."""
        return None if self.think is None else bool(self.think)


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: str
    content: str | None = ""
    images: list[Any] | None = None


class ChatRequest(_Generating):
    messages: list[Message] = Field(default_factory=list)
    tools: list[Any] | None = None


class GenerateRequest(_Generating):
    prompt: str | None = None
    system: str | None = None
    raw: bool = False
    images: list[Any] | None = None


class EmbedRequest(_Request):
    input: str | list[str]
    truncate: bool = True
    dimensions: int | None = Field(None, ge=1)


class EmbeddingsRequest(_Request):
    prompt: str = ""


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
