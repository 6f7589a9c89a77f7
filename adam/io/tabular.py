"""Rows of CSV, TSV and Parquet inputs (and of Arrow tables generally), turned into records by RecordParser.

CSV and TSV arrive as the reader's numbered lines, already hashed, un-gzipped and checked for UTF-16
and CR-only endings, so a row's error names its line in the file (the header is line 1). Parquet is
read batch by batch within each row group through pyarrow, so memory holds one batch, not the file.
Every row then goes through ``RecordParser.from_row``: the same validation as a JSON Lines record.
"""

from __future__ import annotations

import csv
import datetime
import logging
import re
from collections.abc import Iterable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from adam.errors import InputError
from adam.io.record_parser import PARAMS, RecordParser
from adam.io.records import InvalidRecord, Record

log = logging.getLogger(__name__)

NUMERIC_COLUMNS = frozenset({"max_tokens", "temperature", "top_p", "seed"})  # CSV strings read as numbers
BOOLEAN_COLUMNS = frozenset({"logprobs", "ignore_eos"})  # CSV strings read as true/false (any case)
BATCH_ROWS = 1024  # Parquet and dataset rows decoded at a time
_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_SURROGATE = re.compile("[\udc80-\udcff]")  # a byte that was not UTF-8, kept by surrogateescape

Line = tuple[int, bytes, bool]  # (line number, bytes without the line ending, too long), as the reader gives them


# ----------------------------------------------------------------- CSV and TSV
def delimited_records(
    lines: Iterator[Line], parser: RecordParser, *, delimiter: str, name: str, max_bytes: int
) -> Iterator[Record | InvalidRecord]:
    """Records of a CSV or TSV input: the first non-blank row names the fields; the row number is the default id."""
    feed = _Feed(lines)
    csv.field_size_limit(max(csv.field_size_limit(), max_bytes))  # a long document in one cell is not an error
    rows = csv.reader(feed, delimiter=delimiter)
    header: list[str] | None = None
    end = 0  # the last line of the previous row
    number = 0  # data rows so far
    while True:
        try:
            fields = next(rows)
            error = None
        except StopIteration:
            return
        except csv.Error as err:
            fields, error = [], f"not valid {'TSV' if delimiter == chr(9) else 'CSV'}: {err}"
        start, end = end + 1, feed.line
        too_long = feed.take_too_long()
        if error is None and not too_long and not any(fields):
            continue  # a blank line, or a row of empty cells
        if header is None:
            if error is not None or too_long:
                raise InputError(f"{name}: cannot read its header (line {start}): {error or 'the line is too long'}")
            header = _header(fields, name)
            continue
        number += 1
        if too_long:
            yield parser.too_long(start, b"", max_bytes)
        elif error is not None:
            yield InvalidRecord(line=start, id=None, message=error)
        else:
            yield _row(parser, header, fields, start, number, delimiter)


def _header(fields: list[str], name: str) -> list[str]:
    """Column names; a repeated one is refused, an empty one (a pandas index column) skipped with a warning."""
    names = [f.removeprefix("\ufeff").strip() for f in fields]
    seen: set[str] = set()
    for index, column in enumerate(names, start=1):
        if _SURROGATE.search(column):
            raise InputError(f"{name}: the header is not valid UTF-8: save the file as UTF-8")
        if not column:
            log.warning("%s: column %d has no name in the header; it is ignored", name, index)
        elif column in seen:
            raise InputError(f"{name}: the header names the column '{column}' twice: rename one of them")
        seen.add(column)
    return names


def _row(
    parser: RecordParser, header: list[str], fields: list[str], line: int, number: int, delimiter: str
) -> Record | InvalidRecord:
    if len(fields) > len(header) and any(fields[len(header) :]):
        sep = "a tab" if delimiter == "\t" else f"'{delimiter}'"
        msg = f"row has {len(fields)} fields but the header has {len(header)}: quote fields that contain {sep}"
        return InvalidRecord(line=line, id=None, message=msg)
    row: dict[str, Any] = {}
    for column, value in zip(header, fields, strict=False):  # a short row leaves its last fields unset
        if not column:
            continue
        if _SURROGATE.search(value):
            id_ = row.get(parser.id_field)
            bad = parser.undecodable(line, value.encode("utf-8", "surrogateescape"), id_=id_ or None)
            if bad is not None:
                return bad
        cell: Any = value
        if column in PARAMS and value.strip() == "":
            cell = None  # an empty cell leaves a generation setting unset
        elif column in NUMERIC_COLUMNS:
            cell = _number(value)
        elif column in BOOLEAN_COLUMNS:
            cell = {"true": True, "false": False}.get(value.strip().lower(), value)  # else text, for validation
        row[column] = cell
    return parser.from_row(line, row, number=number)


def _number(value: str) -> Any:
    """A cell as an int or a float; a cell that is neither stays text, for validation to report."""
    text = value.strip()
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    return value


class _Feed:
    """The reader's numbered lines as text lines for the csv module, remembering where each row ended."""

    def __init__(self, lines: Iterator[Line]) -> None:
        self._lines = lines
        self.line = 0
        self._too_long = False

    def __iter__(self) -> Iterator[str]:
        for number, data, too_long in self._lines:
            self.line = number
            if too_long:
                self._too_long = True
                data = b""
            # bytes that are not UTF-8 survive as surrogates, so that only their row is an error
            yield data.decode("utf-8", "surrogateescape") + "\n"

    def take_too_long(self) -> bool:
        """Whether a line of the row just read was over the size limit (and skipped)."""
        found, self._too_long = self._too_long, False
        return found


# ----------------------------------------------------------------- Parquet and Arrow tables
def parquet_batches(path: Path, *, batch_rows: int = BATCH_ROWS) -> Iterator[Any]:
    """The file's rows as Arrow record batches, row group by row group."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with pq.ParquetFile(path) as file:
            for group in range(file.num_row_groups):
                yield from file.iter_batches(batch_size=batch_rows, row_groups=[group])
    except (pa.ArrowException, OSError) as err:
        raise InputError(f"cannot read {path} as Parquet: {_first_line(err)}; is it a Parquet file?") from err


def parquet_rows(path: Path) -> int:
    """The row count in the file's footer (nothing else is read)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return int(pq.read_metadata(path).num_rows)
    except (pa.ArrowException, OSError) as err:
        raise InputError(f"cannot read {path} as Parquet: {_first_line(err)}; is it a Parquet file?") from err


def table_records(batches: Iterable[Any], parser: RecordParser) -> Iterator[Record | InvalidRecord]:
    """Records of Arrow batches (Parquet, a dataset); the 1-based row number is each row's line and default id."""
    number = 0
    for batch in batches:
        for row in batch.to_pylist():
            number += 1
            try:
                plain = {str(k): _plain(v, str(k)) for k, v in row.items()}
            except _NotPlain as err:
                yield InvalidRecord(line=number, id=None, message=str(err))
                continue
            yield parser.from_row(number, plain, number=number)


class _NotPlain(ValueError):
    """A cell that has no JSON form adam could pass on."""


def _plain(value: Any, column: str) -> Any:
    """A cell as JSON-ready Python: nested lists and structs kept, dates as ISO text."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v, column) for k, v in value.items()}
    if isinstance(value, (list, tuple)):  # a map column comes as (key, value) pairs
        return [_plain(v, column) for v in value]
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise _NotPlain(f"'{column}' holds binary data, not text: store text in a string column") from None
    raise _NotPlain(f"'{column}' holds a {type(value).__name__}, which has no JSON form: cast it to a string column")


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]
