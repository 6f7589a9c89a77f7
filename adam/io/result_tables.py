"""A generate run's results as one table (results.csv, results.parquet), rebuilt from results.jsonl.

results.jsonl stays the run's record: it is what resume reads and what every batch is appended to. A
table is derived from it in two passes when the job's batches end (a resumed run rebuilds it over every
line, so no record is in it twice), and replaced atomically. The first pass learns the columns and their
types; the second writes the rows in results.jsonl's order. The columns are the input's (id, the prompt
under the input's own name, the per-record settings, the other columns that rode along as ``extra``,
metadata as JSON text), then the answer's: text, thinking, finish_reason, token counts, model. An input
column whose name an answer column takes is written as ``input_<name>`` (prefixed again while that is taken too);
an integer wider than int64 makes its column text.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from adam.atomic import atomic_path
from adam.settings.job_schemas import ResultsFormat  # a config value; io reads it

log = logging.getLogger(__name__)


TABLE_NAMES = {ResultsFormat.csv: "results.csv", ResultsFormat.parquet: "results.parquet"}
ANSWER_COLUMNS = ("text", "thinking", "finish_reason", "prompt_tokens", "completion_tokens", "model")
BATCH_ROWS = 1024


def table_formats(formats: Iterable[Any]) -> list[ResultsFormat]:
    """The table formats among job.results_format (results.jsonl is written whatever it says)."""
    wanted = [ResultsFormat(str(getattr(f, "value", f))) for f in formats or ()]
    return [f for f in ResultsFormat if f in wanted and f in TABLE_NAMES]


def remove_tables(run_dir: Path) -> None:
    """Drop the tables a run dir holds: a run about to append to results.jsonl must not leave one stale beside it."""
    for name in TABLE_NAMES.values():
        (run_dir / name).unlink(missing_ok=True)


def write_tables(results_path: Path, formats: Iterable[ResultsFormat], *, text_name: str = "prompt") -> dict[str, int]:
    """Write each table of ``formats`` beside ``results_path``; returns {file name: rows}.

    ``text_name``: the column the prompt is written under (the input's job.text_field, when it named one).
    """
    formats = [f for f in formats if f in TABLE_NAMES]
    if not formats:
        return {}
    columns = _columns(results_path, text_name)
    out: dict[str, int] = {}
    for fmt in formats:
        target = results_path.parent / TABLE_NAMES[fmt]
        rows = (_csv if fmt is ResultsFormat.csv else _parquet)(results_path, target, columns, text_name)
        out[target.name] = rows
        log.info("wrote %d results to %s", rows, target)
    return out


def table_row(line: dict[str, Any], text_name: str = "prompt") -> dict[str, Any]:
    """One results.jsonl line as a table row: {column: value}, nested values left as they are."""
    row: dict[str, Any] = {}
    if "custom_id" in line:  # an OpenAI batch output line
        body = (line.get("response") or {}).get("body") or {}
        choice = (body.get("choices") or [{}])[0]
        usage = body.get("usage") or {}
        message = choice.get("message") or {}
        row["id"] = line["custom_id"]
        answer = {
            "text": message.get("content") if message else choice.get("text"),
            "finish_reason": choice.get("finish_reason"),
            "prompt_tokens": usage.get("prompt_tokens"),
            "completion_tokens": usage.get("completion_tokens"),
            "model": body.get("model"),
        }
    else:
        usage = line.get("usage") or {}
        row["id"] = line.get("id")
        if "prompt" in line:
            row[text_name] = line["prompt"]
        if "messages" in line:
            row["messages"] = line["messages"]
        row.update(line.get("params") or {})
        row.update(line.get("extra") or {})
        if "metadata" in line:
            row["metadata"] = line["metadata"]
        answer = {key: line.get(key) for key in ANSWER_COLUMNS if key in line}  # thinking only where there is some
        answer.update(prompt_tokens=usage.get("prompt_tokens"), completion_tokens=usage.get("completion_tokens"))
    return {**_input_names(row), **answer}


def _input_names(row: dict[str, Any]) -> dict[str, Any]:
    """The input's columns, one taken by an answer column renamed ``input_<name>`` (``input_input_<name>`` when the
    input has that one too): no input value is overwritten."""
    out: dict[str, Any] = {}
    clashing = [k for k in row if k in ANSWER_COLUMNS]
    for key, value in row.items():
        if key not in ANSWER_COLUMNS:
            out[key] = value
    for key in clashing:
        name = f"input_{key}"
        while name in out or name in ANSWER_COLUMNS:
            name = f"input_{name}"
        out[name] = row[key]
    return out


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    """The JSON objects of results.jsonl (a torn last line skipped)."""
    with open(path, "rb") as fh:
        for raw in fh:
            try:
                obj = json.loads(raw)
            except ValueError:
                continue  # a torn last line: the writer cuts it on its next open
            if isinstance(obj, dict):
                yield obj


def _columns(path: Path, text_name: str) -> dict[str, str]:
    """{column: arrow type name} over every row: input columns in the order first seen, then the answer's."""
    kinds: dict[str, set[str]] = {}
    for line in _lines(path):
        for key, value in table_row(line, text_name).items():
            kinds.setdefault(key, set())
            if value is not None:
                kinds[key].add(_kind(value))
    order = [k for k in kinds if k not in ANSWER_COLUMNS] + [k for k in ANSWER_COLUMNS if k in kinds]
    if "id" in order:
        order.remove("id")
        order.insert(0, "id")
    return {key: _common(kinds[key]) for key in order}


INT64 = (-(2**63), 2**63 - 1)


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):  # an integer wider than a table's int64 (an account number, say) is kept as text
        return "int" if INT64[0] <= value <= INT64[1] else "string"
    if isinstance(value, float):
        return "float"
    return "string"


def _common(kinds: set[str]) -> str:
    """One type for a column's values: numbers widen to float, anything else mixed is text."""
    if kinds <= {"int"}:
        return "int" if kinds else "string"
    if kinds <= {"int", "float"}:
        return "float"
    if kinds == {"bool"}:
        return "bool"
    return "string"


def _cell(value: Any, kind: str) -> Any:
    """A value as its column holds it: nested values and mixed columns as JSON text."""
    if value is None:
        return None
    if kind == "string":
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if kind == "float":
        return float(value)
    return value


def _csv(results: Path, target: Path, columns: dict[str, str], text_name: str) -> int:
    rows = 0
    with atomic_path(target) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for line in _lines(results):
            row = table_row(line, text_name)
            writer.writerow(["" if (v := _cell(row.get(k), kind)) is None else v for k, kind in columns.items()])
            rows += 1
    return rows


def _parquet(results: Path, target: Path, columns: dict[str, str], text_name: str) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {"int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(), "string": pa.string()}
    schema = pa.schema([pa.field(name, types[kind]) for name, kind in columns.items()])
    rows = 0
    batch: list[dict[str, Any]] = []

    def flush(writer: Any) -> None:
        arrays = [pa.array([r.get(name) for r in batch], types[kind]) for name, kind in columns.items()]
        writer.write_batch(pa.record_batch(arrays, schema=schema))
        batch.clear()

    with atomic_path(target) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for line in _lines(results):
            row = table_row(line, text_name)
            batch.append({k: _cell(row.get(k), kind) for k, kind in columns.items()})
            rows += 1
            if len(batch) >= BATCH_ROWS:
                flush(writer)
        if batch or rows == 0:
            flush(writer)
    return rows
