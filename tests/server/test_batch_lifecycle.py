"""A Batch API batch is run as a job is (adam/run/run_session.py): the runner's length sorting and planned batches,
its job.max_errors and its stop on a run of backend failures, and its manifest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import compose_cfg, read_jsonl
from serving import CHAT_ID, engine_for, serving
from test_batch_api import batch_run_dir, client_for, lines_of, manifest_of, submit, wait_answered, wait_for

from adam.errors import ConfigError
from adam.io.record_parser import RecordParser
from adam.run.runner import run
from adam.server.app import create_app
from adam.server.runs_browser import RunsBrowser
from adam.server.state import ServeOptions


def line(custom_id: str, text: str, **body: Any) -> str:
    body = {"model": CHAT_ID, "messages": [{"role": "user", "content": text}], "max_tokens": 4, **body}
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body})


def data_of(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def test_a_batch_is_length_sorted_and_planned_as_a_job_is(tmp_path: Path) -> None:
    texts = ["a " * n for n in (3, 40, 1, 25, 7, 60, 2, 33, 12, 5)]
    data = data_of(*(line(f"r{i}", text) for i, text in enumerate(texts)))
    with serving(engine_for(), state_dir=str(tmp_path / "state"), max_batch=3) as server:
        client = client_for(server.url)
        done = wait_for(client, submit(client, data).id)
        assert done.status == "completed"
        served = [r["custom_id"] for r in lines_of(client.files.content(done.output_file_id).content)]
    (tmp_path / "in.jsonl").write_bytes(data)
    run(compose_cfg("backend=echo", "size=demo", "job.batch_size=3", f"job.input={tmp_path / 'in.jsonl'}",
                    run_dir=tmp_path / "run"))  # fmt: skip
    by_job = [r["custom_id"] for r in read_jsonl(tmp_path / "run" / "results.jsonl")]
    assert served == by_job and served != [f"r{i}" for i in range(10)]  # the runner's order, not the file's


def test_a_batch_stops_past_max_errors_and_keeps_what_it_finished(tmp_path: Path) -> None:
    lines = [line(f"ok{i}", f"fine {i}") for i in range(4)] + [line(f"hot{i}", "x", temperature=9) for i in range(5)]
    options = {"state_dir": str(tmp_path), "max_batch": 2, "batch_job": {"max_errors": 2}}
    with serving(engine_for(), **options) as server:
        client = client_for(server.url)
        failed = wait_for(client, submit(client, data_of(*lines)).id)
        assert failed.status == "failed" and failed.errors is not None and failed.failed_at
        (problem,) = failed.errors.data
        assert problem.code == "stopped" and "more than job.max_errors=2" in problem.message
        errors = lines_of(client.files.content(failed.error_file_id).content)  # never dropped: in the error file
        assert sorted(e["custom_id"] for e in errors) == [f"hot{i}" for i in range(5)]
        assert {e["response"]["body"]["error"]["param"] for e in errors} == {"temperature"}
    manifest = manifest_of(tmp_path, failed.id)
    assert manifest["status"] == "stopped" and manifest["exit_code"] == 4 and manifest["counts"]["invalid"] == 5


def test_a_run_of_backend_failures_stops_a_batch(tmp_path: Path) -> None:
    lines = [line(f"r{i}", f"question {i}") for i in range(20)]
    options = {"state_dir": str(tmp_path), "max_batch": 2, "batch_job": {"max_consecutive_failures": 3}}
    with serving(engine_for("backend.failure_rate=1.0"), **options) as server:
        client = client_for(server.url)
        failed = wait_for(client, submit(client, data_of(*lines)).id)
        assert failed.status == "failed" and failed.errors is not None
        assert "failed 4 requests in a row (job.max_consecutive_failures=3)" in failed.errors.data[0].message
        assert failed.request_counts.failed == 4 and failed.output_file_id is None  # two planned batches of two
    assert manifest_of(tmp_path, failed.id)["counts"]["backend_errors"] == 4
    assert len(read_jsonl(batch_run_dir(tmp_path, failed.id) / "errors.jsonl")) == 4


def test_a_wrong_batch_job_key_is_refused_when_the_server_starts(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key job\.batch_job\.max_errorz"):
        create_app([engine_for()], ServeOptions.of(state_dir=str(tmp_path), batch_job={"max_errorz": 1}))


def test_a_batch_in_which_every_line_failed_ends_its_run_all_failed_as_a_job_does(tmp_path: Path) -> None:
    data = data_of(*(line(f"hot{i}", "x", temperature=9) for i in range(3)))
    with serving(engine_for(), state_dir=str(tmp_path / "state"), max_batch=2) as server:
        client = client_for(server.url)
        done = wait_for(client, submit(client, data).id)
        assert done.status == "completed" and done.request_counts.failed == 3  # OpenAI's status, as OpenAI says it
    (tmp_path / "in.jsonl").write_bytes(data)
    job = run(compose_cfg("backend=echo", "size=demo", f"job.input={tmp_path / 'in.jsonl'}", run_dir=tmp_path / "run"))
    manifest = manifest_of(tmp_path / "state", done.id)
    assert (manifest["status"], manifest["exit_code"]) == (job.status, int(job.exit_code)) == ("all_failed", 5)
    first = (
        "no record succeeded: all 3 failed, the first (line 1): 'temperature' must be a number between 0 and 2, got 9"
    )
    assert manifest["error"] == f"{first}; see {batch_run_dir(tmp_path / 'state', done.id)}"
    assert job.message == f"{first}; see {tmp_path / 'run'}"


def test_each_batch_file_is_read_and_validated_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[int] = []
    parse = RecordParser.from_json_line

    def counted(self: RecordParser, number: int, raw: bytes) -> Any:
        parsed.append(number)
        return parse(self, number, raw)

    monkeypatch.setattr(RecordParser, "from_json_line", counted)
    lines = [line(f"r{i}", f"question {i}") for i in range(4)] + [line("hot", "x", temperature=9)]
    with serving(engine_for(), state_dir=str(tmp_path), max_batch=2) as server:
        client = client_for(server.url)
        done = wait_for(client, submit(client, data_of(*lines)).id)
        assert done.status == "completed" and (done.request_counts.completed, done.request_counts.failed) == (4, 1)
        (error,) = lines_of(client.files.content(done.error_file_id).content)  # a body's 400 kept as validated
    assert sorted(parsed) == [1, 2, 3, 4, 5]  # at validation only: the run reads the requests it kept
    assert error["custom_id"] == "hot" and error["response"]["body"]["error"]["param"] == "temperature"
    assert error["response"]["status_code"] == 400


def test_a_batch_run_dir_is_resumed_and_listed_as_any_run(tmp_path: Path) -> None:
    """A batch the server stopped mid-way is finished by ``python -m adam`` with job.resume=<its run dir>, and the
    runs browser lists it as a run, with the job's outcome."""
    with serving(engine_for("backend.delay=0.02"), state_dir=str(tmp_path / "state"), max_batch=4) as server:
        client = client_for(server.url)
        batch = submit(client, data_of(*(line(f"r{i}", f"question {i}") for i in range(200))))
        wait_answered(client, batch.id, 8, timeout=10)
    run_dir = batch_run_dir(tmp_path / "state", batch.id)
    first = manifest_of(tmp_path / "state", batch.id)
    assert first["status"] == "stopped" and 0 < first["counts"]["ok"] < 200
    source = first["input"]["path"]  # the uploaded file, as the batch's manifest records it
    summary = run(compose_cfg("backend=echo", "size=demo", "job.batch_size=4", f"job.input={source}",
                              f"job.resume={run_dir}", run_dir=tmp_path / "fresh"))  # fmt: skip
    assert (summary.status, summary.exit_code, summary.run_dir) == ("completed", 0, run_dir)
    ids = [r["custom_id"] for r in read_jsonl(run_dir / "results.jsonl")]
    assert sorted(ids) == sorted(f"r{i}" for i in range(200)) and len(set(ids)) == 200  # each line once
    resumed = manifest_of(tmp_path / "state", batch.id)
    assert resumed["resumes"] == 1 and resumed["resumed_from_status"] == "stopped"
    assert resumed["totals"]["results"] == 200 and resumed["totals"]["skipped_as_done"] == first["counts"]["ok"]
    listed = RunsBrowser(tmp_path).runs()["runs"]
    assert [(r["id"], r["job"], r["status"]) for r in listed] == [(f"state/batches/{batch.id}/run", "generate",
                                                                     "completed")]  # fmt: skip
