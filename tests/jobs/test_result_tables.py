"""job.keep_input and job.results_format: a generate run over a CSV reviewed as one table, kept right across resumes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow.parquet as pq
from helpers import compose_cfg, read_jsonl

from adam.errors import ExitCode
from adam.io.result_tables import table_row
from adam.run.runner import run

ROWS = [(f"q{i}", f"what is {i} plus {i}?" + " pad" * (i % 5), "math" if i % 2 else "easy", str(i)) for i in range(30)]


def _csv_input(path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "question", "category", "text"])  # "text" would clash with the answer's column
        writer.writerows(ROWS)
    return path


def _run(tmp_path: Path, *overrides: str, name: str = "run"):
    return run(compose_cfg("backend=echo", *overrides, run_dir=tmp_path / name))


def _table(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "results.csv").open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_a_generate_run_over_a_csv_writes_a_csv_and_parquet_with_the_input_columns(tmp_path: Path) -> None:
    src = _csv_input(tmp_path / "questions.csv")
    formats = "job.results_format=[jsonl,csv,parquet]"
    summary = _run(tmp_path, f"job.input={src}", "job.text_field=question", formats)
    assert summary.exit_code == ExitCode.OK
    lines = read_jsonl(summary.run_dir / "results.jsonl")
    first = lines[0]
    assert list(first)[:2] == ["id", "prompt"]  # what was asked, right beside the id
    by_id = {line["id"]: line for line in lines}
    assert by_id["q3"]["prompt"] == ROWS[3][1] and by_id["q3"]["text"] == ROWS[3][1]  # echo answers the prompt
    assert by_id["q3"]["extra"] == {"category": "math", "text": "3"}
    table = _table(summary.run_dir)
    head = ["id", "question", "category", "input_text", "text", "finish_reason", "prompt_tokens", "completion_tokens"]
    assert list(table[0])[: len(head)] == head and list(table[0])[-1] == "model"
    assert sorted(r["id"] for r in table) == sorted(r[0] for r in ROWS)  # every record once
    row = next(r for r in table if r["id"] == "q4")
    assert (row["question"], row["category"], row["input_text"], row["text"]) == (ROWS[4][1], "easy", "4", ROWS[4][1])
    assert [r["id"] for r in table] == [line["id"] for line in lines]  # results.jsonl's order
    parquet = pq.read_table(summary.run_dir / "results.parquet")
    assert parquet.column_names == list(table[0])
    assert parquet.schema.field("completion_tokens").type == "int64"
    assert parquet.to_pylist() == [
        {**r, "prompt_tokens": int(r["prompt_tokens"]), "completion_tokens": int(r["completion_tokens"])} for r in table
    ]
    manifest = json.loads((summary.run_dir / "manifest.json").read_text())
    assert manifest["counts"]["tables"] == {"results.csv": 30, "results.parquet": 30}


def test_keep_input_off_keeps_results_as_they_were_and_embed_keeps_no_text_by_default(tmp_path: Path) -> None:
    src = _csv_input(tmp_path / "questions.csv")
    summary = _run(tmp_path, f"job.input={src}", "job.text_field=question", "job.keep_input=false")
    assert "prompt" not in read_jsonl(summary.run_dir / "results.jsonl")[0]
    assert not (summary.run_dir / "results.csv").exists()  # jsonl alone unless asked
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"id": i, "text": f"doc {i}"}) + "\n" for i in range(3)))
    embedded = _run(tmp_path, "job=embed", "size=demo", f"job.input={docs}", "job.parquet=false", name="embed")
    assert all("text" not in line for line in read_jsonl(embedded.run_dir / "results.jsonl"))
    kept = _run(tmp_path, "job=embed", "size=demo", f"job.input={docs}", "job.parquet=false", "job.keep_input=true",
                name="embed_kept")  # fmt: skip
    assert [line["text"] for line in read_jsonl(kept.run_dir / "results.jsonl")] == ["doc 0", "doc 1", "doc 2"]


def test_messages_and_params_are_kept_and_a_batch_line_becomes_a_row() -> None:
    line = {"id": 7, "messages": [{"role": "user", "content": "hi"}], "params": {"temperature": 0.5}, "text": "yo",
            "finish_reason": "stop", "usage": {"prompt_tokens": 1, "completion_tokens": 2}, "model": "m",
            "metadata": {"k": 1}}  # fmt: skip
    row = table_row(line)
    assert row["messages"] == line["messages"] and row["temperature"] == 0.5 and row["metadata"] == {"k": 1}
    assert (row["text"], row["completion_tokens"]) == ("yo", 2)
    batch_line = {
        "id": "batch_req_1",
        "custom_id": "r1",
        "response": {"status_code": 200, "body": {"model": "m", "usage": {"prompt_tokens": 3, "completion_tokens": 4},
                     "choices": [{"message": {"content": "answer"}, "finish_reason": "length"}]}},
    }  # fmt: skip
    assert table_row(batch_line) == {"id": "r1", "text": "answer", "finish_reason": "length", "prompt_tokens": 3,
                                     "completion_tokens": 4, "model": "m"}  # fmt: skip


def test_tables_are_rebuilt_from_results_on_resume_with_every_record_once(tmp_path: Path) -> None:
    src = _csv_input(tmp_path / "questions.csv")
    common = [f"job.input={src}", "job.text_field=question", "job.results_format=[csv]", "job.batch_size=4"]
    first = _run(tmp_path, *common, "backend.failure_rate=0.3")
    assert first.exit_code == ExitCode.PARTIAL
    failed = {e["id"] for e in read_jsonl(first.run_dir / "errors.jsonl")}
    assert failed and {r["id"] for r in _table(first.run_dir)} == {r[0] for r in ROWS} - failed
    # a stop part-way (max_errors) leaves no table beside a results.jsonl it would not match
    stopped = _run(tmp_path, *common, "backend.failure_rate=0.3", "job.max_errors=1", name="stopped")
    assert stopped.exit_code == ExitCode.STOPPED and not (stopped.run_dir / "results.csv").exists()
    for run_dir in (first.run_dir, stopped.run_dir):
        again = _run(tmp_path, *common, f"job.resume={run_dir}", "job.retry_errors=true", name=f"again-{run_dir.name}")
        assert again.exit_code == ExitCode.OK
        ids = [r["id"] for r in _table(run_dir)]
        assert sorted(ids) == sorted(r[0] for r in ROWS)  # each record exactly once
        assert ids == [line["id"] for line in read_jsonl(run_dir / "results.jsonl")]


def test_no_input_column_is_overwritten_and_a_wide_integer_does_not_stop_the_tables(tmp_path: Path) -> None:
    rows = [
        {"id": "a", "prompt": "hi", "text": "their text", "input_text": "their input_text", "model": "theirs",
         "account": 123456789012345678901234567890},
        {"id": "b", "prompt": "ho", "account": 7},
    ]  # fmt: skip
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    summary = _run(tmp_path, f"job.input={src}", "job.results_format=[jsonl,csv,parquet]")
    assert summary.exit_code == ExitCode.OK  # pyarrow's OverflowError failed the run that had answered every record
    first = table_row(read_jsonl(summary.run_dir / "results.jsonl")[0])
    assert first["input_text"] == "their input_text" and first["input_input_text"] == "their text"
    assert first["input_model"] == "theirs" and first["text"] == "hi" and first["model"] == "echo/demo"
    parquet = pq.read_table(summary.run_dir / "results.parquet").to_pylist()
    assert [r["account"] for r in parquet] == ["123456789012345678901234567890", "7"]
    assert parquet[0]["input_input_text"] == "their text"
    table = _table(summary.run_dir)
    assert table[0]["account"] == "123456789012345678901234567890" and table[0]["input_text"] == "their input_text"
