"""Inputs that are not what their names say, and tables without the text column: refused in one line before
any model loads, or read as what they really are (gzip, Parquet)."""

from __future__ import annotations

import gzip
import io
import sqlite3
import sys
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import compose_cfg, read_jsonl

from adam.errors import ExitCode, InputError
from adam.io.readers import RecordReader
from adam.io.records import InvalidRecord, Record
from adam.run.runner import run

LINES = b'{"id": "a", "prompt": "one two"}\n{"id": "b", "prompt": "three"}\n'
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"


def _zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("sheet.xml", "<x/>")
    return out.getvalue()


def _sqlite(path: Path) -> bytes:
    con = sqlite3.connect(path)
    con.execute("create table t (prompt text)")
    con.commit()
    con.close()
    return path.read_bytes()


def _binaries(tmp_path: Path) -> dict[str, tuple[str, bytes, str]]:
    """kind -> (file name, content, what the refusal says it is)."""
    return {
        "elf": ("tool.jsonl", Path(sys.executable).resolve().read_bytes()[:200_000], "an ELF executable"),
        "png": ("picture.txt", PNG, "a PNG image"),
        "jpeg": ("photo.jsonl", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "a JPEG image"),
        "gif": ("anim.txt", b"GIF89a\x01\x00\x01\x00", "a GIF image"),
        "pdf": ("paper.txt", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "a PDF document"),
        "zip": ("book.csv", _zip(), "a ZIP archive"),
        "zstd": ("data.jsonl", b"\x28\xb5\x2f\xfd\x04\x58\x01\x00\x00", "zstd-compressed"),
        "bzip2": ("data.jsonl", b"BZh91AY&SY\x00", "bzip2-compressed"),
        "xz": ("data", b"\xfd7zXZ\x00\x00\x04", "xz-compressed"),
        "sqlite": ("notes.jsonl", _sqlite(tmp_path / "db.sqlite"), "an SQLite database"),
        "nul": ("dump.txt", b"abc\x00\x01\x02def\n" * 10, "binary data (it holds NUL bytes)"),
        "utf16": ("q.txt", "hello there\nsecond line\n".encode("utf-16-le"), "UTF-16LE text without a byte order mark"),
        "gzipped png": ("picture.txt", gzip.compress(PNG), "gzip-compressed, and inside it a PNG image"),
    }


KINDS = ["elf", "png", "jpeg", "gif", "pdf", "zip", "zstd", "bzip2", "xz", "sqlite", "nul", "utf16", "gzipped png"]


@pytest.mark.parametrize("kind", KINDS)
def test_binary_input_is_named_in_one_line_before_any_model_loads(tmp_path: Path, kind: str) -> None:
    name, content, what = _binaries(tmp_path)[kind]
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError) as caught:
        run(compose_cfg("backend=echo", f"job.input={path}", run_dir=tmp_path / "run"))
    message = str(caught.value)
    assert message.startswith(f"{path} is {what}") and "\n" not in message
    assert caught.value.exit_code == ExitCode.CONFIG
    assert not (tmp_path / "run" / "manifest.json").exists()  # refused in preflight: nothing ran


@pytest.mark.parametrize("name", ["data.jsonl", "data", "data.ndjson"])
def test_gzip_is_read_whatever_the_name(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(gzip.compress(LINES))
    records = list(RecordReader(path, "generate"))
    assert [(r.id, r.prompt) for r in records if isinstance(r, Record)] == [("a", "one two"), ("b", "three")]
    plain = tmp_path / "plain.jsonl.gz"  # named gzip, but it is not: read as the text it is
    plain.write_bytes(LINES)
    assert [r.id for r in RecordReader(plain, "generate")] == ["a", "b"]


def test_gzip_and_binary_on_standard_input(tmp_path: Path) -> None:
    reader = RecordReader("-", "generate", stdin=io.BytesIO(gzip.compress(LINES)))
    assert [r.id for r in reader] == ["a", "b"]
    with pytest.raises(InputError, match=r"^standard input is a PNG image, which adam cannot read"):
        list(RecordReader("-", "generate", stdin=io.BytesIO(PNG)))


def test_a_parquet_file_under_another_name_is_read_as_parquet(tmp_path: Path, caplog) -> None:
    path = tmp_path / "export.jsonl"
    pq.write_table(pa.table({"id": ["a", "b"], "prompt": ["one two", "three"]}), path)
    summary = run(compose_cfg("backend=echo", f"job.input={path}", run_dir=tmp_path / "run"))
    assert summary.exit_code == ExitCode.OK
    assert {r["id"]: r["text"] for r in read_jsonl(summary.run_dir / "results.jsonl")} == {"a": "one two", "b": "three"}
    assert "is a Parquet file (its first bytes say so): reading it as Parquet" in caplog.text
    gz = tmp_path / "export.jsonl.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    with pytest.raises(InputError, match=r"is a gzip-compressed Parquet file: decompress it"):
        RecordReader(gz, "generate")


def test_in_a_directory_a_binary_file_is_its_error_line_and_never_reaches_the_model(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "note.txt").write_text("plain text note", encoding="utf-8")
    (docs / "logo.png").write_bytes(PNG)
    (docs / "tool").write_bytes(Path(sys.executable).resolve().read_bytes()[:100_000])
    (docs / "packed.md").write_bytes(gzip.compress(b"a gzipped document"))
    (docs / "table.txt").write_bytes(b"PAR1\x15\x04")
    summary = run(compose_cfg("backend=echo", "job=embed", f"job.input={docs}", run_dir=tmp_path / "run"))
    assert summary.exit_code == ExitCode.PARTIAL
    results = {r["id"] for r in read_jsonl(summary.run_dir / "results.jsonl")}
    assert results == {"note.txt", "packed.md"}  # the model saw the two texts and nothing else
    errors = {e["id"]: e["error"] for e in read_jsonl(summary.run_dir / "errors.jsonl")}
    assert {k: v["code"] for k, v in errors.items()} == dict.fromkeys(
        ("logo.png", "tool", "table.txt"), "invalid_input"
    )
    assert errors["logo.png"]["message"].startswith("the file is a PNG image, not text")
    assert errors["tool"]["message"].startswith("the file is an ELF executable, not text")
    assert errors["table.txt"]["message"].startswith("the file is a Parquet file, not a text document")
    reader = RecordReader(docs, "embed")
    texts = {r.id: r.text for r in reader if isinstance(r, Record)}
    assert texts == {"note.txt": "plain text note", "packed.md": "a gzipped document"}
    assert all(isinstance(r, InvalidRecord) or r.id in texts for r in RecordReader(docs, "embed"))


def _csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("fmt", ["csv", "tsv", "csv.gz", "parquet"])
def test_a_table_without_the_text_column_stops_before_any_model_loads(tmp_path: Path, fmt: str) -> None:
    rows = {"id": ["1", "2", "3"], "question": ["What?", "Why?", "How?"], "answer": ["x", "y", "z"]}
    path = tmp_path / f"q.{fmt}"
    if fmt == "parquet":
        pq.write_table(pa.table(rows), path)
    else:
        sep = "\t" if fmt == "tsv" else ","
        text = "".join(sep.join(row) + "\n" for row in zip(*([k, *v] for k, v in rows.items()), strict=True))
        path.write_bytes(gzip.compress(text.encode()) if fmt.endswith(".gz") else text.encode())
    with pytest.raises(InputError) as caught:
        run(compose_cfg("backend=echo", f"job.input={path}", run_dir=tmp_path / "run"))
    assert str(caught.value) == (
        f"{path} has no 'prompt' (or 'messages') column; its columns are id, question, answer: "
        "set job.text_field=question"
    )
    assert not (tmp_path / "run" / "manifest.json").exists()
    summary = run(compose_cfg("backend=echo", f"job.input={path}", "job.text_field=question", run_dir=tmp_path / "ok"))
    assert summary.exit_code == ExitCode.OK and summary.stats.ok == 3


def test_the_guess_is_a_usual_name_else_the_first_text_column(tmp_path: Path) -> None:
    def refusal(*overrides: str, path: Path) -> str:
        with pytest.raises(InputError) as caught:
            run(compose_cfg("backend=echo", f"job.input={path}", *overrides, run_dir=tmp_path / "run"))
        return str(caught.value)

    docs = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"id": [1, 2], "year": [2020, 2021], "body": ["a b", "c d"]}), docs)
    assert refusal("job=embed", path=docs).endswith(
        "has no 'text' column; its columns are id, year, body: set job.text_field=body"
    )
    odd = _csv(tmp_path / "odd.csv", "n,score,remark\n1,0.5,fine words\n")
    assert refusal(path=odd).endswith("its columns are n, score, remark: set job.text_field=remark")
    named = _csv(tmp_path / "named.csv", "id,question\n1,What?\n")
    message = refusal("job.text_field=query", path=named)
    assert (
        message
        == f"{named} has no 'query' column (job.text_field); its columns are id, question: set job.text_field=question"
    )
    only_numbers = _csv(tmp_path / "numbers.csv", "a,b\n1,2\n")
    assert refusal(path=only_numbers).endswith("its columns are a, b: add a 'prompt' column")


def test_tables_the_parser_can_read_are_not_refused(tmp_path: Path) -> None:
    openai = tmp_path / "batch.parquet"
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    pq.write_table(
        pa.table({"custom_id": ["r1"], "method": ["POST"], "url": ["/v1/chat/completions"], "body": [body]}), openai
    )
    messages = tmp_path / "chat.parquet"
    pq.write_table(pa.table({"id": ["c"], "messages": [[{"role": "user", "content": "hello there"}]]}), messages)
    for path in (openai, messages):
        summary = run(compose_cfg("backend=echo", f"job.input={path}", run_dir=tmp_path / path.stem))
        assert summary.exit_code == ExitCode.OK and summary.stats.ok == 1
