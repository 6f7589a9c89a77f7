"""Inputs longer than the model's context window: refused (a context_overflow line) or truncated (job.overflow).

The window is ``backend.context_window()``: the size's context, its YaRN length with size.long_context,
or less where the backend runs with a smaller one. Jobs, ModelManager and the server all fit through here.
"""

from __future__ import annotations

import dataclasses

from adam.backends.base import GenerationRequest, ModelBackend

_MARGIN = 64  # characters of chat template a prompt may gain around its text


def prompt_limit(backend: ModelBackend, request: GenerationRequest) -> int:
    """Prompt tokens that leave room for the request's max_tokens in the context window."""
    return backend.context_window() - request.max_tokens


def fit_prompt(backend: ModelBackend, request: GenerationRequest, *, truncate: bool) -> tuple[GenerationRequest, str]:
    """(the request, "" when it fits / "truncated" / an error message); truncation drops the prompt's start."""
    limit = prompt_limit(backend, request)
    if limit <= 0:  # no prompt fits: say so, rather than quote a negative number of tokens
        context = backend.context_window()
        return request, (
            f"max_tokens={_shown(request.max_tokens)} leaves no room for the prompt in the model's {context}-token "
            f"context window: lower max_tokens below {context}"
        )
    text = request.text
    # no tokenizer yields more tokens than UTF-8 bytes (4 per character at most), so short prompts skip counting
    if (len(text) + _MARGIN) * 4 < limit:
        return request, ""
    tokens = backend.count_tokens(backend.format_prompt(request))
    if tokens <= limit:
        return request, ""
    too_long = (
        f"prompt is {tokens} tokens, more than the {limit} that fit in the context window "
        f"({backend.context_window()} minus max_tokens={request.max_tokens}): "
        "shorten it, lower max_tokens, or set job.overflow=truncate"
    )
    if not truncate:
        return request, too_long
    content = _last_text(request)
    lo, hi = 0, len(content)  # the smallest cut (characters dropped from the start) that fits
    best = None
    while lo <= hi:
        mid = (lo + hi) // 2
        candidate = _with_text(request, content[mid:])
        if backend.count_tokens(backend.format_prompt(candidate)) <= limit:
            best, hi = candidate, mid - 1
        else:
            lo = mid + 1
    if best is None:
        return request, too_long + " (the rest of the prompt alone is too long to truncate)"
    return best, "truncated"


def _shown(number: int) -> str:
    """A number as it reads best in a message: 10^12 for a power of ten, the first digits of a very long one."""
    digits = str(number)
    if len(digits) > 4 and digits.strip("0") == "1":
        return f"10^{len(digits) - 1}"
    return digits if len(digits) <= 20 else f"{digits[:8]}... ({len(digits)} digits)"


def _last_text(request: GenerationRequest) -> str:
    if request.prompt is not None:
        return request.prompt
    users = [i for i, m in enumerate(request.messages) if m.get("role") == "user"]
    return (request.messages[users[-1]].get("content") or "") if users else ""


def _with_text(request: GenerationRequest, text: str) -> GenerationRequest:
    """The request with its prompt (or last user message) replaced by ``text``."""
    if request.prompt is not None:
        return dataclasses.replace(request, prompt=text)
    messages = list(request.messages)
    users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    if users:
        messages[users[-1]] = {**messages[users[-1]], "content": text}
    return dataclasses.replace(request, messages=tuple(messages))


def text_overflow(backend: ModelBackend, text: str) -> str | None:
    """An error message when an embedding input is longer than the model reads; None when it fits."""
    limit = backend.size.max_seq_length or backend.context_window()
    if (len(text) + 8) * 4 < limit:
        return None
    tokens = backend.count_tokens(text)
    if tokens <= limit:
        return None
    return (
        f"text is {tokens} tokens, more than the model's {limit}: split it, "
        "or set job.overflow=truncate to embed its start"
    )
