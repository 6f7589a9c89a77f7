"""CSV, TSV, Parquet and Hugging Face dataset inputs, the reader chosen by extension, and the whole-input refusals."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import logging
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from adam.errors import InputError
from adam.io import readers, tabular
from adam.io.readers import RecordReader
from adam.io.records import InvalidRecord, Record

HAS_DATASETS = importlib.util.find_spec("datasets") is not None
needs_datasets = pytest.mark.skipif(not HAS_DATASETS, reason="no datasets library (its extra)")


def _read(path: Path, kind: str = "generate", **kwargs: Any) -> list[Record | InvalidRecord]:
    return list(RecordReader(path, kind, **kwargs))  # type: ignore[arg-type]


# ----------------------------------------------------------------- CSV and TSV
def test_csv_header_names_fields_params_become_numbers_and_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "prompts.csv"
    path.write_text(
        "id,prompt,temperature,max_tokens,seed,top_p,team\n"  # line 1
        'a,"hello, world",0.5,3,-7,1,bio\n'  # 2
        "\n"  # 3: blank, skipped
        'b,"two\nlines",hot,,,,\n'  # 4-5: a quoted cell over two lines; temperature does not convert
        "c,third,,0,,,\n"  # 6: max_tokens 0 is out of range
        "d,fourth,1e-1,,,.5,\n",  # 7
        encoding="utf-8",
    )
    got = _read(path)
    assert [r.line for r in got] == [2, 4, 6, 7]
    first, second, third, fourth = got
    assert isinstance(first, Record)
    assert (first.id, first.prompt, first.extra) == ("a", "hello, world", {"team": "bio"})
    assert first.params == {"temperature": 0.5, "max_tokens": 3, "seed": -7, "top_p": 1}
    assert isinstance(first.params["max_tokens"], int) and isinstance(first.params["temperature"], float)
    assert isinstance(second, InvalidRecord)
    assert (second.id, second.message) == ("b", "'temperature' must be a number between 0 and 2, got \"hot\"")
    assert isinstance(third, InvalidRecord) and third.message.startswith(
        "'max_tokens' must be an integer of at least 1"
    )
    assert isinstance(fourth, Record) and fourth.params == {"temperature": 0.1, "top_p": 0.5}  # empty cells: unset


def test_csv_flags_read_as_true_or_false(tmp_path: Path) -> None:
    path = tmp_path / "flags.csv"
    path.write_text("id,prompt,ignore_eos,logprobs\na,hi,TRUE,True\nb,hi,,false\nc,hi,yes,\n", encoding="utf-8")
    first, second, third = _read(path)
    assert isinstance(first, Record) and first.params == {"ignore_eos": True, "logprobs": True, "top_logprobs": 0}
    assert isinstance(second, Record) and second.params == {}  # an empty cell: unset; logprobs false asks nothing
    assert isinstance(third, InvalidRecord) and third.message == "'ignore_eos' must be true or false, got \"yes\""


def test_csv_without_an_id_column_numbers_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "docs.csv"
    path.write_bytes(b"\xef\xbb\xbftext,metadata\r\nfirst doc,m1\r\n\r\nsecond doc,m2\r\n,\r\nthird,\r\n")
    got = _read(path, "embed")
    assert [(r.line, r.id, r.text, r.metadata) for r in got] == [  # type: ignore[union-attr]
        (2, 1, "first doc", "m1"),
        (4, 2, "second doc", "m2"),
        (6, 3, "third", ""),
    ]
    assert RecordReader(path, "embed").count_hint() == 4  # lines with text, less the header: rough, but cheap


def test_csv_row_errors_stay_on_their_row(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(
        b"key,question,,extra\n"  # an unnamed column (a pandas index) is ignored
        b"k1,caf\xe9,x,\n"  # 2: Latin-1, not UTF-8
        b"k2,too,many,fields,here\n"  # 3
        b"k3,short\n"  # 4: a short row leaves the last fields unset
        b"k3,dup,,\n"  # 5: the id of line 4 again
    )
    got = _read(path, id_field="key", text_field="question")
    by_line = {r.line: r for r in got}
    assert sorted(by_line) == [2, 3, 4, 5]
    bad = by_line[2]
    assert isinstance(bad, InvalidRecord) and bad.id == "k1"
    assert bad.message == "not valid UTF-8 (byte 0xe9 at offset 3): save the input as UTF-8"
    assert by_line[3].message == "row has 5 fields but the header has 4: quote fields that contain ','"  # type: ignore[union-attr]
    assert isinstance(by_line[4], Record) and (by_line[4].id, by_line[4].prompt) == ("k3", "short")
    assert by_line[5].message == "duplicate id 'k3' (first seen on line 4)"  # type: ignore[union-attr]


def test_tsv_reads_tabs_and_gzip_keeps_the_hash_of_the_file(tmp_path: Path) -> None:
    body = "id\ttext\nx\tcomma, kept\ny\tsecond\n"
    plain = tmp_path / "docs.tsv"
    plain.write_text(body)
    packed = tmp_path / "docs.tsv.gz"
    packed.write_bytes(gzip.compress(body.encode()))
    for path in (plain, packed):
        reader = RecordReader(path, "embed")
        assert [(r.id, r.text) for r in reader] == [("x", "comma, kept"), ("y", "second")]  # type: ignore[union-attr]
        assert reader.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() == reader.source_sha256()


def test_csv_header_mistakes_are_refused_as_a_whole(tmp_path: Path) -> None:
    path = tmp_path / "twice.csv"
    path.write_text("id,text,text\n1,a,b\n")
    with pytest.raises(InputError, match="the header names the column 'text' twice"):
        _read(path, "embed")


# ----------------------------------------------------------------- Parquet
def test_parquet_rows_keep_nested_columns_and_number_rows(tmp_path: Path) -> None:
    path = tmp_path / "chat.parquet"
    table = pa.table(
        {
            "messages": [[{"role": "user", "content": "hi"}], [{"role": "user", "content": "again"}], []],
            "metadata": [{"n": 1}, {"n": 2}, None],
            "max_tokens": [5, None, 2],
        }
    )
    pq.write_table(table, path, row_group_size=2)  # two row groups
    reader = RecordReader(path, "generate")
    got = list(reader)
    assert [(r.line, r.id) for r in got] == [(1, 1), (2, 2), (3, 3)]
    first, second, third = got
    assert isinstance(first, Record) and first.messages == [{"role": "user", "content": "hi"}]
    assert (first.metadata, first.params) == ({"n": 1}, {"max_tokens": 5})
    assert isinstance(second, Record) and second.params == {}
    assert isinstance(third, InvalidRecord) and "'messages'" in third.message
    assert reader.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() == reader.source_sha256()
    assert RecordReader(path, "generate").count_hint() == 3


def test_parquet_is_read_batch_by_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first record comes out before the later row groups are read: the file is never loaded whole."""
    path = tmp_path / "big.parquet"
    pq.write_table(pa.table({"text": [f"t{i}" for i in range(50)]}), path, row_group_size=10)
    monkeypatch.setattr(tabular, "BATCH_ROWS", 4)
    seen: list[int] = []
    real = tabular.parquet_batches

    def counting(p: Path, *, batch_rows: int) -> Any:
        for batch in real(p, batch_rows=batch_rows):
            seen.append(batch.num_rows)
            yield batch

    monkeypatch.setattr(tabular, "parquet_batches", counting)
    records = iter(RecordReader(path, "embed"))
    assert next(records).text == "t0"  # type: ignore[union-attr]
    assert seen == [4]  # one batch of at most BATCH_ROWS rows decoded so far
    assert [r.text for r in records][-1] == "t49"  # type: ignore[union-attr]
    assert sum(seen) == 50 and max(seen) == 4


def test_parquet_values_without_a_json_form(tmp_path: Path) -> None:
    import datetime

    path = tmp_path / "odd.parquet"
    table = pa.table(
        {
            "text": ["a", "b", "c"],
            "when": [datetime.date(2024, 1, 2), None, None],
            "blob": [None, b"\xff\xfe", None],
            "score": [None, None, float("nan")],
        }
    )
    pq.write_table(table, path)
    first, second, third = _read(path, "embed")
    assert isinstance(first, Record) and first.extra["when"] == "2024-01-02"
    assert isinstance(second, InvalidRecord) and second.message.startswith("'blob' holds binary data")
    assert isinstance(third, InvalidRecord) and third.message.startswith("'score' is NaN or infinity")


def test_a_file_named_parquet_that_is_not_is_one_error(tmp_path: Path) -> None:
    path = tmp_path / "fake.parquet"
    path.write_text('{"text": "not parquet"}\n')
    with pytest.raises(InputError, match=r"cannot read .*fake\.parquet as Parquet: .*is it a Parquet file\?$"):
        _read(path, "embed")


# ----------------------------------------------------------------- the reader by extension, and refusals
@pytest.mark.parametrize("name", ["data.xlsx", "data.parquet.gz", "archive.tar.gz", "notes.md"])
def test_an_unknown_extension_is_refused_in_one_line_listing_the_supported(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"id,text\n1,x\n")
    with pytest.raises(InputError) as err:
        RecordReader(path, "embed")
    message = str(err.value)
    assert message.startswith("adam does not read ") and "\n" not in message
    for supported in (".jsonl", ".txt", ".csv", ".tsv", ".parquet", "hf://datasets/<name>", "a directory"):
        assert supported in message


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".txt", ""])
def test_utf16_is_refused_as_a_whole_input(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"in{suffix}"
    path.write_bytes('{"id": 1, "text": "x"}\n'.encode("utf-16"))  # with its byte order mark
    with pytest.raises(InputError, match=r"is UTF-16 text .*: save as UTF-8") as err:
        _read(path, "embed")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".txt"])
def test_cr_only_line_endings_are_refused_in_one_line(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"old-mac{suffix}"
    path.write_bytes(b"text\r" + b'{"text": "a"}\r' * 3)
    with pytest.raises(InputError, match=r"ends its lines with CR alone .*convert them to LF") as err:
        _read(path, "embed")
    assert "\n" not in str(err.value)
    crlf = tmp_path / f"windows{suffix}"  # CR LF is fine, and so is a stray CR inside a line
    body = {".jsonl": b'{"text":\r "a"}\r\n{"text": "c"}\r\n', ".csv": b"text\r\na\r\nc\r\n", ".txt": b"a\rb\r\nc\r\n"}
    crlf.write_bytes(body[suffix])
    assert all(isinstance(r, Record) for r in _read(crlf, "embed"))


def test_invalid_utf8_lines_stay_per_line_errors(tmp_path: Path) -> None:
    path = tmp_path / "mixed.txt"
    path.write_bytes(b"good line\ncaf\xe9 au lait\nlast\n")
    got = _read(path, "embed")
    assert [type(r).__name__ for r in got] == ["Record", "InvalidRecord", "Record"]
    assert got[1].line == 2 and "save the input as UTF-8" in got[1].message  # type: ignore[union-attr]


def test_json_and_ndjson_are_json_lines_and_no_extension_is_sniffed(tmp_path: Path) -> None:
    for name in ("a.json", "a.ndjson", "a"):
        path = tmp_path / name
        path.write_text('{"id": "j", "text": "json"}\n')
        assert [(r.id, r.text) for r in _read(path, "embed")] == [("j", "json")]  # type: ignore[union-attr]


# ----------------------------------------------------------------- Hugging Face datasets
@needs_datasets
def test_a_saved_dataset_directory_is_read_as_a_dataset(tmp_path: Path) -> None:
    import datasets

    rows = {"id": ["q1", "q2"], "question": ["what?", ""], "metadata": [{"n": 1}, {"n": 2}]}
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "saved"))
    reader = RecordReader(tmp_path / "saved", "generate", text_field="question")  # a directory, even for generate
    first, second = list(reader)
    assert isinstance(first, Record) and (first.line, first.id, first.prompt, first.metadata) == (
        1,
        "q1",
        "what?",
        {"n": 1},
    )
    assert isinstance(second, InvalidRecord) and (second.line, second.message) == (2, "'question' is empty")
    assert reader.sha256 == reader.source_sha256() == RecordReader(tmp_path / "saved", "embed").source_sha256()
    assert RecordReader(tmp_path / "saved", "generate").count_hint() == 2


@needs_datasets
def test_a_saved_dataset_dict_needs_job_split_when_it_has_many(tmp_path: Path) -> None:
    import datasets

    train = datasets.Dataset.from_dict({"text": ["t1", "t2"]})
    test = datasets.Dataset.from_dict({"text": ["only test"]})
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(InputError, match=r"has the splits train, test: pick one with job.split="):
        _read(tmp_path / "dd", "embed")
    assert [r.text for r in _read(tmp_path / "dd", "embed", split="test")] == ["only test"]  # type: ignore[union-attr]
    with pytest.raises(InputError, match=r"has no split 'dev': it has train, test"):
        _read(tmp_path / "dd", "embed", split="dev")


def test_a_hub_dataset_offline_and_not_cached_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    if not HAS_DATASETS:  # the refusal then says what to install, also in one line
        with pytest.raises(InputError, match=r"datasets library: `pip install -e '.\[datasets\]'` in adam's"):
            _read(Path("hf://datasets/adam-tests/never-published"), "embed")  # type: ignore[arg-type]
        return
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    reader = RecordReader("hf://datasets/adam-tests/never-published", "embed", split="train")
    with pytest.raises(InputError) as err:
        list(reader)
    message = str(err.value)
    assert message.startswith("hf://datasets/adam-tests/never-published is not in the Hugging Face cache")
    assert "HF_HUB_OFFLINE is set" in message and "\n" not in message
    assert readers.input_exists("hf://datasets/adam-tests/never-published")  # not a path that must exist


def test_warnings_for_an_unnamed_column_name_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "pandas.csv"
    path.write_text(",text\n0,first\n1,second\n")
    with caplog.at_level(logging.WARNING):
        assert [r.text for r in _read(path, "embed")] == ["first", "second"]  # type: ignore[union-attr]
    assert "column 1 has no name in the header; it is ignored" in caplog.text
    assert json.dumps([r.extra for r in _read(path, "embed")]) == "[{}, {}]"  # type: ignore[union-attr]
