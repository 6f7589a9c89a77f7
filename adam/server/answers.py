"""What the web page shows of a result line: its id, what was asked, the answer, and the answer as safe HTML.

Native lines and OpenAI Batch output lines are read here in one place, for the results pages and for the
comparison of runs. Markdown is rendered by markdown-it-py with raw HTML off (HTML in model output stays
text) and the result is cleaned by nh3 (the ammonia sanitizer) to a short list of tags, no attributes but
a link's href (http, https, mailto) and no images: the page inserts nothing else as markup.
"""

from __future__ import annotations

from functools import cache
from typing import Any

MAX_MARKDOWN_CHARS = 200_000  # longer answers are shown as text only
TAGS = frozenset(
    {"p", "br", "hr", "strong", "em", "del", "s", "code", "pre", "blockquote", "ul", "ol", "li", "a"}
    | {"h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td"}
)


def line_id(record: dict[str, Any]) -> Any:
    """The id a person knows a line by: a batch line's custom_id, else its id."""
    return record["custom_id"] if "custom_id" in record else record.get("id")


def _body(record: dict[str, Any]) -> dict[str, Any]:
    response = record.get("response")
    body = response.get("body") if isinstance(response, dict) else None
    return body if isinstance(body, dict) else {}


def answer_of(record: dict[str, Any]) -> str | None:
    """The answer's text: a native line's text, a batch line's first choice; None when there is none (an error)."""
    if isinstance(record.get("text"), str) and ("finish_reason" in record or "usage" in record):
        return str(record["text"])
    choices = _body(record).get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        message = choices[0].get("message")
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            return str(message["content"])
        if isinstance(choices[0].get("text"), str):
            return str(choices[0]["text"])
    return None


def asked_of(record: dict[str, Any]) -> Any:
    """What was asked, as a line kept it (job.keep_input): a prompt, messages, or an embedded text; else None."""
    for key in ("messages", "prompt"):
        if key in record:
            return record[key]
    if "embedding" in record and isinstance(record.get("text"), str):
        return record["text"]
    return None


def asked_of_request(request: dict[str, Any]) -> Any:
    """What an OpenAI batch input line asks: its body's messages, prompt or input."""
    body = request.get("body")
    if not isinstance(body, dict):
        return None
    for key in ("messages", "prompt", "input"):
        if key in body:
            return body[key]
    return None


def view(record: dict[str, Any]) -> dict[str, Any]:
    """The page's view of a result line."""
    answer = answer_of(record)
    return {
        "id": line_id(record),
        "asked": asked_of(record),
        "answer": answer,
        "answer_html": markdown_html(answer) if answer else None,
    }


@cache
def _renderer() -> Any:
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table").enable("strikethrough")


def markdown_html(text: str) -> str | None:
    """``text`` as Markdown, rendered to sanitised HTML; None when it is too long to render."""
    if len(text) > MAX_MARKDOWN_CHARS:
        return None
    import nh3

    html = _renderer().render(text)
    return str(
        nh3.clean(
            html,
            tags=set(TAGS),
            attributes={"a": {"href"}},
            url_schemes={"http", "https", "mailto"},
            link_rel="noopener noreferrer nofollow",
            strip_comments=True,
        )
    )


def same_answer(a: str | None, b: str | None) -> bool:
    """Whether two answers read the same (surrounding white space aside)."""
    return (a or "").strip() == (b or "").strip()
