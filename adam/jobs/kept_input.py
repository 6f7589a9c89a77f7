"""job.keep_input: what was asked, written beside its answer in results.jsonl, so a run can be reviewed alone.

A native result line gets the record's prompt (or messages) and its per-record settings right after its id;
the input's other fields already ride along as ``extra`` and ``metadata``. OpenAI-format lines are left as the
Batch API writes them: their shape is OpenAI's, and a batch's input file holds the requests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from adam.engine import Outcome
from adam.io.records import Record


def kept_input(record: Record) -> dict[str, Any]:
    """The fields of ``record`` that its result line keeps: prompt or messages (or text), and its params."""
    out: dict[str, Any] = {}
    if record.messages is not None:
        out["messages"] = record.messages
    elif record.prompt is not None:
        out["prompt"] = record.prompt
    elif record.text is not None:
        out["text"] = record.text
    if record.params:
        out["params"] = record.params
    return out


def keeping_input(process: Callable[[Sequence[Record]], Outcome]) -> Callable[[Sequence[Record]], Outcome]:
    """``process`` whose native result lines also hold what their record asked (see kept_input)."""

    def process_keeping(records: Sequence[Record]) -> Outcome:
        outcome = process(records)
        by_id = {record.id: record for record in records if record.format == "native"}
        for index, line in enumerate(outcome.results):
            record = by_id.get(line.get("id"))  # ids are unique within an input: the reader refuses duplicates
            if record is not None and "custom_id" not in line:
                rest = {k: v for k, v in line.items() if k != "id"}
                outcome.results[index] = {"id": line["id"], **kept_input(record), **rest}
        return outcome

    return process_keeping
