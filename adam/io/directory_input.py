"""A directory of documents as one input: its files, one record per file, and one sha256 over them all.

Hidden files and directories are skipped. A symlink that leads out of the directory is skipped with
a warning unless ``follow_symlinks``; a linked directory is then walked once, however many links
lead to it. The sha256 covers "path NUL sha256(content) LF" for each file in sorted order, so it
can be computed up front or while reading and the two agree.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Generator
from pathlib import Path

from adam.hashing import file_sha256
from adam.io import line_input, magic
from adam.io.records import InvalidRecord, Record

log = logging.getLogger(__name__)


def directory_files(root: Path, follow_symlinks: bool) -> list[str]:
    """Relative POSIX paths of the regular files under ``root``, hidden ones skipped, sorted."""
    inside = os.path.realpath(root)
    seen = {inside}
    found: list[str] = []

    def report(err: OSError) -> None:
        log.warning("skipping %s: %s", err.filename, err.strerror)

    def keep(full: Path) -> bool:
        if not full.is_symlink():
            return True
        target = os.path.realpath(full)
        if follow_symlinks or os.path.commonpath([inside, target]) == inside:
            return True
        log.warning("skipping %s: a link to %s, outside %s (set job.follow_symlinks=true)", full, target, root)
        return False

    for dirpath, dirnames, filenames in os.walk(root, onerror=report, followlinks=follow_symlinks):
        kept = []
        for d in dirnames:
            full = Path(dirpath, d)
            if d.startswith(".") or not keep(full):
                continue
            if follow_symlinks and (real := os.path.realpath(full)) in seen:
                continue  # a link loop, or a directory already walked by another path
            kept.append(d)
            if follow_symlinks:
                seen.add(real)
        dirnames[:] = kept
        for name in filenames:
            full = Path(dirpath, name)
            if not name.startswith(".") and full.is_file() and keep(full):
                found.append(full.relative_to(root).as_posix())
    return sorted(found)


def directory_records(
    root: Path, files: list[str], parse: Callable[[int, str, bytes], Record | InvalidRecord | None]
) -> Generator[Record | InvalidRecord, None, str]:
    """One record per file, ``parse(index, relpath, bytes)`` where it can be read; returns the directory's sha256."""
    digest = hashlib.sha256()
    for index, rel in enumerate(files, start=1):
        inner = hashlib.sha256()
        data = bytearray()
        error: str | None = None
        try:
            with open(root / rel, "rb") as fh:
                while block := fh.read(line_input.CHUNK):
                    inner.update(block)
                    if error is None and len(data) + len(block) > line_input.MAX_LINE_BYTES:
                        error = f"file is larger than {line_input.MAX_LINE_BYTES} bytes: split it into smaller files"
                        data.clear()  # go on reading only to hash it
                    elif error is None:
                        data += block
        except OSError as err:
            error = f"cannot read this file: {err.strerror}"
        digest.update(_directory_entry(rel, inner.hexdigest()))
        shown = _shown_name(rel)
        if shown != rel:
            error = f"the file name {shown} is not valid UTF-8: rename it (convmv -f latin1 -t utf-8, for one)"
        document = bytes(data)
        if error is None:
            document, error = _document(document)
        if error is not None:
            yield InvalidRecord(line=index, id=shown, message=error)
        else:
            record = parse(index, rel, document)
            assert record is not None  # a document always gives a record
            yield record
    return digest.hexdigest()


def _document(data: bytes) -> tuple[bytes, str | None]:
    """A file's text as bytes (gzip decompressed), or the error that keeps it from the model (binary data)."""
    if data.startswith(magic.GZIP):
        try:
            text = magic.gunzip_document(data, line_input.MAX_LINE_BYTES)
        except line_input.READ_ERRORS as err:
            return b"", f"cannot decompress this gzip file: {err}"
        if text is None:
            return b"", f"file decompresses to more than {line_input.MAX_LINE_BYTES} bytes: split it into smaller files"
        data = text
    head = data[: magic.HEAD_BYTES]
    if head.startswith(magic.PARQUET):
        return b"", "the file is a Parquet file, not a text document: give it as job.input on its own"
    found = None if head.startswith(line_input.UTF16_BOMS) else magic.binary_kind(head)
    if found is not None:
        return b"", f"the file is {found[0]}, not text: move it out of the directory (or start its name with a dot)"
    return data, None


def directory_sha256(root: Path, files: list[str]) -> str:
    """The sha256 that reading the directory returns, computed without parsing."""
    digest = hashlib.sha256()
    for rel in files:
        try:
            content = file_sha256(root / rel)
        except OSError:  # unreadable: hashed as empty, as reading does
            content = hashlib.sha256().hexdigest()
        digest.update(_directory_entry(rel, content))
    return digest.hexdigest()


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
