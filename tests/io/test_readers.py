"""RecordReader: every source kind, every bad-line case, hashing and counting."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import os
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from adam.errors import InputError
from adam.io import line_input
from adam.io.readers import RecordReader
from adam.io.records import InvalidRecord, Record
from adam.io.validation import SCHEMA_NAMES, load_schema

EXAMPLES = Path(__file__).resolve().parents[2] / "jobs" / "examples"
HUGE = 5 * 1024 * 1024  # characters in the one huge prompt of the corpus


def _line(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def _chat(text: str = "hi") -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _corpus() -> list[bytes]:
    """Line n of the corpus file is item n-1; every bad case sits between good lines."""
    openai = {"method": "POST", "url": "/v1/chat/completions"}
    return [
        b"\xef\xbb\xbf" + _line({"id": "g1", "prompt": "first good"}),  # 1, with a BOM
        b"   ",  # 2 blank
        b"{not json",  # 3
        b"[1, 2]",  # 4
        _line({"id": "m1"}),  # 5
        _line({"id": "e1", "prompt": ""}),  # 6
        _line({"id": "n1", "prompt": 42}),  # 7
        _line({"id": "t1", "prompt": "x", "temperature": "hot"}),  # 8
        _line({"id": "t2", "prompt": "x", "max_tokens": 0}),  # 9
        _line({"id": "g2", "prompt": "second good", "stop": "END", "max_tokens": 5, "temperature": 0.5, "seed": 3.0}),
        _line({"id": "g1", "prompt": "duplicate"}),  # 11
        _line({"id": True, "prompt": "bool id"}),  # 12
        _line({"id": 1.5, "prompt": "float id"}),  # 13
        _line({"id": None, "prompt": "null id"}),  # 14
        _line({"id": {"a": 1}, "prompt": "object id"}),  # 15
        b'{"id": "u1", "prompt": "caf\xe9"}',  # 16: Latin-1, not UTF-8
        _line({"id": "g3", "prompt": "CRLF line"}) + b"\r",  # 17
        _line({"id": "big", "prompt": "x" * HUGE}),  # 18
        _line({"custom_id": "o1", "method": "POST", "url": "/v1/embeddings", "body": {"input": "x"}}),  # 19
        _line({"custom_id": "o2", **openai, "method": "GET", "body": {"messages": _chat()}}),  # 20
        _line({"custom_id": "o3", **openai, "body": {"messages": _chat(), "n": 2}}),  # 21
        _line({"custom_id": "o4", "method": "POST", "url": "/v1/responses", "body": {}}),  # 22
        _line({"id": "x1", "prompt": "extras", "team": "bio", "max_token": 7, "temprature": 1}),  # 23
        _line(
            {
                "id": "x2",
                "prompt": "${oc.env:HOME}",
                "_target_": "os.system",
                "cfg": "${hydra:runtime.cwd}",
                "max_token": 9,
            }
        ),
        _line(
            {
                "id": "c1",
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                ],
                "metadata": {"k": [1, 2]},
            }
        ),  # 25
        _line({"prompt": "no id"}),  # 26
        _line("just a string"),  # 27
        _line({"id": "both", "prompt": "p", "messages": _chat()}),  # 28
        _line({**openai, "body": {"messages": _chat()}}),  # 29: looks like OpenAI, has no custom_id
        _line(
            {
                "custom_id": "o5",
                "method": "POST",
                "url": "/v1/completions",
                "body": {"prompt": "raw", "max_completion_tokens": 4, "model": "gpt-x", "suffix": "!"},
            }
        ),  # 30
        _line({"custom_id": "o6", **openai, "body": {"messages": _chat("last"), "stop": ["a", "b"], "top_p": 0.5}}),
    ]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    path.write_bytes(b"\n".join(_corpus()) + b"\n")
    return path


def _by_line(reader: RecordReader) -> dict[int, Record | InvalidRecord]:
    out = list(reader)
    lines = [r.line for r in out]
    assert lines == sorted(lines), "records must come out in input order"
    return {r.line: r for r in out}


def test_corpus_every_line_has_the_expected_outcome(corpus: Path, caplog: pytest.LogCaptureFixture) -> None:
    reader = RecordReader(corpus, "generate")
    with caplog.at_level(logging.WARNING):
        got = _by_line(reader)
    assert 2 not in got  # blank lines are skipped but still counted
    assert set(got) == set(range(1, 32)) - {2}

    valid = {n: r for n, r in got.items() if isinstance(r, Record)}
    assert sorted(valid) == [1, 10, 17, 18, 23, 24, 25, 26, 30, 31]
    assert [valid[n].id for n in sorted(valid)] == ["g1", "g2", "g3", "big", "x1", "x2", "c1", 26, "o5", "o6"]

    assert valid[1].prompt == "first good" and valid[1].chat and valid[1].format == "native"
    assert valid[10].params == {"max_tokens": 5, "temperature": 0.5, "stop": ["END"], "seed": 3}
    assert isinstance(valid[10].params["seed"], int)
    assert valid[17].prompt == "CRLF line"
    assert valid[18].prompt == "x" * HUGE
    assert valid[23].extra == {"team": "bio", "max_token": 7, "temprature": 1} and valid[23].params == {}
    # input data is only data: interpolations and _target_ pass through as plain strings
    assert valid[24].prompt == "${oc.env:HOME}"
    assert valid[24].extra == {"_target_": "os.system", "cfg": "${hydra:runtime.cwd}", "max_token": 9}
    assert valid[25].messages == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "a\nb"}]
    assert valid[25].metadata == {"k": [1, 2]} and valid[25].prompt is None
    assert valid[26].prompt == "no id"
    assert (valid[30].format, valid[30].url, valid[30].chat) == ("openai", "/v1/completions", False)
    assert (valid[30].prompt, valid[30].params) == ("raw", {"max_tokens": 4})
    assert valid[31].messages == _chat("last") and valid[31].params == {"stop": ["a", "b"], "top_p": 0.5}

    bad = {n: r for n, r in got.items() if isinstance(r, InvalidRecord)}
    expected: dict[int, tuple[Any, str]] = {
        3: (None, "not valid JSON: Expecting property name enclosed in double quotes at column 2"),
        4: (None, "expected a JSON object, got an array"),
        5: ("m1", "missing 'prompt' (or 'messages')"),
        6: ("e1", "'prompt' is empty"),
        7: ("n1", "'prompt' must be a non-empty string, got 42"),
        8: ("t1", "'temperature' must be a number between 0 and 2, got \"hot\""),
        9: ("t2", "'max_tokens' must be an integer of at least 1, got 0"),
        11: ("g1", "duplicate id 'g1' (first seen on line 1)"),
        12: (None, "'id' must be a non-empty string or an integer, got true"),
        13: (None, "'id' must be a non-empty string or an integer, got 1.5"),
        14: (None, "'id' must be a non-empty string or an integer, got null"),
        15: (None, "'id' must be a non-empty string or an integer, got {\"a\": 1}"),
        16: (None, "not valid UTF-8 (byte 0xe9 at offset 27)"),
        19: ("o1", "url '/v1/embeddings' is not supported by a generate job"),
        20: ("o2", '\'method\' must be "POST", got "GET"'),
        21: ("o3", "'n' must be 1: adam returns one completion per request"),
        22: (
            "o4",
            "url '/v1/responses' is not supported by a generate job: use /v1/chat/completions or /v1/completions",
        ),
        27: (None, "expected a JSON object, got a string"),
        28: ("both", "give 'prompt' or 'messages', not both"),
        29: (None, "missing 'custom_id'"),
    }
    assert sorted(bad) == sorted(expected)
    for number, (id_, message) in expected.items():
        assert bad[number].id == id_, number
        assert bad[number].message.startswith(message), (number, bad[number].message)
    assert "each line must be one JSON object" in bad[3].message
    assert bad[19].message.endswith("(or run job=embed)")
    # a snippet only where the line had no usable id
    assert bad[3].snippet == "{not json" and bad[8].snippet is None
    assert bad[16].snippet == '{"id": "u1", "prompt": "caf\ufffd"}'
    assert bad[29].snippet is not None and bad[29].snippet.startswith('{"method": "POST"')
    assert {n for n, r in bad.items() if r.format == "openai"} == {19, 20, 21, 22, 29}

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings.count("unknown field 'max_token' (did you mean 'max_tokens'?) is passed through, not used") == 1
    assert "unknown field 'temprature' (did you mean 'temperature'?) is passed through, not used" in warnings
    assert not any("'team'" in w or "'_target_'" in w for w in warnings)
    assert warnings.count("body key 'suffix' is not supported by adam and is ignored") == 1

    assert reader.sha256 == hashlib.sha256(corpus.read_bytes()).hexdigest()
    assert reader.count_hint() == len(got) == 30  # every record, valid or not; the blank line 2 is none


def test_nan_and_infinity_are_not_json(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"id": "a", "prompt": "p", "temperature": NaN}\n{"id": "b", "prompt": "p", "seed": -Infinity}\n')
    got = list(RecordReader(path, "generate"))
    assert [r.message for r in got] == [
        "not valid JSON: NaN is not a JSON value (use a number or null) — each line must be one JSON object",
        "not valid JSON: -Infinity is not a JSON value (use a number or null) — each line must be one JSON object",
    ]


def test_snippet_is_cut_to_200_characters(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"prompt": ' + "9" * 500 + "}\n")
    (record,) = RecordReader(path, "generate")
    assert isinstance(record, InvalidRecord) and record.id == 1
    assert record.snippet is not None and len(record.snippet) == 200


def test_sha256_is_set_only_after_iteration(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"prompt": "a"}\n{"prompt": "b"}\n')
    reader = RecordReader(path, "generate")
    it = iter(reader)
    next(it)
    assert reader.sha256 is None
    assert len(list(it)) == 1
    assert reader.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_txt_lines_are_prompts_with_line_numbers_as_ids(tmp_path: Path) -> None:
    path = tmp_path / "prompts.txt"
    path.write_bytes(b'\xef\xbb\xbffirst prompt\r\n\r\n  \nfourth {"not": "json"}\nbad \xff byte\n')
    reader = RecordReader(path, "generate")
    got = list(reader)
    assert [(r.line, r.id) for r in got] == [(1, 1), (4, 4), (5, 5)]
    assert isinstance(got[0], Record) and got[0].prompt == "first prompt" and got[0].chat
    assert isinstance(got[1], Record) and got[1].prompt == 'fourth {"not": "json"}'
    assert isinstance(got[2], InvalidRecord) and "not valid UTF-8 (byte 0xff" in got[2].message
    assert reader.count_hint() == len(got) == 3  # the progress bar's total: records, not the blank lines
    assert reader.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_txt_for_embed_gives_texts(tmp_path: Path) -> None:
    path = tmp_path / "texts.txt"
    path.write_text("alpha\nbeta")  # no final newline
    got = list(RecordReader(path, "embed"))
    assert [(r.id, r.text) for r in got if isinstance(r, Record)] == [(1, "alpha"), (2, "beta")]
    assert RecordReader(path, "embed").count_hint() == 2


def test_gzip_jsonl_and_gzip_text(tmp_path: Path) -> None:
    rows = b'{"id": "a", "text": "one"}\n\n{"id": "b", "text": "two", "metadata": {"n": 2}}\n'
    gz = tmp_path / "docs.jsonl.gz"
    gz.write_bytes(gzip.compress(rows))
    reader = RecordReader(gz, "embed")
    got = list(reader)
    assert [(r.line, r.id, r.text, r.metadata) for r in got] == [(1, "a", "one", None), (3, "b", "two", {"n": 2})]
    assert reader.sha256 == hashlib.sha256(gz.read_bytes()).hexdigest()  # the bytes on disk, not the decompressed
    assert reader.count_hint() is None

    txt = tmp_path / "prompts.TXT.gz"
    txt.write_bytes(gzip.compress(b"{looks like json but is a prompt}\nsecond\n"))
    got = list(RecordReader(txt, "generate"))
    assert [(r.id, r.prompt) for r in got] == [(1, "{looks like json but is a prompt}"), (2, "second")]


def test_truncated_gzip_is_an_input_error_after_the_good_lines(tmp_path: Path) -> None:
    data = gzip.compress(b"".join(b'{"prompt": "p%d"}\n' % i for i in range(2000)))
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    reader = RecordReader(path, "generate")
    seen = []
    with pytest.raises(InputError, match=r"cannot read .*cut\.jsonl\.gz after line \d+"):
        for record in reader:
            seen.append(record)
    assert seen and all(isinstance(r, Record) for r in seen)
    assert reader.sha256 is None


def test_directory_gives_one_text_per_file(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / "b.txt").write_text("bee")
    (root / "a.md").write_text("\ufeffay")
    (root / "sub" / "c.txt").write_text("sea")
    (root / "sub" / "deeper" / "d.txt").write_text("dee")
    (root / "latin1.txt").write_bytes(b"caf\xe9")
    (root / "empty.txt").write_text("  \n")
    (root / ".hidden").write_text("skip me")
    (root / ".git" / "config").write_text("skip me too")
    reader = RecordReader(root, "embed")
    expected_ids = ["a.md", "b.txt", "empty.txt", "latin1.txt", "sub/c.txt", "sub/deeper/d.txt"]
    assert reader.count_hint() == len(expected_ids)
    got = list(reader)
    assert [r.id for r in got] == expected_ids
    assert [r.line for r in got] == [1, 2, 3, 4, 5, 6]
    texts = {r.id: r.text for r in got if isinstance(r, Record)}
    assert texts == {"a.md": "ay", "b.txt": "bee", "sub/c.txt": "sea", "sub/deeper/d.txt": "dee"}
    invalid = {r.id: r.message for r in got if isinstance(r, InvalidRecord)}
    assert invalid["empty.txt"] == "file is empty"
    assert invalid["latin1.txt"].startswith("not valid UTF-8 (byte 0xe9 at offset 3)")

    digest = hashlib.sha256()
    for rel in expected_ids:
        digest.update(f"{rel}\0{hashlib.sha256((root / rel).read_bytes()).hexdigest()}\n".encode())
    assert reader.sha256 == digest.hexdigest()


def test_a_directory_file_over_the_size_limit_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(line_input, "MAX_LINE_BYTES", 100)
    (tmp_path / "big.txt").write_text("z" * 101)
    (tmp_path / "small.txt").write_text("z" * 100)
    reader = RecordReader(tmp_path, "embed")
    big, small = reader
    assert isinstance(big, InvalidRecord) and big.message.startswith("file is larger than 100 bytes")
    assert isinstance(small, Record) and small.text == "z" * 100
    digest = hashlib.sha256()
    for name in ("big.txt", "small.txt"):
        digest.update(f"{name}\0{hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()}\n".encode())
    assert reader.sha256 == digest.hexdigest()


def test_gzip_with_no_inner_suffix_is_sniffed(tmp_path: Path) -> None:
    path = tmp_path / "input.gz"
    path.write_bytes(gzip.compress(b'{"id": "j", "prompt": "json inside"}\n'))
    assert [(r.id, r.prompt) for r in RecordReader(path, "generate")] == [("j", "json inside")]


def test_directory_is_refused_for_generate(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"is a directory, which only job=embed reads"):
        RecordReader(tmp_path, "generate")


def test_missing_input_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.jsonl does not exist"):
        RecordReader(tmp_path / "nope.jsonl", "generate")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs POSIX permissions and a non-root user")
def test_unreadable_input_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "secret.jsonl"
    path.write_text('{"prompt": "x"}\n')
    path.chmod(0)
    try:
        with pytest.raises(InputError, match=r"cannot read .*secret\.jsonl"):
            RecordReader(path, "generate")
    finally:
        path.chmod(0o600)


def test_pretty_printed_json_is_refused_once(tmp_path: Path) -> None:
    path = tmp_path / "doc.json"
    path.write_text(json.dumps([{"prompt": "a"}, {"prompt": "b"}], indent=2))
    with pytest.raises(InputError, match=r"pretty-printed JSON document.*jq -c"):
        list(RecordReader(path, "generate"))


def test_stdin_jsonl_and_text_are_sniffed() -> None:
    data = b'\n\n  {"id": "s1", "prompt": "from stdin"}\n{"id": "s2", "prompt": "again"}\n'
    reader = RecordReader("-", "generate", stdin=io.BytesIO(data))
    assert reader.count_hint() is None
    got = list(reader)
    assert [(r.line, r.id, r.prompt) for r in got] == [(3, "s1", "from stdin"), (4, "s2", "again")]
    assert reader.sha256 == hashlib.sha256(data).hexdigest()

    text = b"\xef\xbb\xbf\nplain prompt\n"
    got = list(RecordReader("-", "generate", stdin=io.BytesIO(text)))
    assert [(r.id, r.prompt) for r in got] == [(2, "plain prompt")]


class _Pipe:
    """A pipe that has one chunk ready at a time; read() would wait for a full buffer, so it fails."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def read1(self, size: int = -1) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""

    def read(self, size: int = -1) -> bytes:
        raise AssertionError("read() blocks until the buffer is full")


def test_stdin_records_flow_as_lines_arrive() -> None:
    pipe = _Pipe([b'{"prompt": "first"}\n', b'{"prompt": "second"}\n', b""])
    reader = RecordReader("-", "generate", stdin=pipe)  # type: ignore[arg-type]
    records = iter(reader)
    assert next(records).prompt == "first"
    assert pipe.chunks == [b'{"prompt": "second"}\n', b""]  # the second line was not needed yet
    assert [r.prompt for r in records] == ["second"]
    assert reader.sha256 == hashlib.sha256(b'{"prompt": "first"}\n{"prompt": "second"}\n').hexdigest()


def test_no_extension_is_sniffed_and_an_unknown_one_refused(tmp_path: Path) -> None:
    jsonl = tmp_path / "data"
    jsonl.write_text('{"id": 7, "text": "json it is"}\n')
    assert [(r.id, r.text) for r in RecordReader(jsonl, "embed")] == [(7, "json it is")]
    text = tmp_path / "notes"
    text.write_text("plain text it is\n")
    assert [(r.id, r.text) for r in RecordReader(text, "embed")] == [(1, "plain text it is")]
    unknown = tmp_path / "data.input"
    unknown.write_text('{"id": 7, "text": "json it is"}\n')
    with pytest.raises(InputError, match=r"^adam does not read \.input files .*: give \.jsonl, .*\.csv, \.tsv") as err:
        RecordReader(unknown, "embed")
    assert "\n" not in str(err.value)


def test_id_and_text_fields_can_be_renamed(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    rows = [
        {"key": "k1", "question": "mapped", "id": "kept as extra", "prompt": "also extra"},
        {"key": "k2"},
        {"key": "k3", "question": "q", "temperature": 3},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    got = list(RecordReader(path, "generate", id_field="key", text_field="question"))
    assert isinstance(got[0], Record)
    assert (got[0].id, got[0].prompt, got[0].extra) == ("k1", "mapped", {"id": "kept as extra", "prompt": "also extra"})
    assert isinstance(got[1], InvalidRecord) and got[1].message == "missing 'question' (or 'messages')"
    assert isinstance(got[2], InvalidRecord) and got[2].id == "k3"


def test_missing_text_hints_at_text_field(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"id": "a", "prompt": "wrong name for embed"}\n')
    (record,) = RecordReader(path, "embed")
    assert isinstance(record, InvalidRecord)
    assert record.message == "missing 'text'; this record has 'prompt': set job.text_field=prompt"


def test_duplicate_ids_compare_as_text(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"id": 1, "text": "a"}\n{"id": "1", "text": "b"}\n{"text": "c"}\n{"id": 3, "text": "d"}\n')
    got = list(RecordReader(path, "embed"))
    assert [type(r).__name__ for r in got] == ["Record", "InvalidRecord", "Record", "InvalidRecord"]
    assert got[1].message == "duplicate id '1' (first seen on line 1)"
    assert got[3].message == "duplicate id 3 (first seen on line 3)"  # line 3's id defaulted to its line number


def test_openai_embedding_requests(tmp_path: Path) -> None:
    path = tmp_path / "batch.jsonl"
    req = {"method": "POST", "url": "/v1/embeddings"}
    rows = [
        {"custom_id": "e1", **req, "body": {"model": "m", "input": "plain"}},
        {"custom_id": "e2", **req, "body": {"input": ["one in a list"], "dimensions": 8}},
        {"custom_id": "e3", **req, "body": {"input": ["a", "b"]}},
        {"custom_id": "e4", "method": "POST", "url": "/v1/chat/completions", "body": {"messages": _chat()}},
        {"custom_id": "e5", **req, "body": {}},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    got = list(RecordReader(path, "embed"))
    assert [(r.id, r.text, r.format, r.url) for r in got[:2]] == [
        ("e1", "plain", "openai", "/v1/embeddings"),
        ("e2", "one in a list", "openai", "/v1/embeddings"),
    ]
    assert got[2].message == "one input per line: split the list into lines"
    assert got[3].message == (
        "url '/v1/chat/completions' is not supported by a embed job: use /v1/embeddings (or run job=generate)"
    )
    assert got[4].message == "missing 'input' (a /v1/embeddings request needs it)"


def test_bad_chat_messages(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    rows = [
        {"id": 1, "messages": []},
        {"id": 2, "messages": [{"role": "bot", "content": "x"}]},
        {"id": 3, "messages": [{"role": "user"}]},
        {"id": 4, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
        {"id": 5, "messages": [{"role": "developer", "content": "rules"}, {"role": "user", "content": "q"}]},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    got = list(RecordReader(path, "generate"))
    assert [r.message for r in got[:4]] == [
        '\'messages\' must be a non-empty list of {"role", "content"} objects, got []',
        "'messages[0].role' must be one of system, developer, user, assistant, tool, got \"bot\"",
        "'messages[0]' is missing 'content'",
        'each content part must be {"type": "text", "text": ...}: adam reads text only',
    ]
    assert got[4].messages == [{"role": "system", "content": "rules"}, {"role": "user", "content": "q"}]


def test_an_over_long_line_is_reported_and_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(line_input, "MAX_LINE_BYTES", 1000)
    path = tmp_path / "in.jsonl"
    path.write_text(
        '{"id": "a", "prompt": "ok"}\n{"id": "b", "prompt": "' + "y" * 5000 + '"}\n{"id": "c", "prompt": "ok"}\n'
    )
    got = list(RecordReader(path, "generate"))
    assert [(r.line, type(r).__name__) for r in got] == [(1, "Record"), (2, "InvalidRecord"), (3, "Record")]
    assert got[1].message.startswith("line is longer than 1000 bytes")
    assert got[1].snippet is not None and got[1].snippet.startswith('{"id": "b"')


@pytest.mark.parametrize("name", ["docs.jsonl", "prompts.jsonl", "openai_batch.jsonl", "prompts.txt"])
def test_the_shipped_examples_are_all_valid(name: str) -> None:
    kind = "embed" if name == "docs.jsonl" else "generate"
    got = list(RecordReader(EXAMPLES / name, kind))
    assert got and all(isinstance(r, Record) for r in got), [r for r in got if isinstance(r, InvalidRecord)]


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_schema_files_are_valid_draft_2020_12(name: str) -> None:
    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_source_sha256_up_front_equals_the_hash_iteration_sets(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "a.txt").write_text("first document")
    (docs / "sub" / "b.md").write_text("second one\nwith two lines")
    (docs / ".hidden").write_text("skipped")
    lines = tmp_path / "in.jsonl"
    lines.write_text('{"id": 1, "text": "x"}\n{"id": 2, "text": "y"}\n')
    for source in (docs, lines):
        up_front = RecordReader(source, "embed").source_sha256()
        reader = RecordReader(source, "embed")
        list(reader)
        assert up_front == reader.sha256
    before = RecordReader(docs, "embed").source_sha256()
    (docs / "a.txt").write_text("changed")
    assert RecordReader(docs, "embed").source_sha256() != before  # the dir's hash follows content
    changed = RecordReader(docs, "embed")
    list(changed)
    assert changed.source_sha256() == changed.sha256


def test_count_hint_counts_records_not_blank_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The progress bar's total counted every line, so a file with blank lines never reached 100%."""
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'\n{"id": 1, "prompt": "a"}\n\n \t\r\n{"id": 2, "prompt": "b"}\r\n\n\n{"id": 3, "prompt": "c"}')
    assert RecordReader(path, "generate").count_hint() == len(list(RecordReader(path, "generate"))) == 3
    monkeypatch.setattr(line_input, "CHUNK", 4)  # lines and blank runs split across read blocks
    assert RecordReader(path, "generate").count_hint() == 3
    (tmp_path / "blank.jsonl").write_bytes(b"\n \n\n")
    assert RecordReader(tmp_path / "blank.jsonl", "generate").count_hint() == 0
