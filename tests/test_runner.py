"""run(cfg) end to end on the echo backend: the same runner path the real backends take."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers import EXAMPLES, compose_cfg, read_jsonl, write_jsonl

from adam.backends.echo import _fraction
from adam.errors import ConfigError, ExitCode
from adam.io.writers import results_to_parquet
from adam.run.manifest import Manifest
from adam.run.runner import run


def _prompts(n: int) -> list[dict]:
    # Lengths vary a lot so length sorting reorders batches.
    return [{"id": f"p{i}", "prompt": " ".join(f"w{i}-{j}" for j in range(1 + (i * 7) % 23))} for i in range(n)]


def _run(tmp_path: Path, *overrides: str, name: str = "run"):
    return run(compose_cfg("backend=echo", *overrides, run_dir=tmp_path / name))


def test_generate_writes_one_result_per_record_with_the_right_text(tmp_path: Path) -> None:
    rows = _prompts(40)
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    summary = _run(tmp_path, f"job.input={src}", "job.batch_size=7", "job.window=16", "job.max_tokens=1000")
    assert summary.exit_code == ExitCode.OK
    results = read_jsonl(summary.run_dir / "results.jsonl")
    assert sorted(r["id"] for r in results) == sorted(r["id"] for r in rows)
    by_id = {r["id"]: r for r in results}
    for row in rows:
        got = by_id[row["id"]]
        assert got["text"] == row["prompt"]
        assert got["usage"]["completion_tokens"] == len(row["prompt"].split())
        assert got["finish_reason"] == "stop"
    assert read_jsonl(summary.run_dir / "errors.jsonl") == []
    manifest = json.loads((summary.run_dir / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["exit_code"] == 0
    assert manifest["counts"]["ok"] == 40 and manifest["counts"]["failed"] == 0
    assert manifest["input"]["sha256"] == __import__("hashlib").sha256(src.read_bytes()).hexdigest()
    assert manifest["config"]["job"]["batch_size"] == 7
    assert manifest["backend"]["backend"] == "echo"


def test_batch_size_does_not_change_results(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", _prompts(30))
    one = _run(tmp_path, f"job.input={src}", "job.batch_size=1", name="one")
    many = _run(tmp_path, f"job.input={src}", "job.batch_size=16", name="many")
    key = lambda r: r["id"]  # noqa: E731
    assert sorted(read_jsonl(one.run_dir / "results.jsonl"), key=key) == sorted(
        read_jsonl(many.run_dir / "results.jsonl"), key=key
    )


def test_bad_records_become_error_lines_and_the_rest_still_run(tmp_path: Path) -> None:
    src = write_jsonl(
        tmp_path / "in.jsonl",
        [
            {"id": "a", "prompt": "first good"},
            "{not json",
            {"id": "b", "prompt": ""},
            {"id": "c", "prompt": "second good", "temperature": "hot"},
            {"id": "a", "prompt": "duplicate id"},
            {"id": "d", "prompt": "third good", "team": "x"},
        ],
    )
    summary = _run(tmp_path, f"job.input={src}")
    assert summary.exit_code == ExitCode.PARTIAL
    assert [r["id"] for r in read_jsonl(summary.run_dir / "results.jsonl")] == ["a", "d"]
    errors = {e["line"]: e for e in read_jsonl(summary.run_dir / "errors.jsonl")}
    assert set(errors) == {2, 3, 4, 5}
    assert errors[4]["id"] == "c" and "temperature" in errors[4]["error"]["message"]
    assert errors[5]["id"] == "a" and "duplicate" in errors[5]["error"]["message"]
    assert all(e["error"]["code"] == "invalid_input" for e in errors.values())
    assert read_jsonl(summary.run_dir / "results.jsonl")[1]["extra"] == {"team": "x"}


def test_backend_failures_are_per_record(tmp_path: Path) -> None:
    rows = _prompts(50)
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    summary = _run(tmp_path, f"job.input={src}", "backend.failure_rate=0.3", "job.batch_size=8")
    assert summary.exit_code == ExitCode.PARTIAL
    should_fail = {r["id"] for r in rows if _fraction(r["prompt"]) < 0.3}
    assert 0 < len(should_fail) < len(rows)
    errors = read_jsonl(summary.run_dir / "errors.jsonl")
    assert {e["id"] for e in errors} == should_fail
    assert all(e["error"]["code"] == "backend_error" for e in errors)
    assert {r["id"] for r in read_jsonl(summary.run_dir / "results.jsonl")} == {r["id"] for r in rows} - should_fail


def test_unavailable_backend_stops_the_run_with_status_4(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", _prompts(3))
    summary = _run(tmp_path, f"job.input={src}", "backend.unavailable=true")
    assert summary.exit_code == ExitCode.STOPPED
    manifest = json.loads((summary.run_dir / "manifest.json").read_text())
    assert manifest["status"] == "stopped" and "unavailable" in manifest["error"]


def test_openai_batch_input_gives_openai_batch_output(tmp_path: Path) -> None:
    src = EXAMPLES / "openai_batch.jsonl"
    summary = _run(tmp_path, f"job.input={src}", "job.max_tokens=100")
    assert summary.exit_code == ExitCode.OK
    out = {r["custom_id"]: r for r in read_jsonl(summary.run_dir / "results.jsonl")}
    assert set(out) == {"request-1", "request-2"}
    body = out["request-1"]["response"]["body"]
    assert out["request-1"]["response"]["status_code"] == 200 and out["request-1"]["error"] is None
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "What is the capital of Germany?"}
    assert body["usage"]["completion_tokens"] == 6
    assert out["request-2"]["response"]["body"]["choices"][0]["message"]["content"] == "Name a prime number above 10."


def test_record_params_win_over_job_and_domain(tmp_path: Path) -> None:
    words = " ".join(f"w{i}" for i in range(50))
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": 1, "prompt": words, "max_tokens": 3}, {"id": 2, "prompt": words}])
    summary = _run(tmp_path, f"job.input={src}", "job.max_tokens=5")
    by_id = {r["id"]: r for r in read_jsonl(summary.run_dir / "results.jsonl")}
    assert by_id[1]["text"] == "w0 w1 w2" and by_id[1]["finish_reason"] == "length"
    assert by_id[2]["text"] == "w0 w1 w2 w3 w4"
    domain_default = compose_cfg().domain.max_tokens
    summary = _run(tmp_path, f"job.input={src}", name="domain")
    by_id = {r["id"]: r for r in read_jsonl(summary.run_dir / "results.jsonl")}
    assert by_id[2]["usage"]["completion_tokens"] == min(50, domain_default)


def test_fields_named_differently_are_mapped(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [{"key": "k1", "question": "mapped prompt"}])
    summary = _run(tmp_path, f"job.input={src}", "job.id_field=key", "job.text_field=question")
    (result,) = read_jsonl(summary.run_dir / "results.jsonl")
    assert (result["id"], result["text"]) == ("k1", "mapped prompt")


def test_txt_input_uses_line_numbers_as_ids(tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("first prompt\n\nthird line prompt\n")
    summary = _run(tmp_path, f"job.input={src}")
    assert {r["id"]: r["text"] for r in read_jsonl(summary.run_dir / "results.jsonl")} == {
        1: "first prompt",
        3: "third line prompt",
    }


def test_embed_writes_vectors_to_results_and_parquet(tmp_path: Path) -> None:
    summary = _run(tmp_path, "job=embed", "size=minilm", f"job.input={EXAMPLES / 'docs.jsonl'}", "job.batch_size=4")
    assert summary.exit_code == ExitCode.OK
    results = {r["id"]: r for r in read_jsonl(summary.run_dir / "results.jsonl")}
    table = pq.read_table(summary.run_dir / "embeddings.parquet").to_pylist()
    assert sorted(row["id"] for row in table) == sorted(results)
    for row in table:  # written from the arrays as batches finished: the same float32 values as the JSON
        assert np.array_equal(np.float32(row["vector"]), np.float32(results[row["id"]]["embedding"]))
        assert json.loads(row["metadata"]) == results[row["id"]]["metadata"]
        assert abs(np.linalg.norm(row["vector"]) - 1.0) < 1e-5
    manifest = json.loads((summary.run_dir / "manifest.json").read_text())
    assert manifest["counts"]["parquet_rows"] == len(table) == 6
    rebuilt = results_to_parquet(summary.run_dir / "results.jsonl", tmp_path / "rebuilt.parquet")
    assert rebuilt == 6 and pq.read_table(tmp_path / "rebuilt.parquet").to_pylist() == table


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["job.input=does/not/exist.jsonl"], "does/not/exist.jsonl"),
        (["size=minilm"], "embedding model"),
        (["size=local"], "size.path"),
        (["+job.batchsize=8"], "job.batchsize (did you mean job.batch_size?)"),
        # Job values the types allow but no record could run with: they failed every record, after the model loaded.
        (["job.max_tokens=-5"], "'job.max_tokens' must be an integer of at least 1, got -5"),
        (["job.temperature=3"], "'job.temperature' must be a number between 0 and 2, got 3.0"),
        (["domain.top_p=0"], "'domain.top_p' must be a number above 0 and at most 1, got 0.0"),
        (["job.batch_size=0"], "'job.batch_size' must be at least 1, got 0"),
        (["job=embed", "size=minilm", "job.chunk_tokens=8", "job.chunk_overlap=8"], "below job.chunk_tokens=8"),
    ],
)
def test_config_mistakes_fail_before_the_backend_is_built(tmp_path: Path, overrides: list[str], fragment: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        _run(tmp_path, *overrides)
    assert not (tmp_path / "run" / "manifest.json").exists()


def test_a_run_dir_with_results_is_not_overwritten(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", _prompts(2))
    _run(tmp_path, f"job.input={src}")
    with pytest.raises(ConfigError, match="already holds results"):
        _run(tmp_path, f"job.input={src}")


def test_info_job_describes_backend_and_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    summary = _run(tmp_path, "job=info", "job.format=json", "size=qwen3_small")
    assert summary.exit_code == ExitCode.OK
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((summary.run_dir / "info.json").read_text())
    assert printed["backend"]["backend"] == "echo" and printed["size"] == "qwen3_small"
    assert "qwen3_xl" in printed["available"]["sizes"]


def test_rates_come_from_the_time_measured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The progress written between batches divided by max(0, 1e-9) seconds: 2e9 records/s after one batch."""
    from adam.run import run_control

    monkeypatch.setattr(run_control, "PROGRESS_EVERY_S", 0.0)  # the progress is rewritten after every batch
    seen: list[dict] = []
    original = Manifest.update

    def spy(self: Manifest, **fields: object) -> None:
        if "progress" in fields:
            seen.append(dict(fields["progress"]))  # type: ignore[arg-type]
        original(self, **fields)

    monkeypatch.setattr(Manifest, "update", spy)
    src = write_jsonl(tmp_path / "in.jsonl", _prompts(6))
    summary = _run(tmp_path, f"job.input={src}", "job.batch_size=2", "backend.delay=0.05")
    assert seen
    for progress in seen:  # each batch waited 0.05 s, so no rate can pass 2 records per 0.05 s
        assert 0 < progress["records_per_s"] <= 2 / 0.05, progress
    counts = json.loads((summary.run_dir / "manifest.json").read_text())["counts"]
    assert 0 < counts["records_per_s"] <= 6 / (3 * 0.05)


def test_jobs_that_time_nothing_report_no_rates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """job=info reported 1e9 records/s (1 record in max(0, 1e-9) seconds), and the sweep report showed it."""
    summary = _run(tmp_path, "job=info", "size=qwen3_small")
    counts = json.loads((summary.run_dir / "manifest.json").read_text())["counts"]
    assert counts["ok"] == 1 and "records_per_s" not in counts and "tokens_per_s" not in counts
