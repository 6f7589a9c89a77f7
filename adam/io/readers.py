"""Records from one input source: JSON Lines, text, CSV, TSV (each maybe gzipped), Parquet, a directory
of documents, a Hugging Face dataset, or standard input.

Input is streamed (lines, or batches of table rows) and hashed as it is read, so a multi-gigabyte
input costs little memory and the manifest can still name exactly what ran. The reader is chosen by
the file's extension; tables live in tabular.py and hf_dataset.py, and every format ends in the same
RecordParser validation, with the row number standing in for the line where a format has no lines.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import logging
import os
import sys
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, Literal

from adam.errors import InputError
from adam.hashing import file_sha256
from adam.io import hf_dataset, tabular
from adam.io.record_parser import RecordParser
from adam.io.records import InvalidRecord, Record
from adam.sharding import job_shard

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 64 * 1024 * 1024  # a longer line (or directory file) is reported, not held in memory
_CHUNK = 1 << 20
_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")  # UTF-32's little-endian mark starts like UTF-16's
_HEAD_BYTES = 1 << 16  # what is read up front to refuse a UTF-16 or CR-only file before any model loads
_READ_ERRORS = (OSError, EOFError, zlib.error)  # gzip.BadGzipFile is an OSError; a cut-off .gz is an EOFError

Layout = Literal["jsonl", "text", "sniff"]
Format = Literal["lines", "csv", "tsv", "parquet", "directory", "dataset", "hub"]
_Line = tuple[int, bytes, bool]  # (line number, bytes without the line ending, too long)
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
        self._line = 0  # last line read, for error messages
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
        parser = RecordParser(self.kind, id_field=self.id_field, text_field=self.text_field, shard=self.shard)
        if self._format == "directory":
            yield from self._iter_directory(parser)
            return
        if self._format in ("parquet", "dataset", "hub"):
            yield from tabular.table_records(self._batches(), parser)
            self.sha256 = self.source_sha256()  # Parquet is read out of order (footer first): hashed as a whole
            return
        digest = hashlib.sha256()
        with self._open() as raw:
            hashing = _HashingReader(raw, digest)
            stream: Any = io.BufferedReader(hashing, _CHUNK)
            if self._gzip:
                stream = gzip.GzipFile(fileobj=stream, mode="rb")
            try:
                lines = self._numbered_lines(stream)
                if self._format == "lines":
                    yield from self._iter_lines(lines, parser)
                else:
                    delimiter = "\t" if self._format == "tsv" else ","
                    yield from tabular.delimited_records(
                        lines, parser, delimiter=delimiter, name=self._name, max_bytes=MAX_LINE_BYTES
                    )
                hashing.drain()
            except _READ_ERRORS as err:
                raise InputError(f"cannot read {self._name} after line {self._line}: {err}") from err
        self.sha256 = digest.hexdigest()

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
            self._count = max(_count_lines(self._path) - header, 0)
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
        is_gzip = bool(suffixes) and suffixes[-1] == ".gz"
        inner = suffixes[-2] if is_gzip and len(suffixes) > 1 else (suffixes[-1] if suffixes and not is_gzip else "")
        fmt, layout = _SUFFIXES.get(inner, ("lines", "sniff")) if inner else ("lines", "sniff")
        if (inner and inner not in _SUFFIXES) or (is_gzip and fmt == "parquet"):
            shown = f"{inner}.gz" if is_gzip else inner
            raise InputError(f"adam does not read {shown} files ({path}): give {SUPPORTED}")
        if fmt != "parquet" and not is_gzip:
            self._check_head(path)
        return fmt, is_gzip, layout

    def _check_head(self, path: Path) -> None:
        """The whole-input encoding refusals, from the file's first bytes: at once, not when reading begins."""
        try:
            with open(path, "rb") as fh:
                head = fh.read(_HEAD_BYTES)
        except OSError:
            return  # reading reports it, in its own words
        first, newline, _ = head.partition(b"\n")
        if newline or len(head) < _HEAD_BYTES:  # the first line is all there; else reading checks it whole
            self._check_encoding(first + newline)
        elif head.startswith(_UTF16_BOMS):
            self._check_encoding(head)

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

    # ------------------------------------------------------------------ line inputs
    def _iter_lines(self, lines: Iterator[_Line], parser: RecordParser) -> Iterator[Record | InvalidRecord]:
        layout = self._layout
        if layout == "sniff":
            head: list[_Line] = []
            for item in lines:
                head.append(item)
                if item[2] or item[1].strip():
                    break
            first = next((data.lstrip() for _, data, _ in head if data.strip()), b"")
            layout = "jsonl" if first[:1] in (b"{", b"[") else "text"
            lines = _chain(head, lines)
        checked = False
        for number, data, too_long in lines:
            if too_long:
                yield parser.too_long(number, data, MAX_LINE_BYTES)
                continue
            if layout == "text":
                record = _guarded(parser, parser.from_text_line, number, data)
            else:
                if not checked and data.strip():
                    checked = True
                    self._reject_pretty_json(data)
                record = _guarded(parser, parser.from_json_line, number, data)
            if record is not None:
                yield record

    def _numbered_lines(self, stream: Any) -> Iterator[_Line]:
        """(number, line without its ending, too long); a too-long line is skipped, keeping its first bytes."""
        self._line = 0
        while chunk := stream.readline(MAX_LINE_BYTES + 1):
            self._line += 1
            if self._line == 1:
                self._check_encoding(chunk)
                chunk = chunk.removeprefix(_BOM)
            if len(chunk) > MAX_LINE_BYTES and not chunk.endswith(b"\n"):
                while (rest := stream.readline(_CHUNK)) and not rest.endswith(b"\n"):
                    pass
                yield self._line, chunk[:1024], True
                continue
            if chunk.endswith(b"\n"):
                chunk = chunk[:-1]
            if chunk.endswith(b"\r"):
                chunk = chunk[:-1]
            yield self._line, chunk, False

    def _check_encoding(self, first: bytes) -> None:
        """Refuse, as a whole, input that no line of could be read: UTF-16, or lines ended by CR alone."""
        if first.startswith(_UTF16_BOMS):
            raise InputError(
                f"{self._name} is UTF-16 text (it starts with a UTF-16 byte order mark): save as UTF-8 "
                "(iconv -f UTF-16 -t UTF-8, or your editor's Save as UTF-8)"
            )
        if not first.endswith(b"\n") and b"\r" in first.rstrip(b"\r"):  # no LF at all, yet CRs inside: one long line
            raise InputError(
                f"{self._name} ends its lines with CR alone (old Mac style): convert them to LF (tr '\\r' '\\n')"
            )

    def _reject_pretty_json(self, first_line: bytes) -> None:
        """A JSON document spread over many lines would give one error per line; say so once instead."""
        if first_line.strip() in (b"[", b"{"):
            raise InputError(
                f"{self._name} holds one pretty-printed JSON document, but adam reads JSON Lines (one object per "
                "line): convert it with jq -c '.[]' (an array) or jq -c . (objects)"
            )

    def source_sha256(self) -> str:
        """The ``sha256`` that iterating would set, computed without parsing (so it can be recorded up front)."""
        if self._format == "hub":
            return hf_dataset.hub_sha256(self.source, self.split, self.subset, self._load())
        if self._format not in ("directory", "dataset"):
            assert self._path is not None, "standard input can only be hashed while it is read"
            return file_sha256(self._path)
        assert self._path is not None
        digest = hashlib.sha256()
        for rel in self._directory_files():
            try:
                content = file_sha256(self._path / rel)
            except OSError:  # unreadable: hashed as empty, as iteration does
                content = hashlib.sha256().hexdigest()
            digest.update(_directory_entry(rel, content))
        return digest.hexdigest()

    # ------------------------------------------------------------------ directory inputs
    def _directory_files(self) -> list[str]:
        """Relative POSIX paths of the regular files under the directory, hidden ones skipped, sorted.

        A symlink that leads out of the directory is skipped with a warning unless ``follow_symlinks``;
        a linked directory is then walked once, however many links lead to it.
        """
        if self._files is None:
            assert self._path is not None
            root = self._path
            inside = os.path.realpath(root)
            seen = {inside}
            found: list[str] = []

            def report(err: OSError) -> None:
                log.warning("skipping %s: %s", err.filename, err.strerror)

            def keep(full: Path) -> bool:
                if not full.is_symlink():
                    return True
                target = os.path.realpath(full)
                if self.follow_symlinks or os.path.commonpath([inside, target]) == inside:
                    return True
                log.warning("skipping %s: a link to %s, outside %s (set job.follow_symlinks=true)", full, target, root)
                return False

            for dirpath, dirnames, filenames in os.walk(root, onerror=report, followlinks=self.follow_symlinks):
                kept = []
                for d in dirnames:
                    full = Path(dirpath, d)
                    if d.startswith(".") or not keep(full):
                        continue
                    if self.follow_symlinks and (real := os.path.realpath(full)) in seen:
                        continue  # a link loop, or a directory already walked by another path
                    kept.append(d)
                    if self.follow_symlinks:
                        seen.add(real)
                dirnames[:] = kept
                for name in filenames:
                    full = Path(dirpath, name)
                    if not name.startswith(".") and full.is_file() and keep(full):
                        found.append(full.relative_to(root).as_posix())
            self._files = sorted(found)
        return self._files

    def _iter_directory(self, parser: RecordParser) -> Iterator[Record | InvalidRecord]:
        """One record per file; sha256 covers "path NUL sha256(content) LF" for each file in order."""
        assert self._path is not None
        digest = hashlib.sha256()
        for index, rel in enumerate(self._directory_files(), start=1):
            inner = hashlib.sha256()
            data = bytearray()
            error: str | None = None
            try:
                with open(self._path / rel, "rb") as fh:
                    while block := fh.read(_CHUNK):
                        inner.update(block)
                        if error is None and len(data) + len(block) > MAX_LINE_BYTES:
                            error = f"file is larger than {MAX_LINE_BYTES} bytes: split it into smaller files"
                            data.clear()  # go on reading only to hash it
                        elif error is None:
                            data += block
            except OSError as err:
                error = f"cannot read this file: {err.strerror}"
            digest.update(_directory_entry(rel, inner.hexdigest()))
            shown = _shown_name(rel)
            if shown != rel:
                error = f"the file name {shown} is not valid UTF-8: rename it (convmv -f latin1 -t utf-8, for one)"
            if error is not None:
                yield InvalidRecord(line=index, id=shown, message=error)
            else:
                record = _guarded(parser, parser.from_document, index, rel, bytes(data), id_=rel)
                assert record is not None  # a document always gives a record
                yield record
        self.sha256 = digest.hexdigest()


def _directory_entry(rel: str, content_sha256: str) -> bytes:
    """One file's share of a directory input's sha256 (a name that is not UTF-8 as its own bytes)."""
    return f"{rel}\0{content_sha256}\n".encode("utf-8", "surrogateescape")


def _shown_name(rel: str) -> str:
    """``rel`` itself, or for a name that is not UTF-8 (os.walk keeps its bytes as surrogates) a printable form."""
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        return rel.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return rel


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


class _HashingReader(io.RawIOBase):
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
        while data := self._read(_CHUNK):
            self._digest.update(data)


def _chain(head: list[_Line], rest: Iterator[_Line]) -> Iterator[_Line]:
    yield from head
    yield from rest


def _count_lines(path: Path) -> int:
    """Lines with text in a file, as the parser counts records (blank lines are skipped), read in large blocks."""
    count = 0
    open_line = False  # the block so far ends inside a line that has text
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            *ended, rest = block.split(b"\n")
            for line in ended:
                if open_line or line.strip():
                    count += 1
                open_line = False
            open_line = open_line or bool(rest.strip())
    return count + open_line
