"""Records from one input source: JSON Lines, text, CSV, TSV (each maybe gzipped), Parquet, a directory
of documents, a Hugging Face dataset, or standard input.

Input is streamed (lines, or batches of table rows) and hashed as it is read, so a multi-gigabyte
input costs little memory and the manifest can still name exactly what ran. The reader is chosen by
the file's first bytes (gzip and Parquet whatever the name; binary data refused, io/magic.py), then
its extension; lines are read in line_input.py, tables in tabular.py and hf_dataset.py, and
directories of documents in directory_input.py. Every format ends in the same RecordParser
validation, with the row number standing in for the line where a format has no lines.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, Literal

from adam.errors import InputError
from adam.hashing import file_sha256
from adam.io import columns, hf_dataset, line_input, magic, tabular
from adam.io.directory_input import directory_files, directory_records, directory_sha256
from adam.io.line_input import Layout, Line, NumberedLines
from adam.io.record_parser import RecordParser
from adam.io.records import InvalidRecord, Record
from adam.io.sharding import job_shard

log = logging.getLogger(__name__)

Format = Literal["lines", "csv", "tsv", "parquet", "directory", "dataset", "hub"]
# The reader for each extension (also under .gz, except Parquet); no extension (or only .gz) is sniffed.
_SUFFIXES: dict[str, tuple[Format, Layout]] = {
    ".jsonl": ("lines", "jsonl"),
    ".json": ("lines", "jsonl"),
    ".ndjson": ("lines", "jsonl"),
    ".txt": ("lines", "text"),
    ".csv": ("csv", "sniff"),
    ".tsv": ("tsv", "sniff"),
    ".parquet": ("parquet", "sniff"),
}
SUPPORTED = (
    ".jsonl, .json, .ndjson, .txt, .csv, .tsv (each also as .gz), .parquet, a file without an extension, "
    "a directory (of text files, or a dataset saved with save_to_disk), hf://datasets/<name>, or - for standard input"
)


def input_exists(source: str) -> bool:
    """Whether job.input names something to read: standard input, a hub dataset, or a path that exists."""
    return source == "-" or hf_dataset.is_hub_source(source) or Path(source).exists()


class RecordReader:
    """Valid Records and InvalidRecords from one input source, in input order."""

    def __init__(
        self,
        source: str | Path,
        kind: Literal["generate", "embed"],
        *,
        id_field: str = "id",
        text_field: str | None = None,
        stdin: BinaryIO | None = None,
        follow_symlinks: bool = False,
        split: str | None = None,
        subset: str | None = None,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        self.source = str(source)
        self.shard = shard  # (job.shard, job.num_shards): JSON lines of other shards are not validated
        self.kind = kind
        self.id_field = id_field
        self.text_field = text_field
        self.sha256: str | None = None  # set once iteration finishes
        self._stdin = stdin
        self.follow_symlinks = follow_symlinks  # read links in a directory input that point outside it
        self.split = split  # a Hugging Face dataset's split (job.split)
        self.subset = subset  # a hub dataset's subset, its config name (job.subset)
        remote = self.source == "-" or hf_dataset.is_hub_source(self.source)
        self._path = None if remote else Path(self.source)
        self._files: list[str] | None = None
        self._count: int | None = None
        self._dataset: Any = None  # a Hugging Face dataset, loaded once
        self._yielded = 0
        self._parser: RecordParser | None = None  # the last iteration's (it counts other shards' lines)
        self._format, self._gzip, self._layout = self._inspect()

    @classmethod
    def for_job(cls, job: Any, kind: Literal["generate", "embed"]) -> RecordReader:
        """The reader of a job config's job.input, with its field names and source options."""

        def opt(key: str) -> Any:
            return job.get(key) if hasattr(job, "get") else getattr(job, key, None)

        return cls(
            job.input,
            kind,
            id_field=opt("id_field") or "id",
            text_field=opt("text_field"),
            follow_symlinks=bool(opt("follow_symlinks")),
            split=opt("split"),
            subset=opt("subset"),
            shard=job_shard(job),
        )

    # ------------------------------------------------------------------ public
    def __iter__(self) -> Iterator[Record | InvalidRecord]:
        """Every record of the input in order; sets ``sha256`` when the input is exhausted."""
        self.sha256 = None
        self._yielded = 0
        self._parser = parser = RecordParser(
            self.kind, id_field=self.id_field, text_field=self.text_field, shard=self.shard
        )
        for record in self._records(parser):
            self._yielded += 1
            yield record

    @property
    def records_read(self) -> int:
        """Records read so far, valid or not, other shards' included (0 once read: the input holds none)."""
        return self._yielded + (self._parser.other_shards if self._parser is not None else 0)

    def _records(self, parser: RecordParser) -> Iterator[Record | InvalidRecord]:
        if self._format == "directory":
            assert self._path is not None
            self.sha256 = yield from directory_records(
                self._path,
                self._directory_files(),
                lambda index, rel, data: _guarded(parser, parser.from_document, index, rel, data, id_=rel),
            )
            return
        if self._format in ("parquet", "dataset", "hub"):
            yield from tabular.table_records(self._batches(), parser)
            self.sha256 = self.source_sha256()  # Parquet is read out of order (footer first): hashed as a whole
            return
        digest = hashlib.sha256()
        with self._open() as raw:
            hashing = line_input.HashingReader(raw, digest)
            stream: Any = io.BufferedReader(hashing, line_input.CHUNK)
            if self._gzip or (self._path is None and _peek(stream, 2) == magic.GZIP):
                stream = gzip.GzipFile(fileobj=stream, mode="rb")
            if self._path is None:  # a file was looked at up front; standard input only now, as it comes
                self._check_stream(stream)
            lines = NumberedLines(stream, self._name)
            try:
                if self._format == "lines":
                    yield from self._iter_lines(lines, parser)
                else:
                    delimiter = "\t" if self._format == "tsv" else ","
                    yield from tabular.delimited_records(
                        lines, parser, delimiter=delimiter, name=self._name, max_bytes=line_input.MAX_LINE_BYTES
                    )
                hashing.drain()
            except line_input.READ_ERRORS as err:
                raise InputError(f"cannot read {self._name} after line {lines.line}: {err}") from err
        self.sha256 = digest.hexdigest()

    def check_columns(self) -> None:
        """Refuse a CSV, TSV or Parquet file without the column the job reads its text from, before any model loads."""
        if self._path is None or self._format not in ("csv", "tsv", "parquet"):
            return
        if self._format == "parquet":
            found = columns.parquet_columns(self._path)
        else:
            delimiter = "\t" if self._format == "tsv" else ","
            found = columns.delimited_columns(self._path, delimiter=delimiter, compressed=self._gzip)
        if found is not None:
            kind, text_field, id_field = self.kind, self.text_field, self.id_field
            columns.check_table_columns(found, name=self._name, kind=kind, text_field=text_field, id_field=id_field)

    def count_hint(self) -> int | None:
        """Roughly how many records there are, for a progress bar; None where that costs a full decode."""
        if self._count is not None:
            return self._count
        if self._format == "directory":
            self._count = len(self._directory_files())
        elif self._format in ("dataset", "hub"):
            self._count = int(self._load().num_rows)
        elif self._path is None or self._gzip or not self._path.is_file():
            return None
        elif self._format == "parquet":
            self._count = tabular.parquet_rows(self._path)
        else:
            header = 1 if self._format in ("csv", "tsv") else 0  # a quoted cell over many lines makes it rough
            self._count = max(line_input.count_lines(self._path) - header, 0)
        return self._count

    # ------------------------------------------------------------------ opening
    @property
    def _name(self) -> str:
        if self._path is None:
            return "standard input" if self.source == "-" else self.source
        return str(self._path)

    def _inspect(self) -> tuple[Format, bool, Layout]:
        """(format, is gzip, line layout), or an InputError saying what to fix."""
        path = self._path
        if path is None:
            if self.source == "-" and self._stdin is None and sys.stdin is None:  # started with `<&-`
                raise InputError("standard input is closed: pipe the records in (< in.jsonl) or set job.input=<file>")
            return ("lines" if self.source == "-" else "hub"), False, "sniff"
        if not path.exists():
            raise InputError(
                f"input {path} does not exist: set job.input to a file (a directory for job=embed, - for stdin)"
            )
        if path.is_dir():
            if hf_dataset.is_saved_dataset(path):
                return "dataset", False, "sniff"
            if self.kind != "embed":
                raise InputError(
                    f"input {path} is a directory, which only job=embed reads: give a .jsonl or .txt file instead"
                )
            if not os.access(path, os.R_OK | os.X_OK):
                raise InputError(f"cannot read the directory {path}: check its permissions")
            return "directory", False, "sniff"
        if not path.is_file():  # a device or a FIFO would be read forever (or block) instead of refused
            raise InputError(
                f"input {path} is neither a regular file nor a directory: give a file, or pipe it in with job.input=-"
            )
        if not os.access(path, os.R_OK):
            raise InputError(f"cannot read {path}: permission denied; check its permissions")
        suffixes = [s.lower() for s in path.suffixes]
        named_gzip = bool(suffixes) and suffixes[-1] == ".gz"
        inner = suffixes[-2] if named_gzip and len(suffixes) > 1 else ""
        if suffixes and not named_gzip:
            inner = suffixes[-1]
        fmt, layout = _SUFFIXES.get(inner, ("lines", "sniff")) if inner else ("lines", "sniff")
        if (inner and inner not in _SUFFIXES) or (named_gzip and fmt == "parquet"):
            shown = f"{inner}.gz" if named_gzip else inner
            raise InputError(f"adam does not read {shown} files ({path}): give {SUPPORTED}")
        head = line_input.read_head(path)
        if head.startswith(magic.PARQUET):  # whatever its name says: a Parquet file is read as one
            if fmt != "parquet":
                log.warning("%s is a Parquet file (its first bytes say so): reading it as Parquet", path)
            return "parquet", False, "sniff"
        is_gzip = head.startswith(magic.GZIP)  # gzip is read as such whatever the name, and only then
        if is_gzip:
            head = line_input.gunzip_head(path)
            if fmt == "parquet" or head.startswith(magic.PARQUET):
                raise InputError(f"{path} is a gzip-compressed Parquet file: decompress it (gunzip) to read it")
        line_input.check_content(head, self._name, compressed=is_gzip)
        return fmt, is_gzip, layout

    def _load(self) -> Any:
        """The Hugging Face dataset of a dataset input, loaded (memory-mapped) once."""
        if self._dataset is None:
            if self._format == "hub":
                self._dataset = hf_dataset.load_hub(self.source, self.split, self.subset)
            else:
                assert self._path is not None
                if self.subset is not None:
                    log.warning("job.subset=%s is for hf://datasets/ inputs; %s is read whole", self.subset, self._path)
                self._dataset = hf_dataset.load_saved(self._path, self.split)
        return self._dataset

    def _batches(self) -> Iterator[Any]:
        """Arrow batches of a Parquet file or dataset."""
        if self._format == "parquet":
            assert self._path is not None
            return tabular.parquet_batches(self._path, batch_rows=tabular.BATCH_ROWS)
        return iter(hf_dataset.arrow_batches(self._load(), batch_rows=tabular.BATCH_ROWS))

    def _open(self) -> contextlib.AbstractContextManager[BinaryIO]:
        if self._path is None:
            return contextlib.nullcontext(self._stdin if self._stdin is not None else sys.stdin.buffer)
        try:
            return open(self._path, "rb")  # closed by the caller's with
        except OSError as err:
            raise InputError(f"cannot open {self._path}: {err.strerror}; check the path and its permissions") from err

    def _check_stream(self, stream: Any) -> None:
        """Refuse standard input that is no text: binary, or a Parquet file (which can only be read from a file)."""
        head = _peek(stream, magic.HEAD_BYTES)
        if head.startswith(magic.PARQUET):
            raise InputError("standard input is a Parquet file: save it to a file and set job.input=<file>.parquet")
        line_input.refuse_binary(head, self._name, compressed=isinstance(stream, gzip.GzipFile))

    # ------------------------------------------------------------------ line inputs
    def _iter_lines(self, lines: Iterator[Line], parser: RecordParser) -> Iterator[Record | InvalidRecord]:
        layout: Layout = self._layout
        if layout == "sniff":
            layout, lines = line_input.sniff_layout(lines)
        checked = False
        for number, data, too_long in lines:
            if too_long:
                yield parser.too_long(number, data, line_input.MAX_LINE_BYTES)
                continue
            if layout == "text":
                record = _guarded(parser, parser.from_text_line, number, data)
            else:
                if not checked and data.strip():
                    checked = True
                    line_input.reject_pretty_json(data, self._name)
                record = _guarded(parser, parser.from_json_line, number, data)
            if record is not None:
                yield record

    def source_sha256(self) -> str:
        """The ``sha256`` that iterating would set, computed without parsing (so it can be recorded up front)."""
        if self._format == "hub":
            return hf_dataset.hub_sha256(self.source, self.split, self.subset, self._load())
        if self._format not in ("directory", "dataset"):
            assert self._path is not None, "standard input can only be hashed while it is read"
            return file_sha256(self._path)
        assert self._path is not None
        return directory_sha256(self._path, self._directory_files())

    def _directory_files(self) -> list[str]:
        """The directory input's files (directory_input.directory_files), listed once."""
        if self._files is None:
            assert self._path is not None
            self._files = directory_files(self._path, self.follow_symlinks)
        return self._files


def no_records_message(reader: RecordReader) -> str:
    """The one line that says an input holds no records, and what to do about it."""
    path = reader._path
    if path is None:
        why = f"{reader._name} held no records"
    elif reader._format == "directory":
        why = f"the directory {path} holds no files (hidden ones are skipped)"
    elif path.is_file() and path.stat().st_size == 0:
        why = f"{path} is empty"
    else:
        why = f"{path} holds no records (only blank lines, or a header without rows)"
    hint = "is job.input right (an unmounted disk, an emptied folder)? set job.allow_empty=true if it may be empty"
    return f"{why}: {hint}"


def _guarded(
    parser: RecordParser,
    parse: Callable[..., Record | InvalidRecord | None],
    line: int,
    *args: Any,
    id_: str | None = None,
) -> Record | InvalidRecord | None:
    """``parse(line, *args)`` (the raw bytes last); whatever it raises becomes this record's InvalidRecord."""
    try:
        return parse(line, *args)
    except Exception as err:  # one bad record never stops the others, nor a resume or a dry run after it
        log.debug("record %d raised while being read", line, exc_info=True)
        return parser.crashed(line, err, args[-1], id_=id_)


def _peek(stream: Any, size: int) -> bytes:
    """Up to ``size`` bytes a buffered stream has ready, left unread (none when it fails: reading says why)."""
    try:
        return bytes(stream.peek(size)[:size])
    except line_input.READ_ERRORS:
        return b""
