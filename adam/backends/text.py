"""Post-processing of raw model text shared by every backend: stop strings and Qwen3 thinking.

Streaming and non-streaming use the same functions, so a streamed answer joins to exactly the text
a batch call returns.
"""

from __future__ import annotations

from collections.abc import Sequence

from adam.backends.types import StreamChunk

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


def cut_at_stop(raw: str, stops: Sequence[str]) -> tuple[str, bool]:
    """Text before the first stop string (which is left out, as OpenAI does), and whether one was hit."""
    hits = [i for i in (raw.find(s) for s in stops if s) if i >= 0]
    if not hits:
        return raw, False
    return raw[: min(hits)], True


def split_thinking(raw: str, opened: bool = False) -> tuple[str | None, str]:
    """(thinking, answer): a <think>...</think> block goes to thinking, never into the answer.

    ``opened`` says the prompt itself ended with <think> (QwQ, Qwen3 *-Thinking-2507, DeepSeek-R1),
    so the model's text starts inside the block.
    """
    if opened:
        raw = THINK_OPEN + raw
    start = raw.find(THINK_OPEN)
    end = raw.find(THINK_CLOSE)
    if start < 0 and end < 0:
        return None, raw
    if end < 0:  # still thinking when generation stopped
        return raw[start + len(THINK_OPEN) :].strip() or None, raw[:start]
    begin = start + len(THINK_OPEN) if 0 <= start < end else 0
    thinking = raw[begin:end].strip()
    answer = (raw[:start] if 0 <= start < end else "") + raw[end + len(THINK_CLOSE) :].lstrip()
    return thinking or None, answer


def finish_text(raw: str, stops: Sequence[str], opened: bool = False) -> tuple[str, str | None, bool]:
    """(answer, thinking, hit_stop) for a finished generation; ``opened`` as for split_thinking."""
    cut, hit = cut_at_stop(raw, stops)
    thinking, answer = split_thinking(cut, opened)
    return answer, thinking, hit


def _held_back(raw: str, markers: Sequence[str]) -> int:
    """Length of the longest suffix of ``raw`` that could still grow into one of ``markers``."""
    longest = 0
    for marker in markers:
        for n in range(min(len(marker) - 1, len(raw)), longest, -1):
            if marker.startswith(raw[-n:]):
                longest = n
                break
    return longest


class StreamAssembler:
    """Turns raw streamed text into answer/thinking deltas consistent with finish_text()."""

    def __init__(self, stops: Sequence[str], opened: bool = False) -> None:
        self._stops = [s for s in stops if s]
        self._opened = opened
        self._markers = [*self._stops, THINK_OPEN, THINK_CLOSE]
        self._raw = ""
        self._sent_text = ""
        self._sent_thinking = ""
        self._last: StreamChunk | None = None
        self.stopped = False

    def feed(self, chunk: StreamChunk) -> StreamChunk:
        """Add raw model text; return what can safely be shown now."""
        self._raw += chunk.text
        self._last = chunk
        safe, self.stopped = cut_at_stop(self._raw, self._stops)
        if not self.stopped:
            safe = safe[: len(safe) - _held_back(safe, self._markers)]
        thinking, answer = split_thinking(safe, self._opened)
        return self._delta(answer, thinking or "")

    def close(self) -> StreamChunk:
        """The rest of the text, with the finish reason and token counts of the last raw chunk."""
        answer, thinking, hit = finish_text(self._raw, self._stops, self._opened)
        delta = self._delta(answer, thinking or "")
        last = self._last
        if last is not None:
            delta.finish_reason = "stop" if hit else last.finish_reason
            delta.prompt_tokens = last.prompt_tokens
            delta.completion_tokens = last.completion_tokens
        return delta

    def _delta(self, answer: str, thinking: str) -> StreamChunk:
        out = StreamChunk()
        if answer.startswith(self._sent_text):
            out.text = answer[len(self._sent_text) :]
            self._sent_text = answer
        if thinking.startswith(self._sent_thinking):
            out.thinking = thinking[len(self._sent_thinking) :]
            self._sent_thinking = thinking
        return out
