"""The columns of a CSV, TSV or Parquet input, checked before any model loads.

A table without the column the job reads its text from would give one ``missing 'prompt'`` error
line per row; it is refused instead, in one line that lists its columns and names the
``job.text_field`` that looks right: a usual name for a prompt or a document, else the first text column.
"""

from __future__ import annotations

import csv
import gzip
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from adam.errors import InputError
from adam.io import line_input
from adam.io.record_parser import PARAMS

Column = tuple[str, bool]  # (name, holds text)
# Names that usually hold the text, most likely first (compared without case).
USUAL: dict[str, tuple[str, ...]] = {
    "generate": ("question", "prompt", "instruction", "input", "query", "text", "content", "message", "body"),
    "embed": ("text", "content", "document", "body", "passage", "sentence", "chunk", "page_content", "abstract"),
}
_SHOWN = 12  # columns listed in the message
_NOT_TEXT = frozenset({"metadata", "messages", *PARAMS})


def check_table_columns(columns: list[Column], *, name: str, kind: str, text_field: str | None, id_field: str) -> None:
    """Refuse a table none of whose columns the job can read its text from, naming the one to use."""
    names = [column for column, _ in columns]
    wanted = text_field or ("prompt" if kind == "generate" else "text")
    if wanted in names or (kind == "generate" and "messages" in names) or "custom_id" in names:
        return  # custom_id: rows of OpenAI batch requests, checked row by row
    guess = _guess(columns, kind, exclude={id_field, wanted})
    listed = ", ".join(names[:_SHOWN]) + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")
    what = f"'{wanted}' column (job.text_field)" if text_field else f"'{wanted}' column"
    if kind == "generate" and not text_field:
        what = f"'{wanted}' (or 'messages') column"
    fix = f"set job.text_field={guess}" if guess else f"add a '{wanted}' column"
    raise InputError(f"{name} has no {what}; its columns are {listed or 'none'}: {fix}")


def _guess(columns: list[Column], kind: str, exclude: set[str]) -> str | None:
    """The column that most likely holds the text: a usual name, else the first text column."""
    usable = [(column, text) for column, text in columns if column not in exclude and column not in _NOT_TEXT]
    by_name = {column.lower(): column for column, _ in usable}
    for usual in USUAL.get(kind, ()):
        if usual in by_name:
            return by_name[usual]
    return next((column for column, text in usable if text), None)


def delimited_columns(path: Path, *, delimiter: str, compressed: bool) -> list[Column] | None:
    """The header of a CSV or TSV file, each column judged by its first row; None if it cannot be read here."""
    opener: Any = gzip.open if compressed else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="surrogateescape", newline="") as fh:
            rows = (row for row in csv.reader(_limited(fh), delimiter=delimiter) if any(cell.strip() for cell in row))
            header, first = next(rows, None), next(rows, None)
    except (csv.Error, *line_input.READ_ERRORS):
        return None  # reading reports it, with its line
    if header is None:
        return None  # no header at all: an empty input, reported as such
    names = [cell.removeprefix("\ufeff").strip() for cell in header]
    cells = list(first or [])
    return [(column, _is_text(cells[i]) if i < len(cells) else True) for i, column in enumerate(names) if column]


def _limited(fh: Any) -> Iterator[str]:
    """The first lines of a file, none of them longer than the reader allows."""
    for line in itertools.islice(fh, 10_000):
        yield line[: line_input.MAX_LINE_BYTES]


def _is_text(cell: str) -> bool:
    """Whether a cell reads as text rather than a number."""
    try:
        float(cell)
    except ValueError:
        return bool(cell.strip())
    return False


def parquet_columns(path: Path) -> list[Column] | None:
    """A Parquet file's columns from its footer, with whether each holds strings; None if it cannot be read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError):
        return None  # reading reports it
    out = []
    for field in schema:
        kind = field.type.value_type if pa.types.is_dictionary(field.type) else field.type
        out.append((field.name, pa.types.is_string(kind) or pa.types.is_large_string(kind)))
    return out
