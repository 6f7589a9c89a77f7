"""Pages of a JSONL file through a sparse index of line offsets, and a search that reads a bounded stretch.

The web page opens a 100,000-line results.jsonl at any page without reading the file up to it: the
index keeps the byte offset of every STRIDE-th line, so one page reads at most STRIDE + limit lines.
The index is built in one pass and extended, not rebuilt, while a running job appends to the file.
A last line without its newline (a writer mid-line) counts as a line of its own.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

STRIDE = 256  # lines between two indexed offsets
CACHED_FILES = 32  # indexes kept, least recently used dropped first
SEARCH_BYTES = 32 << 20  # one search request reads at most this much before handing back where it stopped
_CHUNK = 1 << 20
_PLAIN = frozenset(chr(c) for c in range(0x20, 0x7F)) - set('"\\<>&/')  # characters no JSON encoder escapes


@dataclass
class LineIndex:
    """Where every STRIDE-th line of one file starts, up to the end of its last complete line."""

    path: Path
    identity: tuple[int, int]  # (device, inode): a replaced file is indexed again
    starts: list[int] = field(default_factory=lambda: [0])  # starts[k]: the offset of line k * STRIDE
    complete: int = 0  # lines that end in a newline
    end: int = 0  # the offset just past the last newline
    size: int = 0  # the file's size when last looked at
    scanned: int = 0  # bytes read to build the index, all calls together

    def lines(self) -> int:
        """Lines in the file, a last one without its newline included."""
        return self.complete + (1 if self.size > self.end else 0)

    def extend(self) -> None:
        """Index the lines appended since the last call."""
        with self.path.open("rb") as fh:
            fh.seek(self.end)
            pos = self.end
            while chunk := fh.read(_CHUNK):
                self.scanned += len(chunk)
                i = chunk.find(b"\n")
                while i != -1:
                    self.complete += 1
                    if self.complete % STRIDE == 0:
                        self.starts.append(pos + i + 1)
                    i = chunk.find(b"\n", i + 1)
                last = chunk.rfind(b"\n")
                if last != -1:
                    self.end = pos + last + 1
                pos += len(chunk)
            self.size = pos

    def seek_line(self, fh: IO[bytes], line: int) -> int:
        """Move ``fh`` to the start of ``line``; returns the bytes read to get there."""
        block = min(line // STRIDE, len(self.starts) - 1)
        fh.seek(self.starts[block])
        skipped = 0
        for _ in range(line - block * STRIDE):
            skipped += len(fh.readline())
        return skipped


@dataclass
class Page:
    """Lines of a file, numbered from 0, with what it took to read them."""

    lines: list[tuple[int, bytes]]
    total: int  # lines in the file
    next: int | None  # where the next page or the rest of a search starts; None: the end of the file
    read_bytes: int  # bytes read for this page, the index's own upkeep left out
    scanned_to: int  # the line a search stopped before (the page's end when not searching)


@dataclass
class IdIndex:
    """Where the line of each id starts in one file (a batch line's custom_id, else its id), for lookups by id.

    Built in one pass and extended as the file grows, as LineIndex is; an id seen twice keeps its first line.
    """

    path: Path
    identity: tuple[int, int]
    offsets: dict[str, int] = field(default_factory=dict)
    end: int = 0  # the offset just past the last complete line indexed
    size: int = 0

    def extend(self) -> None:
        """Index the complete lines appended since the last call."""
        with self.path.open("rb") as fh:
            fh.seek(self.end)
            pos = self.end
            for raw in fh:
                if not raw.endswith(b"\n"):
                    break  # a line being written: indexed once it is whole
                key = line_key(raw)
                if key is not None:
                    self.offsets.setdefault(key, pos)
                pos += len(raw)
            self.end = pos
            self.size = self.path.stat().st_size


def line_key(raw: bytes) -> str | None:
    """The id of one JSONL line as text (custom_id first), or None where it has none."""
    try:
        obj = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    value = obj["custom_id"] if "custom_id" in obj else obj.get("id")
    return None if value is None or isinstance(value, dict | list) else str(value)


class JsonlPages:
    """Line indexes of the files the page has opened (a few, least recently used dropped); thread-safe."""

    def __init__(self, cached: int = CACHED_FILES) -> None:
        self._indexes: OrderedDict[Path, LineIndex] = OrderedDict()
        self._ids: OrderedDict[Path, IdIndex] = OrderedDict()
        self._cached = cached
        self._lock = threading.Lock()

    def by_id(self, path: Path, ids: list[str]) -> dict[str, dict[str, Any]]:
        """The records of ``path`` with these ids (as text; a batch line's custom_id), those it has."""
        stat = path.stat()
        identity = (stat.st_dev, stat.st_ino)
        with self._lock:
            index = self._ids.get(path)
            if index is None or index.identity != identity or stat.st_size < index.size:
                index = IdIndex(path, identity)
            if stat.st_size != index.size or index.size == 0:
                index.extend()
            self._ids[path] = index
            self._ids.move_to_end(path)
            while len(self._ids) > self._cached:
                self._ids.popitem(last=False)
            wanted = {i: index.offsets[i] for i in ids if i in index.offsets}
        out: dict[str, dict[str, Any]] = {}
        with path.open("rb") as fh:
            for key, offset in wanted.items():
                fh.seek(offset)
                record = decode(fh.readline().rstrip(b"\r\n")).get("record")
                if record is not None:
                    out[key] = record
        return out

    def index(self, path: Path) -> LineIndex:
        """The file's index, brought up to date with what was appended since it was last read."""
        stat = path.stat()
        identity = (stat.st_dev, stat.st_ino)
        with self._lock:
            index = self._indexes.get(path)
            if index is None or index.identity != identity or stat.st_size < index.size:
                index = LineIndex(path, identity)  # new, replaced or truncated: start over
            if stat.st_size != index.size or index.size == 0:
                index.extend()
            self._indexes[path] = index
            self._indexes.move_to_end(path)
            while len(self._indexes) > self._cached:
                self._indexes.popitem(last=False)
            return index

    def page(self, path: Path, offset: int, limit: int) -> Page:
        """Lines ``offset`` to ``offset + limit`` of the file."""
        return self._scan(path, offset, limit, None, budget=None)

    def search(self, path: Path, query: str, offset: int, limit: int, budget: int = SEARCH_BYTES) -> Page:
        """The first ``limit`` lines from ``offset`` on whose id or text contains ``query`` (any case).

        It stops after reading ``budget`` bytes; ``next`` then says where to carry on.
        """
        return self._scan(path, offset, limit, Matcher(query), budget=budget)

    def _scan(self, path: Path, offset: int, limit: int, match: Matcher | None, *, budget: int | None) -> Page:
        """Up to ``limit`` lines from ``offset`` on (those ``match`` keeps), read up to ``budget`` bytes."""
        index = self.index(path)
        total = index.lines()
        offset = max(0, min(offset, total))
        out: list[tuple[int, bytes]] = []
        number = offset
        with path.open("rb") as fh:
            read = index.seek_line(fh, offset)
            while number < total and len(out) < limit and (budget is None or read < budget):
                line = fh.readline()
                if not line:
                    break
                read += len(line)
                if match is None or match(line):
                    out.append((number, line.rstrip(b"\r\n")))
                number += 1
        return Page(out, total, number if number < total else None, read, number)


class Matcher:
    """Whether a JSONL line's id or any string in it contains the query, ignoring case."""

    def __init__(self, query: str) -> None:
        self.needle = query.casefold()
        # A query of characters no JSON encoder escapes can be looked for in the raw line first: a line
        # without it cannot match, and most lines are skipped without being parsed.
        self.prefilter = bool(self.needle) and set(query) <= _PLAIN

    def __call__(self, line: bytes) -> bool:
        """Whether the line matches."""
        text = line.decode("utf-8", "replace")
        if self.prefilter and self.needle not in text.casefold():
            return False
        try:
            record = json.loads(text)
        except ValueError:
            return self.needle in text.casefold()  # a torn or foreign line: its raw text
        return any(self.needle in s.casefold() for s in strings(record))


def strings(value: Any) -> Iterator[str]:
    """Every string and number in a parsed record, keys left out, ids included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        if value and all(isinstance(v, int | float) for v in value[:8]):
            return  # a vector: no one searches for its numbers
        for item in value:
            yield from strings(item)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield str(value)


def decode(line: bytes) -> dict[str, Any]:
    """One line for the page: the parsed record, or the raw text when it is not a JSON object."""
    text = line.decode("utf-8", "replace")
    try:
        record = json.loads(text)
    except ValueError:
        return {"raw": text}
    return {"record": record} if isinstance(record, dict) else {"raw": text}
