"""Line inputs as bytes: the size limits, a stream hashed as it is read, and numbered lines.

A line longer than ``MAX_LINE_BYTES`` is skipped without being held in memory (only its first bytes
are kept, for the error). Input that no line of could be read (binary data, UTF-16, lines ended by CR
alone, one pretty-printed JSON document) is refused as a whole, naming the fix. A JSON Lines or text layout is
sniffed from the first line with text.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Literal

from adam.errors import InputError
from adam.io import magic
from adam.io.magic import HEAD_BYTES

MAX_LINE_BYTES = 64 * 1024 * 1024  # a longer line (or directory file) is reported, not held in memory
CHUNK = 1 << 20
READ_ERRORS = (OSError, EOFError, zlib.error)  # gzip.BadGzipFile is an OSError; a cut-off .gz is an EOFError
_BOM = b"\xef\xbb\xbf"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")  # UTF-32's little-endian mark starts like UTF-16's

Layout = Literal["jsonl", "text", "sniff"]
Line = tuple[int, bytes, bool]  # (line number, bytes without the line ending, too long)


class HashingReader(io.RawIOBase):
    """A raw stream that feeds every byte it reads to a hash."""

    def __init__(self, raw: BinaryIO, digest: Any) -> None:
        self._raw = raw
        # read1 returns what a pipe has now instead of waiting for a full buffer, so records from a
        # slow producer on stdin flow as their lines arrive
        self._read = getattr(raw, "read1", raw.read)
        self._digest = digest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self._digest.update(data)
        return n

    def drain(self) -> None:
        """Read (and hash) whatever the decoder left unread, such as bytes after a gzip member."""
        while data := self._read(CHUNK):
            self._digest.update(data)


class NumberedLines:
    """(number, line without its ending, too long) for each line of a stream; ``line`` is the last one read.

    A too-long line is skipped, keeping its first bytes. The first line is checked for an encoding no
    line could be read in, and loses its UTF-8 byte order mark.
    """

    def __init__(self, stream: Any, name: str) -> None:
        self.line = 0
        self._name = name
        self._lines = self._read(stream)

    def __iter__(self) -> Iterator[Line]:
        return self

    def __next__(self) -> Line:
        return next(self._lines)

    def _read(self, stream: Any) -> Iterator[Line]:
        while chunk := stream.readline(MAX_LINE_BYTES + 1):
            self.line += 1
            if self.line == 1:
                check_encoding(chunk, self._name)
                chunk = chunk.removeprefix(_BOM)
            if len(chunk) > MAX_LINE_BYTES and not chunk.endswith(b"\n"):
                while (rest := stream.readline(CHUNK)) and not rest.endswith(b"\n"):
                    pass
                yield self.line, chunk[:1024], True
                continue
            if chunk.endswith(b"\n"):
                chunk = chunk[:-1]
            if chunk.endswith(b"\r"):
                chunk = chunk[:-1]
            yield self.line, chunk, False


def read_head(path: Path) -> bytes:
    """The file's first bytes (none when it cannot be read: reading reports that in its own words)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(HEAD_BYTES)
    except OSError:
        return b""


def gunzip_head(path: Path) -> bytes:
    """The first bytes of a gzip file, decompressed (as many as can be, of a broken one)."""
    out = bytearray()
    try:
        with gzip.open(path, "rb") as fh:
            while len(out) < HEAD_BYTES and (block := fh.read(HEAD_BYTES - len(out))):
                out += block
    except READ_ERRORS:
        pass  # reading reports it, with the line it got to
    return bytes(out)


def check_content(head: bytes, name: str, *, compressed: bool = False) -> None:
    """Refuse, before any model loads, input whose first bytes no line of could be read from: binary data of
    a kind named by its magic number (an image, an archive, a program), UTF-16, CR-only line endings."""
    refuse_binary(head, name, compressed=compressed)
    check_head(head, name)


def refuse_binary(head: bytes, name: str, *, compressed: bool = False) -> None:
    """Refuse input whose first bytes name binary data (UTF-16 with a byte order mark has its own message)."""
    if head.startswith(UTF16_BOMS):
        return
    refusal = magic.refusal(name, head, compressed=compressed)
    if refusal is not None:
        raise InputError(refusal)


def check_head(head: bytes, name: str) -> None:
    """The whole-input encoding refusals, from the file's first bytes (up to 64 KiB): at once, not when reading."""
    first, newline, _ = head.partition(b"\n")
    if newline or len(head) < HEAD_BYTES:  # the first line is all there; else reading checks it whole
        check_encoding(first + newline, name)
    elif head.startswith(UTF16_BOMS):
        check_encoding(head, name)


def check_encoding(first: bytes, name: str) -> None:
    """Refuse, as a whole, input that no line of could be read: UTF-16, or lines ended by CR alone."""
    if first.startswith(UTF16_BOMS):
        raise InputError(
            f"{name} is UTF-16 text (it starts with a UTF-16 byte order mark): save as UTF-8 "
            "(iconv -f UTF-16 -t UTF-8, or your editor's Save as UTF-8)"
        )
    if not first.endswith(b"\n") and b"\r" in first.rstrip(b"\r"):  # no LF at all, yet CRs inside: one long line
        raise InputError(f"{name} ends its lines with CR alone (old Mac style): convert them to LF (tr '\\r' '\\n')")


def reject_pretty_json(first_line: bytes, name: str) -> None:
    """A JSON document spread over many lines would give one error per line; say so once instead."""
    if first_line.strip() in (b"[", b"{"):
        raise InputError(
            f"{name} holds one pretty-printed JSON document, but adam reads JSON Lines (one object per "
            "line): convert it with jq -c '.[]' (an array) or jq -c . (objects)"
        )


def sniff_layout(lines: Iterator[Line]) -> tuple[Layout, Iterator[Line]]:
    """JSON Lines when the first line with text starts an object or array, else text; and every line again."""
    head: list[Line] = []
    for item in lines:
        head.append(item)
        if item[2] or item[1].strip():
            break
    first = next((data.lstrip() for _, data, _ in head if data.strip()), b"")
    layout: Layout = "jsonl" if first[:1] in (b"{", b"[") else "text"
    return layout, _chain(head, lines)


def _chain(head: list[Line], rest: Iterator[Line]) -> Iterator[Line]:
    yield from head
    yield from rest


def count_lines(path: Path) -> int:
    """Lines with text in a file, as the parser counts records (blank lines are skipped), read in large blocks."""
    count = 0
    open_line = False  # the block so far ends inside a line that has text
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            *ended, rest = block.split(b"\n")
            for line in ended:
                if open_line or line.strip():
                    count += 1
                open_line = False
            open_line = open_line or bool(rest.strip())
    return count + open_line
