"""Durable output: append-only JSONL that survives a crash, atomic JSON files, and the embeddings Parquet file.

Every batch is flushed and fsynced before the next one starts, so after a crash or a kill the run
dir holds every finished batch; at worst the last line is torn, and the next RunWriter on that
dir cuts it off before appending.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import IO, Any

log = logging.getLogger(__name__)

RESULTS_NAME = "results.jsonl"
ERRORS_NAME = "errors.jsonl"
_CHUNK = 1 << 20


def dumps_line(obj: Any) -> bytes:
    """One compact JSON line, UTF-8 encoded, newline included."""
    return (json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


class RunWriter:
    """Append-only results.jsonl and errors.jsonl in a run dir; every write() is flushed and fsynced."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.results_path = self.run_dir / RESULTS_NAME
        self.errors_path = self.run_dir / ERRORS_NAME
        self._results = _open_append(self.results_path)
        self._errors = _open_append(self.errors_path)
        _fsync_dir(self.run_dir)  # so the new files' names survive a crash too
        self.closed = False

    def write(self, results: Sequence[dict[str, Any]], errors: Sequence[dict[str, Any]]) -> None:
        """Append one batch's result and error lines and make them durable before returning."""
        if self.closed:
            raise ValueError(f"the RunWriter for {self.run_dir} is closed")
        # serialise the whole batch first: a value JSON cannot hold must not leave half a batch written
        chunks = [b"".join(map(dumps_line, results)), b"".join(map(dumps_line, errors))]
        for fh, data in zip((self._results, self._errors), chunks, strict=True):
            if data:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())

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
    data = (json.dumps(obj, indent=2, ensure_ascii=False, default=_json_default) + "\n").encode("utf-8")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def results_to_parquet(results_path: Path, parquet_path: Path, *, batch_rows: int = 1024) -> int:
    """Stream the embeddings in results.jsonl into Parquet (id, vector, metadata); returns the row count.

    Rows are written in row groups of ``batch_rows`` to a temp file that replaces ``parquet_path``
    only when complete. Native lines and OpenAI-format lines both count; lines that are not
    complete JSON (a torn last line) or hold no embedding are skipped with a warning.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("vector", pa.list_(pa.float32())),
            pa.field("metadata", pa.string()),
        ]
    )
    parquet_path = Path(parquet_path)
    tmp = parquet_path.with_name(f".{parquet_path.name}.{os.getpid()}.tmp")
    rows = 0
    ids: list[str] = []
    vectors: list[list[float]] = []
    metas: list[str | None] = []

    def flush(writer: Any) -> None:
        nonlocal rows
        if ids:
            columns = [pa.array(ids), pa.array(vectors, pa.list_(pa.float32())), pa.array(metas)]
            batch = pa.record_batch(columns, schema=schema)
            writer.write_batch(batch, row_group_size=batch_rows)
            rows += len(ids)
            ids.clear()
            vectors.clear()
            metas.clear()

    try:
        with pq.ParquetWriter(tmp, schema) as writer:
            for id_, vector, meta in _embedding_rows(Path(results_path)):
                ids.append(id_)
                vectors.append(vector)
                metas.append(meta)
                if len(ids) >= batch_rows:
                    flush(writer)
            flush(writer)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, parquet_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(parquet_path.parent)
    return rows


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
            row = _embedding_of(obj)
            if row is None:
                skipped += 1
            else:
                yield row
    if skipped:
        log.warning("%s: %d lines hold no embedding; left them out of the Parquet file", path, skipped)


def _embedding_of(obj: Any) -> tuple[str, list[float], str | None] | None:
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
    meta_text = None if meta is None else json.dumps(meta, ensure_ascii=False, separators=(",", ":"))
    return str(obj["id"]), obj["embedding"], meta_text


def _open_append(path: Path) -> IO[bytes]:
    _trim_torn_tail(path)
    return open(path, "ab")  # closed by RunWriter.close


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


def _fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable; a no-op where directories cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _json_default(value: Any) -> Any:
    """Values json cannot write by itself that turn up in manifests: paths, enums, numpy scalars."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")
