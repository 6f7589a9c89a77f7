"""A Batch API input file read as OpenAI's Batch API reads it: what fails the batch, and what is one request's error.

Validation (the batch's ``validating`` step, in the worker thread, never on the event loop) fails the
whole batch, with line numbers, for what makes the file unusable: a line that is not a JSON object, a
missing or duplicate ``custom_id``, a method other than POST, a ``url`` other than the batch's
endpoint, a body that is not an object, or lines that name different served models (the names of one
model count as one). Everything else is the request's own and is answered in the error file as the
HTTP route answers it, while the other lines run: a body value out of range is its 400, a model the
server does not serve its 404.

Each line is parsed and validated once per batch: the requests of a file that passes are kept beside the
batch's run dir (``requests.jsonl``, as read) and the run reads them from there.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

from adam.errors import is_disk_full
from adam.io.record_parser import URLS, Kind, RecordParser
from adam.io.records import InvalidRecord, Record
from adam.server.errors import ApiError

log = logging.getLogger(__name__)

VALIDATED_NAME = "requests.jsonl"  # a validated batch's requests, beside its run dir
MAX_REPORTED = 100  # problems kept in a failed batch's errors; the count says how many there were
YIELD_EVERY = 32  # lines read between offers of the GIL to the event loop (about 0.5 ms of parsing)


class Named(Protocol):
    """A served model as validation sees it (adam.server.state.Served)."""

    openai_id: str


Resolve = Callable[[str, str], Named]  # (endpoint, body.model) -> the served model; ApiError as the HTTP route raises


@dataclass
class Checked:
    """What validation found: request lines, the problems that fail the batch, the model the lines name."""

    lines: int = 0
    problems: list[dict[str, Any]] = field(default_factory=list)  # {"code", "line", "message", "param"}
    problem_count: int = 0
    model: Named | None = None  # None: no line names a served model (the endpoint's model answers)

    def add(self, line: int | None, message: str, code: str = "invalid_request", param: str | None = None) -> None:
        """One problem that fails the batch."""
        self.problem_count += 1
        if len(self.problems) < MAX_REPORTED:
            self.problems.append({"code": code, "line": line, "message": message, "param": param})


def kind_of(endpoint: str) -> Kind:
    """The job an endpoint asks for."""
    return next(k for k, urls in URLS.items() if endpoint in urls)


def check_file(path: Path, endpoint: str, resolve: Resolve, keep: Path | None = None) -> Checked:
    """Validate a batch's input file for ``endpoint``; ``resolve`` finds a line's model as the HTTP route does.

    ``keep``: where the requests of a file that passes go, as read (``requests`` reads them back, so each
    line is parsed and validated once per batch, not again when it runs). Nothing is kept for a failed file.
    """
    found = Checked()
    named: dict[str, tuple[Named, int, str]] = {}  # openai_id -> (model, first line naming it, the name used)
    kept, whole = _Kept(keep), False
    try:
        for number, item in _lines(path, endpoint):
            found.lines += 1
            problem = structural(item)
            if problem is not None:
                found.add(number, problem)
                continue
            kept.add(item)
            if isinstance(item, Record) and item.model is not None:
                try:
                    served = resolve(endpoint, item.model)
                except ApiError:  # the request's own 404 (or 400), in the error file when it runs
                    continue
                named.setdefault(served.openai_id, (served, number, item.model))
        if len(named) > 1:
            (_, first, name), (_, line, other) = list(named.values())[:2]
            message = (f"lines name different models: '{name}' (line {first}) and '{other}' (line {line}); "
                       "a batch runs one model: put each model's lines in a batch of its own")  # fmt: skip
            found.add(line, message, code="mixed_models", param="body.model")
        elif named:
            found.model = next(iter(named.values()))[0]
        if found.lines == 0:
            found.add(None, "the file has no request lines", code="empty_file")
        whole = True
    finally:
        kept.close(keep=whole and not found.problems)  # a file cut short (a full disk) is never kept
    return found


def requests(path: Path, endpoint: str, validated: Path | None = None) -> Iterator[Record | InvalidRecord]:
    """The requests of a validated file, in order: records to answer, and lines whose body is their own 400.

    ``validated``: the requests ``check_file`` kept, read back as they were validated; where there is no such
    file (a batch validated by an older server), the input is read again. Validation failed every batch with
    a structural problem, so there is none here; one would still be an error line (never dropped).
    """
    if validated is not None and validated.exists():
        with open(validated, encoding="utf-8") as fh:
            for raw in fh:
                doc = json.loads(raw)
                yield Record(**doc["record"]) if "record" in doc else InvalidRecord(**doc["invalid"])
        return
    for number, item in _lines(path, endpoint):
        problem = structural(item)
        if problem is None:
            yield item
        else:
            yield InvalidRecord(number, item.id, problem, "openai", in_body=True)


def structural(item: Record | InvalidRecord) -> str | None:
    """Why a parsed line fails the whole batch, or None when it is a request (valid, or with its own 400)."""
    if isinstance(item, InvalidRecord):
        return None if item.in_body else item.message
    if item.format != "openai":
        return "not an OpenAI batch request line: each line needs custom_id, method, url and body"
    return None


def _lines(path: Path, endpoint: str) -> Iterator[tuple[int, Record | InvalidRecord]]:
    """(line number, parsed line) for each non-blank line, read from disk a line at a time.

    Parsing is pure Python and holds the GIL: left alone, the event loop would wait out the interpreter's
    switch interval (5 ms) after each of its own system calls, and a /health or a chat stream would take
    tens of milliseconds a request while a large file validates. ``time.sleep(0)`` every few lines lets it in.
    """
    parser = RecordParser(kind_of(endpoint), endpoint=endpoint)
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if number % YIELD_EVERY == 0:
                time.sleep(0)
            item = parser.from_json_line(number, raw.rstrip(b"\r\n"))
            if item is not None:
                yield number, item


class _Kept:
    """The validated requests, written to a temporary file that becomes ``path`` once the whole file passed.

    A full disk never holds validation up: the copy is dropped, and the run reads the input again instead.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._tmp = path.with_name(f".{path.name}.tmp") if path is not None else None
        self._fh: TextIO | None = None
        if self._tmp is not None:
            self._guard(lambda: setattr(self, "_fh", open(self._tmp, "w", encoding="utf-8")))  # noqa: SIM115

    def add(self, item: Record | InvalidRecord) -> None:
        if self._fh is not None:
            fh, key = self._fh, "record" if isinstance(item, Record) else "invalid"
            self._guard(lambda: fh.write(json.dumps({key: _fields(item)}) + "\n"))  # ASCII: any string survives

    def close(self, *, keep: bool) -> None:
        if self._fh is None or self._tmp is None or self.path is None:
            return
        fh, tmp, path = self._fh, self._tmp, self.path
        if keep:
            self._guard(lambda: (fh.flush(), os.fsync(fh.fileno()), fh.close(), os.replace(tmp, path)))
        if self._fh is not None:
            self._drop()

    def _guard(self, step: Callable[[], object]) -> None:
        try:
            step()
        except OSError as err:
            if not is_disk_full(err):
                self._drop()
                raise
            log.warning("validated requests not kept (%s): the run reads the input again", err)
            self._drop()

    def _drop(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.close()
        self._fh = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)


def _fields(item: Record | InvalidRecord) -> dict[str, Any]:
    """The fields of a parsed line that differ from their defaults (the rest come back as defaults)."""
    out = {}
    for spec in dataclasses.fields(item):
        value = getattr(item, spec.name)
        default = spec.default_factory() if spec.default_factory is not dataclasses.MISSING else spec.default
        required = spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING
        if required or value != default:
            out[spec.name] = value
    return out
