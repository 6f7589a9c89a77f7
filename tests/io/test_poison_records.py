"""Poison records and odd inputs: each bad record becomes its own error line, never the end of the run.

Every InvalidRecord here is also written the way the runner writes it, since a record that reads
but cannot be written (a lone surrogate, nesting the encoder cannot follow) would crash later.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import pytest

from adam.errors import InputError
from adam.io.openai_batch import error_result
from adam.io.readers import RecordReader
from adam.io.record_parser import MAX_DEPTH, RecordParser
from adam.io.records import InvalidRecord, Record
from adam.io.writers import dumps_line
from adam.run.resume import input_sha256

GOOD = b'{"id": "good", "prompt": "still runs"}'
DIGITS = sys.get_int_max_str_digits()


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


# (line, the id the error names or None, a fragment of its message)
POISON: list[tuple[bytes, str | None, str]] = [
    (b'{"id": "a", "prompt": "x", "metadata": ' + _nested(100_000) + b"}", None, "nested too deep"),
    (b'{"id": "b", "prompt": "x", "metadata": ' + _nested(MAX_DEPTH + 5) + b"}", None, "'metadata' is nested deeper"),
    (b'{"id": "c", "prompt": "x", "metadata": ' + b"7" * (DIGITS + 1) + b"}", None, f"more than {DIGITS} digits"),
    (b'{"id": ' + b"7" * (DIGITS + 1) + b', "prompt": "x"}', None, "write it as a string"),
    (b'{"id": "d\\ud800", "prompt": "x"}', None, "'id' holds a lone UTF-16 surrogate (\\ud800)"),
    (b'{"id": "e", "prompt": "x\\uDC00y"}', None, "'prompt' holds a lone UTF-16 surrogate (\\udc00)"),
    (b'{"id": "f", "prompt": "x", "meta": {"k\\udfff": 1}}', None, "a key in 'meta' holds a lone UTF-16 surrogate"),
    (b'{"id": "g", "prompt": "x", "metadata": {"v": 1e999}}', None, "the number 1e999 is out of range"),
    (b'{"id": "h", "prompt": "x", "metadata": [-1.5e400]}', None, "out of range"),
    (b'{"id": "i", "prompt": "a\x00b"}', None, "a raw control character (U+0000) at column 25: write it as \\u0000"),
]


def test_each_poison_line_is_an_error_naming_its_line_and_the_rest_still_run(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    lines = [line for n, (poison, _, _) in enumerate(POISON) for line in (poison, GOOD.replace(b"good", b"ok%d" % n))]
    path.write_bytes(b"\n".join(lines) + b"\n")
    records = list(RecordReader(path, "generate"))
    assert len(records) == 2 * len(POISON)
    for number, (record, (_, id_, fragment)) in enumerate(zip(records[::2], POISON, strict=True)):
        assert isinstance(record, InvalidRecord), (number, record)
        assert (record.line, record.id, fragment in record.message) == (2 * number + 1, id_, True), record.message
        assert "at at" not in record.message
        dumps_line(error_result(record, record.message, code="invalid_input"))  # writable, not a later crash
    assert [(r.id, r.prompt) for r in records[1::2]] == [(f"ok{n}", "still runs") for n in range(len(POISON))]


def test_a_surrogate_pair_is_text_and_runs(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"id": "emoji", "prompt": "smile \\ud83d\\ude00"}\n')
    (record,) = RecordReader(path, "generate")
    assert isinstance(record, Record) and record.prompt == "smile \U0001f600"


def test_nesting_up_to_the_limit_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"id": "deep", "text": "x", "metadata": ' + _nested(MAX_DEPTH - 1) + b"}\n")
    (record,) = RecordReader(path, "embed")
    assert isinstance(record, Record)
    assert dumps_line({"metadata": record.metadata}).count(b"[") == MAX_DEPTH - 1


def test_any_exception_while_parsing_a_record_is_that_records_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"id": "a", "text": "one"}\n{"id": "boom", "text": "two"}\n{"id": "c", "text": "three"}\n')
    real = RecordParser.from_json_line

    def flaky(self: RecordParser, line: int, raw: bytes) -> Record | InvalidRecord | None:
        if b"boom" in raw:
            raise ZeroDivisionError("a bug in the parser")
        return real(self, line, raw)

    monkeypatch.setattr(RecordParser, "from_json_line", flaky)
    first, second, third = RecordReader(path, "embed")
    assert isinstance(first, Record) and isinstance(third, Record) and third.text == "three"
    assert isinstance(second, InvalidRecord) and second.line == 2
    assert second.message.startswith("cannot read this record (ZeroDivisionError: a bug in the parser): fix or remove")
    assert second.snippet == '{"id": "boom", "text": "two"}'

    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("a.txt", "boom.txt", "c.txt"):
        (docs / name).write_text(f"the text of {name}")
    real_document = RecordParser.from_document

    def flaky_document(self: RecordParser, index: int, rel: str, data: bytes) -> Record | InvalidRecord:
        if rel == "boom.txt":
            raise MemoryError()
        return real_document(self, index, rel, data)

    monkeypatch.setattr(RecordParser, "from_document", flaky_document)
    first, second, third = RecordReader(docs, "embed")
    assert (first.id, third.id, third.text) == ("a.txt", "c.txt", "the text of c.txt")
    assert isinstance(second, InvalidRecord) and (second.line, second.id, second.snippet) == (2, "boom.txt", None)
    assert second.message.startswith("cannot read this record (MemoryError: ): fix or remove it")


@pytest.mark.skipif(sys.platform != "linux", reason="needs a filesystem that takes any bytes as a name")
def test_a_file_name_that_is_not_utf8_is_that_files_error(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    (root / "a.txt").write_text("first")
    with open(os.path.join(os.fsencode(root), b"caf\xe9.txt"), "wb") as fh:
        fh.write(b"latin-1 name")
    (root / "z.txt").write_text("last")
    reader = RecordReader(root, "embed")
    first, bad, last = reader
    assert (first.id, last.id, last.text) == ("a.txt", "z.txt", "last")
    assert isinstance(bad, InvalidRecord) and (bad.line, bad.id) == (2, "caf\\xe9.txt")
    assert bad.message.startswith("the file name caf\\xe9.txt is not valid UTF-8: rename it (convmv")
    dumps_line(error_result(bad, bad.message, code="invalid_input"))
    assert reader.sha256 == reader.source_sha256() == input_sha256(str(root))


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_a_device_is_refused_in_one_line_before_anything_reads_it() -> None:
    with pytest.raises(InputError, match=r"^input /dev/zero is neither a regular file nor a directory: give a file"):
        RecordReader("/dev/zero", "generate")
    with pytest.raises(InputError, match="neither a regular file nor a directory"):
        input_sha256("/dev/zero")  # what resume and the manifest hash first


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_is_refused_instead_of_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match=r"pipe it in with job\.input=-$"):
        RecordReader(fifo, "embed")
    (tmp_path / "dir").mkdir()
    os.mkfifo(tmp_path / "dir" / "inner.txt")
    (tmp_path / "dir" / "doc.txt").write_text("a document")
    assert [r.id for r in RecordReader(tmp_path / "dir", "embed")] == ["doc.txt"]  # skipped, not read


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_links_out_of_an_input_directory_are_skipped_unless_followed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("not part of the input")
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("inside")
    (root / "to_a.txt").symlink_to("a.txt")  # a link within the input is read
    (root / "out.txt").symlink_to(outside / "secret.txt")
    (root / "outdir").symlink_to(outside)
    (root / "sub" / "loop").symlink_to(root)  # followed, it must not walk forever
    with caplog.at_level(logging.WARNING, logger="adam.io.directory_input"):
        reader = RecordReader(root, "embed")
        assert [r.id for r in reader] == ["a.txt", "to_a.txt"]
    warned = sorted(r.getMessage() for r in caplog.records)
    assert len(warned) == 2 and all("outside" in m and "job.follow_symlinks=true" in m for m in warned)
    assert warned[0].startswith(f"skipping {root / 'out.txt'}: a link to {outside / 'secret.txt'}")
    followed = RecordReader(root, "embed", follow_symlinks=True)
    assert {r.id: r.text for r in followed} == {
        "a.txt": "inside",
        "to_a.txt": "inside",
        "out.txt": "not part of the input",
        "outdir/secret.txt": "not part of the input",
    }
    assert followed.sha256 == input_sha256(str(root), follow_symlinks=True) != reader.sha256


def test_json_lines_written_are_strict_json() -> None:
    with pytest.raises(ValueError, match="Out of range float"):
        dumps_line({"v": float("inf")})
    assert json.loads(dumps_line({"v": 1.5}), parse_constant=lambda name: pytest.fail(name)) == {"v": 1.5}
