"""Plain data passed between jobs and backends."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from adam.settings.config import DomainSpec

if TYPE_CHECKING:
    import numpy as np


class Priority(Enum):
    """Who waits for an answer: a person (HTTP chat and completions) goes before batch work (jobs, Batch API lines)."""

    interactive = "interactive"
    batch = "batch"


@dataclass(frozen=True)
class GenerationRequest:
    """One generation: chat messages (or a raw prompt) plus sampling settings.

    The low-level request a backend runs, exactly as written: a sampling field left out asks for nothing, so a
    hand-made request decodes greedily (temperature 0, no top_p cut, no seed); max_tokens is the domain schema's.
    Every request adam builds from a config or an API body comes through the engine's Settings, whose defaults are
    the domain schema's (adam/engine/settings.py): a bare Engine samples as domain=general does.
    """

    messages: tuple[dict[str, str], ...] = ()  # chat messages, system prompt included
    prompt: str | None = None  # raw completion prompt, used without a chat template
    max_tokens: int = DomainSpec.max_tokens
    temperature: float = 0.0  # 0 means greedy: the neutral request, not a tuned default
    top_p: float = 1.0  # 1 keeps every token: no nucleus cut
    stop: tuple[str, ...] = ()
    seed: int | None = None
    ignore_eos: bool = False  # the end-of-sequence token never ends the answer (vLLM's): max_tokens or a stop does
    thinking: bool = False  # Qwen3 thinking mode
    response_format: dict[str, Any] | None = None  # json_object or json_schema (adam/protocol/structured.py)
    choice: tuple[str, ...] = ()  # the answer is exactly one of these labels
    logprobs: int | None = None  # log-probabilities of each token with this many alternatives; None: not asked

    def __post_init__(self) -> None:
        if not self.messages and self.prompt is None:
            raise ValueError("a GenerationRequest needs messages or a prompt")

    @property
    def constrained(self) -> bool:
        """Whether decoding is constrained (a JSON object or schema, or a choice of labels)."""
        return bool(self.response_format or self.choice)

    @property
    def text(self) -> str:
        """All prompt text, for length estimates."""
        if self.prompt is not None:
            return self.prompt
        return "\n".join(m.get("content") or "" for m in self.messages)


@dataclass
class Generation:
    """What a backend produced for one request."""

    text: str
    thinking: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"  # stop | length
    logprobs: list[dict[str, Any]] | None = None  # asked for: OpenAI's logprobs.content, one entry per token


@dataclass
class StreamChunk:
    """A piece of a streamed generation; the last chunk carries the finish reason and token counts."""

    text: str = ""
    thinking: str = ""
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass
class Embedding:
    """One embedding vector and the tokens it took."""

    vector: np.ndarray
    tokens: int = 0
    truncated: bool = False


@dataclass
class WeightsLocation:
    """Where a backend's weights are on disk, for the sharing module (HF -> Ollama and back)."""

    path: str
    format: str  # "hf" (a transformers directory) or "gguf"
    model_id: str | None = None
    revision: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
