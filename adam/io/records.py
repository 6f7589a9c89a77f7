"""Input records after validation: the typed edge between input files and jobs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

RecordFormat = Literal["native", "openai"]


@dataclass
class Record:
    """A valid input record.

    Generation records carry ``messages`` (chat) or ``prompt``; ``chat`` is False only for OpenAI
    ``/v1/completions`` requests, whose prompt is used raw. Embedding records carry ``text``.
    """

    line: int  # 1-based line number in the input (file index for a directory input)
    id: str | int
    format: RecordFormat = "native"
    messages: list[dict[str, str]] | None = None
    prompt: str | None = None
    chat: bool = True
    text: str | None = None
    params: dict[str, Any] = field(default_factory=dict)  # max_tokens, temperature, top_p, stop, seed, response_format
    metadata: Any = None  # the record's own "metadata" value, copied to its result
    extra: dict[str, Any] = field(default_factory=dict)  # unknown fields, passed through untouched
    url: str | None = None  # OpenAI batch endpoint, e.g. /v1/chat/completions
    model: str | None = None  # an OpenAI batch line's body.model: a job runs its configured model whatever it says

    @property
    def content(self) -> str:
        """The text the model reads, for length sorting."""
        if self.text is not None:
            return self.text
        if self.prompt is not None:
            return self.prompt
        return "\n".join(str(m.get("content") or "") for m in self.messages or [])


@dataclass
class InvalidRecord:
    """An input line that cannot be run, with a message that says what to fix."""

    line: int
    id: str | int | None
    message: str
    format: RecordFormat = "native"
    snippet: str | None = None  # the start of the offending line, for lines with no usable id
    in_body: bool = False  # an OpenAI batch line whose body is wrong (a value out of range): the request's own 400
