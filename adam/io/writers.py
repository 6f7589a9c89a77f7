"""Durable output: append-only JSONL that survives a crash, atomic JSON files, and the embeddings Parquet file.

Every batch is flushed and fsynced before the next one starts, so after a crash or a kill the run
dir holds every finished batch; at worst the last line is torn, and the next RunWriter on that
dir cuts it off before appending.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from collections.abc import Iterator, Sequence
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from adam.atomic import fsync_dir, temp_path, write_atomic

log = logging.getLogger(__name__)

RESULTS_NAME = "results.jsonl"
ERRORS_NAME = "errors.jsonl"
PARQUET_NAME = "embeddings.parquet"  # job=embed's vectors
_CHUNK = 1 << 20


def dumps_line(obj: Any) -> bytes:
    """One compact JSON line, UTF-8 encoded, newline included; NaN and infinity are refused, as JSON has neither."""
    return (json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":")) + "\n").encode("utf-8")


class RunWriter:
    """Append-only results.jsonl and errors.jsonl in a run dir; every write() is flushed and fsynced."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.results_path = self.run_dir / RESULTS_NAME
        self.errors_path = self.run_dir / ERRORS_NAME
        self._results = _open_append(self.results_path)
        self._errors = _open_append(self.errors_path)
        fsync_dir(self.run_dir)  # so the new files' names survive a crash too
        self.closed = False

    def write(self, results: Sequence[dict[str, Any]], errors: Sequence[dict[str, Any]]) -> None:
        """Append one batch's result and error lines and make them durable before returning.

        All or nothing: a write that fails (a full disk) cuts both files back to where they were, so the
        batch can be written again later with no line of it twice and no torn line between.
        """
        if self.closed:
            raise ValueError(f"the RunWriter for {self.run_dir} is closed")
        # serialise the whole batch first: a value JSON cannot hold must not leave half a batch written
        chunks = [b"".join(map(dumps_line, results)), b"".join(map(dumps_line, errors))]
        pending = [(fh, data) for fh, data in zip((self._results, self._errors), chunks, strict=True) if data]
        sizes = [os.fstat(fh.fileno()).st_size for fh, _ in pending]
        try:
            for fh, data in pending:
                _write_all(fh, data)
                os.fsync(fh.fileno())
        except OSError:
            for (fh, _), size in zip(pending, sizes, strict=True):
                with contextlib.suppress(OSError):  # shrinking a file needs no space
                    os.ftruncate(fh.fileno(), size)
            raise

    def close(self) -> None:
        """Close both files; closing twice is fine."""
        if not self.closed:
            self.closed = True
            self._results.close()
            self._errors.close()

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON through a temp file, fsync and rename: readers see the old file or the new."""
    path = Path(path)
    try:
        text = json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False, default=_json_default)
    except ValueError:  # a NaN or infinity (hardware.memory_gb=inf), which JSON lacks: written as a string
        text = json.dumps(_finite(obj), indent=2, ensure_ascii=False, allow_nan=False, default=_json_default)
    write_atomic(path, text + "\n")


class VectorParquetWriter:
    """Vectors written to Parquet as they come, in row groups, through a temp file renamed when complete.

    Columns: id, vector (list<float32>), metadata (JSON text), then any ``extra`` string columns.
    Until close() the file at ``path`` is untouched; abort() (or leaving a ``with`` block on an
    exception) removes the temp file, so a reader never sees a half-written Parquet file.
    """

    def __init__(self, path: Path, *, extra: Sequence[str] = (), batch_rows: int = 1024) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        fields = [pa.field("id", pa.string(), nullable=False), pa.field("vector", pa.list_(pa.float32()))]
        fields += [pa.field(name, pa.string()) for name in ("metadata", *extra)]
        self.schema = pa.schema(fields)
        self.path = Path(path)
        self.rows = 0
        self._batch_rows = batch_rows
        self._columns: list[list[Any]] = [[] for _ in fields]
        self._tmp = temp_path(self.path)
        self._writer = pq.ParquetWriter(self._tmp, self.schema)

    def add(self, id_: str, vector: Any, metadata: str | None = None, *extra: str | None) -> None:
        """Queue one row (``vector``: a float sequence or a 1-D array); full row groups are written."""
        for column, value in zip(self._columns, (id_, vector, metadata, *extra), strict=True):
            column.append(value)
        if len(self._columns[0]) >= self._batch_rows:
            self._flush()

    def _flush(self) -> None:
        import numpy as np
        import pyarrow as pa

        if not self._columns[0]:
            return
        vectors = self._columns[1]
        if all(isinstance(v, np.ndarray) for v in vectors):  # one flat float32 buffer, no Python floats
            flat = np.concatenate([np.asarray(v, dtype=np.float32).ravel() for v in vectors])
            offsets = np.cumsum([0, *(v.size for v in vectors)], dtype=np.int32)
            vector_array = pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat))
        else:
            vector_array = pa.array(vectors, pa.list_(pa.float32()))
        arrays = [pa.array(self._columns[0], pa.string()), vector_array]
        arrays += [pa.array(column, pa.string()) for column in self._columns[2:]]
        self._writer.write_batch(pa.record_batch(arrays, schema=self.schema), row_group_size=self._batch_rows)
        self.rows += len(self._columns[0])
        for column in self._columns:
            column.clear()

    def close(self) -> int:
        """Write what is queued, make the file durable and put it at ``path``; returns the row count."""
        try:
            self._flush()
            self._writer.close()
            fd = os.open(self._tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        fsync_dir(self.path.parent)
        return self.rows

    def abort(self) -> None:
        """Drop the temp file; ``path`` keeps whatever it held before."""
        with contextlib.suppress(Exception):  # already failing; the temp file goes either way
            self._writer.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> VectorParquetWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def results_to_parquet(results_path: Path, parquet_path: Path, *, batch_rows: int = 1024) -> int:
    """Stream the embeddings in results.jsonl into Parquet (id, vector, metadata); returns the row count.

    Used where results.jsonl is the whole record (a resumed run, a run written by another
    process). Native lines and OpenAI-format lines both count; lines that are not complete JSON
    (a torn last line) or hold no embedding are skipped with a warning.
    """
    with VectorParquetWriter(Path(parquet_path), batch_rows=batch_rows) as out:
        for row in _embedding_rows(Path(results_path)):
            out.add(*row)
    return out.rows


def _embedding_rows(path: Path) -> Iterator[tuple[str, list[float], str | None]]:
    """(id as text, vector, metadata as JSON text or None) for each embedding line of a results file."""
    skipped = 0
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except ValueError:
                where = "the last line" if not raw.endswith(b"\n") else f"line {number}"
                log.warning("%s: %s is not complete JSON (an interrupted write?); skipped it", path, where)
                continue
            row = embedding_row(obj)
            if row is None:
                skipped += 1
            else:
                yield row
    if skipped:
        log.warning("%s: %d lines hold no embedding; left them out of the Parquet file", path, skipped)


def embedding_row(obj: Any) -> tuple[str, list[float], str | None] | None:
    """(id as text, vector, metadata as JSON text) of one results line, or None if it holds no embedding."""
    if not isinstance(obj, dict):
        return None
    if "custom_id" in obj:  # an OpenAI batch output line
        response = obj.get("response") or {}
        data = (response.get("body") or {}).get("data") if response.get("status_code") == 200 else None
        if not data or obj["custom_id"] is None:
            return None
        return str(obj["custom_id"]), data[0]["embedding"], None
    if "embedding" not in obj or obj.get("id") is None:
        return None
    meta = obj.get("metadata")
    meta_text = None if meta is None else json.dumps(meta, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return str(obj["id"]), obj["embedding"], meta_text


def _open_append(path: Path) -> IO[bytes]:
    _trim_torn_tail(path)
    return open(path, "ab", buffering=0)  # unbuffered: no bytes of a failed write linger to be flushed later


def _write_all(fh: IO[bytes], data: bytes) -> None:
    """Write all of ``data`` to an unbuffered file (a write near a full disk may take only part of it)."""
    view = memoryview(data)
    while view:
        written = fh.write(view)
        if not written:  # a regular file takes at least a byte or raises; never spin
            raise OSError(f"could not write to {fh.name}")
        view = view[written:]


def _trim_torn_tail(path: Path) -> None:
    """Cut a partial last line left by a crash, so appended lines start on a line of their own."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    if size == 0:
        return
    with open(path, "r+b") as fh:
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return
        keep, pos = 0, size
        while pos > 0:
            step = min(_CHUNK, pos)
            pos -= step
            fh.seek(pos)
            cut = fh.read(step).rfind(b"\n")
            if cut >= 0:
                keep = pos + cut + 1
                break
        log.warning("%s ended in a partial line (%d bytes) from an interrupted run; removed it", path, size - keep)
        fh.truncate(keep)
        fh.flush()
        os.fsync(fh.fileno())


def _json_default(value: Any) -> Any:
    """Values json cannot write by itself that turn up in manifests: paths, enums, numpy scalars."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if hasattr(value, "item"):
        return _finite(value.item())
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by its name ("nan", "inf"), for a JSON file."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
