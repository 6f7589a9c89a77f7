"""A corpus of bad input through a whole run: each line ends up exactly where it should, the job goes on.

tests/io/test_readers.py checks the same cases record by record at the reader; this checks what a
user sees in results.jsonl and errors.jsonl, with the context-window check that needs a backend.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import compose_cfg

from adam.errors import AdamError, ExitCode
from adam.run.runner import run

OPENAI = {"method": "POST", "url": "/v1/chat/completions"}
TOO_LONG = " ".join(f"w{i}" for i in range(200))  # over size.context_length=100 minus max_tokens=20


def _line(obj: object) -> bytes:
    return json.dumps(obj).encode()


# (line bytes, expected: "ok" | an error code and a fragment of its message | None for a skipped line)
CORPUS: list[tuple[bytes, tuple[str, str] | str | None]] = [
    (b"\xef\xbb\xbf" + _line({"id": "bom", "prompt": "starts with a BOM"}), "ok"),
    (b"   ", None),
    (b"{not json", ("invalid_input", "not valid JSON")),
    (b"[1, 2]", ("invalid_input", "expected a JSON object, got an array")),
    (_line({"id": "m"}), ("invalid_input", "missing 'prompt'")),
    (_line({"id": "e", "prompt": ""}), ("invalid_input", "'prompt' is empty")),
    (_line({"id": "n", "prompt": 42}), ("invalid_input", "'prompt'")),
    (_line({"id": "t", "prompt": "x", "temperature": "hot"}), ("invalid_input", "'temperature'")),
    (_line({"id": "bom", "prompt": "again"}), ("invalid_input", "duplicate id 'bom'")),
    (_line({"id": 1.5, "prompt": "float id"}), ("invalid_input", "must be a non-empty string or an integer")),
    (_line({"id": True, "prompt": "bool id"}), ("invalid_input", "must be a non-empty string or an integer")),
    (b'{"id": "latin1", "prompt": "caf\xe9"}', ("invalid_input", "not valid UTF-8")),
    (_line({"id": "crlf", "prompt": "CRLF line"}) + b"\r", "ok"),
    (_line({"id": "long", "prompt": TOO_LONG}), ("context_overflow", "more than the 80 that fit")),
    (_line({"custom_id": "u", "method": "POST", "url": "/v1/responses", "body": {}}), ("invalid_input", "url")),
    (_line({"custom_id": "g", **OPENAI, "method": "GET", "body": {}}), ("invalid_input", "POST")),
    (_line({"id": "extra", "prompt": "keep extras", "_target_": "os.system", "x": "${oc.env:HOME}"}), "ok"),
    # poison: each of these ended the whole run with a traceback, and every resume and dry run after it
    (b'{"id": "deep", "prompt": "x", "metadata": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", ("invalid_input", "deep")),
    (b'{"id": "digits", "prompt": "x", "metadata": ' + b"9" * 5000 + b"}", ("invalid_input", "digits")),
    (b'{"id": ' + b"9" * 5000 + b', "prompt": "x"}', ("invalid_input", "write it as a string")),
    (b'{"id": "sur\\ud800", "prompt": "x"}', ("invalid_input", "'id' holds a lone UTF-16 surrogate")),
    (b'{"id": "sur", "prompt": "x\\ud800"}', ("invalid_input", "'prompt' holds a lone UTF-16 surrogate")),
    (b'{"id": "inf", "prompt": "x", "metadata": {"v": 1e999}}', ("invalid_input", "1e999 is out of range")),
    (b'{"id": "nul", "prompt": "a\x00b"}', ("invalid_input", "a raw control character (U+0000) at column")),
    (_line({"id": "seed", "prompt": "x", "seed": 2**64}), ("invalid_input", "'seed' must be an integer that fits")),
    (_line({"id": "mt", "prompt": "x", "max_tokens": 10**12}), ("context_overflow", "max_tokens=10^12 leaves no room")),
]


def test_every_kind_of_bad_line_has_its_outcome_and_good_lines_still_run(tmp_path: Path) -> None:
    src = tmp_path / "corpus.jsonl"
    src.write_bytes(b"\n".join(line for line, _ in CORPUS) + b"\n")
    cfg = compose_cfg(
        "backend=echo",
        f"job.input={src}",
        "size.context_length=100",
        "job.max_tokens=20",
        run_dir=tmp_path / "run",
    )
    summary = run(cfg)
    assert summary.exit_code == ExitCode.PARTIAL
    results = {r["id"]: r for r in _strict_jsonl(summary.run_dir / "results.jsonl")}
    errors = {e["line"]: e for e in _strict_jsonl(summary.run_dir / "errors.jsonl")}
    for number, (_, expected) in enumerate(CORPUS, start=1):
        if expected is None:
            assert number not in errors
        elif expected == "ok":
            assert number not in errors, errors.get(number)
        else:
            code, fragment = expected
            error = errors[number]
            got_code = error["error"]["code"] if error.get("error") else None
            if got_code is None:  # OpenAI-format error line
                got_code = error["response"]["body"]["error"]["code"]
                message = error["response"]["body"]["error"]["message"]
            else:
                message = error["error"]["message"]
            assert (got_code, fragment in message, "at at" in message) == (code, True, False), (number, message)
    assert set(results) == {"bom", "crlf", "extra"}
    assert results["bom"]["text"] == "starts with a BOM" and results["crlf"]["text"] == "CRLF line"
    assert results["extra"]["extra"] == {"_target_": "os.system", "x": "${oc.env:HOME}"}  # data, never run
    manifest = json.loads((summary.run_dir / "manifest.json").read_text())
    expected_errors = sum(1 for _, e in CORPUS if isinstance(e, tuple))
    assert manifest["counts"]["failed"] == expected_errors and manifest["counts"]["backend_errors"] == 0


def test_a_dry_run_reads_the_same_corpus_without_stopping(tmp_path: Path) -> None:
    src = tmp_path / "corpus.jsonl"
    src.write_bytes(b"\n".join(line for line, _ in CORPUS) + b"\n")
    summary = run(compose_cfg("backend=echo", f"job.input={src}", "job.dry_run=true", run_dir=tmp_path / "dry"))
    assert summary.status == "dry_run_invalid" and summary.exit_code == ExitCode.PARTIAL
    invalid = sum(1 for _, e in CORPUS if isinstance(e, tuple) and e[0] == "invalid_input")
    assert (summary.stats.ok, summary.stats.invalid) == (len(CORPUS) - 1 - invalid, invalid)  # less the blank line


def _strict_jsonl(path: Path) -> list[dict[str, object]]:
    """Every line of a JSONL file as strict JSON: NaN or Infinity fails the test, as would a torn line."""

    def refuse(name: str) -> object:
        raise AssertionError(f"{path} holds {name}, which is not JSON")

    return [json.loads(line, parse_constant=refuse) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("resume", [False, True])
def test_an_input_that_is_no_file_is_refused_in_one_line_not_read_forever(tmp_path: Path, resume: bool) -> None:
    fifo = tmp_path / "prompts.jsonl"
    os.mkfifo(fifo)  # nothing ever writes to it: reading or hashing it would block for good
    extra = ["job.resume=true"] if resume else []
    cfg = compose_cfg("backend=echo", f"job.input={fifo}", *extra, run_dir=tmp_path / "run")
    with pytest.raises(AdamError, match=f"^input {fifo} is neither a regular file nor a directory: give a file"):
        run(cfg)
    assert not (tmp_path / "run" / "results.jsonl").exists()
