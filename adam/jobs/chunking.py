"""Split long documents into overlapping chunks before embedding (job.chunk_tokens, job.chunk_overlap).

Chunks end on whitespace and are measured with the backend's own token count, so each fits the
model; chunk n of document ``id`` has the id ``<id>#<n>`` and its metadata names the document.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Iterator

from adam.io.records import InvalidRecord, Record

_WORD = re.compile(r"\S+\s*")


def split_text(text: str, count_tokens: Callable[[str], int], max_tokens: int, overlap: int = 0) -> list[str]:
    """Chunks of ``text`` of at most ``max_tokens`` tokens each (a single over-long word stands alone)."""
    if max_tokens < 1:
        raise ValueError("job.chunk_tokens must be at least 1")
    if not 0 <= overlap < max_tokens:
        raise ValueError("job.chunk_overlap must be at least 0 and less than job.chunk_tokens")
    words = _WORD.findall(text.lstrip())
    if not words or count_tokens(text) <= max_tokens:
        return [text]
    chunks: list[str] = []
    start = 0
    while start < len(words):
        end = _longest_fit(words, start, count_tokens, max_tokens)
        chunks.append("".join(words[start:end]).rstrip())
        if end >= len(words):
            break
        back = _overlap_start(words, start, end, count_tokens, overlap)
        start = max(back, start + 1)
    return chunks


def _longest_fit(words: list[str], start: int, count_tokens: Callable[[str], int], limit: int) -> int:
    """The largest end such that words[start:end] fits in ``limit`` tokens (at least one word)."""
    lo, hi = start + 1, len(words)
    while lo < hi:  # binary search: token counts grow with the number of words
        mid = (lo + hi + 1) // 2
        if count_tokens("".join(words[start:mid]).rstrip()) <= limit:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _overlap_start(words: list[str], start: int, end: int, count_tokens: Callable[[str], int], overlap: int) -> int:
    """Where the next chunk starts so that it repeats at most ``overlap`` tokens of this one."""
    if overlap == 0:
        return end
    back = end
    while back - 1 > start and count_tokens("".join(words[back - 1 : end]).rstrip()) <= overlap:
        back -= 1
    return back


def chunk_records(
    records: Iterable[Record | InvalidRecord], count_tokens: Callable[[str], int], max_tokens: int, overlap: int
) -> Iterator[Record | InvalidRecord]:
    """Each valid record as its chunks (ids ``<id>#<n>``); invalid records pass through."""
    for record in records:
        if not isinstance(record, Record):
            yield record
            continue
        pieces = split_text(record.text or "", count_tokens, max_tokens, overlap)
        base = (
            record.metadata
            if isinstance(record.metadata, dict)
            else ({} if record.metadata is None else {"metadata": record.metadata})
        )
        for n, piece in enumerate(pieces):
            meta = {**base, "doc_id": record.id, "chunk": n, "chunks": len(pieces)}
            yield dataclasses.replace(record, id=f"{record.id}#{n}", text=piece, metadata=meta)
