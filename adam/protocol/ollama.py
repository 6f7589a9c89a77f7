"""An Ollama request body -> the engine's request arguments, read once (tools refused as every door refuses them).

The models are the bodies of /api/chat, /api/generate, /api/embed and /api/embeddings, with the fields the
official ``ollama`` client and Open WebUI send; ``chat_args`` and ``generate_args`` read them into what
Engine.request takes. ``options`` map to OpenAI's names (num_predict -> max_tokens), ``format`` to a
response_format, ``think`` to the thinking switch. What adam cannot give is refused with Refused, worded
as adam.protocol.openai words it (``tools``), or for Ollama's own fields (``images``).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from adam.protocol.bodies import RequestBody
from adam.protocol.openai import Refused, refuse_unsupported


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
        """Options, and ``format`` as an OpenAI response_format; Refused for a format that is neither "json" nor a
        JSON schema (Ollama's own rule) or a schema that is malformed."""
        return {**(self.options or Options()).params(), "response_format": response_format_of(self.format)}

    @property
    def thinking(self) -> bool | None:
        """think: true, or a level ("low", "high"); None: the job's default."""
        return None if self.think is None else bool(self.think)


def response_format_of(fmt: str | dict[str, Any] | None) -> dict[str, Any] | None:
    """Ollama's ``format`` as a normalised response_format: "json" any JSON object, a dict the answer's JSON schema."""
    from adam.protocol.structured import normal_response_format

    if fmt is None or fmt == "":
        return None
    if fmt == "json":
        return {"type": "json_object"}
    if not isinstance(fmt, dict):
        raise Refused(f'format must be "json" or a JSON schema object, got {json.dumps(fmt)[:60]}', param="format")
    try:
        return normal_response_format({"type": "json_schema", "json_schema": {"name": "format", "schema": fmt}})
    except Refused as err:
        raise Refused(err.message.replace("response_format.json_schema.schema", "format"), param="format") from err


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


# --------------------------------------------------------------------- reading
IMAGES = "images are not supported by this server"


def chat_args(body: ChatRequest) -> dict[str, Any]:
    """Engine.request's arguments for a chat with messages; Refused for tools or images."""
    refuse_unsupported({"tools": body.tools})
    if any(m.images for m in body.messages):
        raise Refused(IMAGES, param="images", code="unsupported")
    messages = [{"role": m.role, "content": m.content or ""} for m in body.messages]
    return {"messages": messages, "params": body.params(), "thinking": body.thinking}


def generate_args(body: GenerateRequest) -> dict[str, Any]:
    """Engine.request's arguments for a prompt (the chat template applied unless ``raw``); Refused for images."""
    if body.images:
        raise Refused(IMAGES, param="images", code="unsupported")
    return {"prompt": body.prompt, "chat": not body.raw, "params": body.params(), "system_prompt": body.system,
            "thinking": body.thinking}  # fmt: skip
