"""Exit status 5, "no record succeeded": an input that holds no records, and a run in which every record failed.

Neither may look like success to cron or systemd (the shipped unit counts 3 as success), and a sweep
ranks 5 above a stop (4), explicitly rather than by number.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, compose_cfg, read_jsonl, write_jsonl

from adam.backends.echo import EchoBackend
from adam.errors import SEVERITY, BackendError, ExitCode, worst
from adam.run.runner import run
from adam.run.sweep import worst_exit_code

GOOD = [{"id": "a", "prompt": "one two"}, {"id": "b", "prompt": "three"}]


def _run(tmp_path: Path, *overrides: str, name: str = "run"):
    return run(compose_cfg("backend=echo", *overrides, run_dir=tmp_path / name))


def _manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))


def _adam(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "adam", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=300, check=False)


def _empty_inputs(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (overrides, what the message says), for inputs that hold no record."""
    (tmp_path / "empty.jsonl").write_bytes(b"")
    (tmp_path / "blank.txt").write_text("\n  \n\n", encoding="utf-8")
    (tmp_path / "header.csv").write_text("id,prompt\n", encoding="utf-8")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / ".hidden.txt").write_text("not read", encoding="utf-8")
    return {
        "empty file": ([f"job.input={tmp_path / 'empty.jsonl'}"], "empty.jsonl is empty"),
        "blank lines": ([f"job.input={tmp_path / 'blank.txt'}"], "blank.txt holds no records"),
        "csv header only": ([f"job.input={tmp_path / 'header.csv'}"], "header.csv holds no records"),
        "empty directory": (["job=embed", f"job.input={tmp_path / 'docs'}"], "docs holds no files"),
    }


@pytest.mark.parametrize("case", ["empty file", "blank lines", "csv header only", "empty directory"])
def test_an_input_without_records_exits_5_unless_allowed(tmp_path: Path, case: str) -> None:
    overrides, says = _empty_inputs(tmp_path)[case]
    summary = _run(tmp_path, *overrides)
    assert (summary.status, summary.exit_code) == ("empty", ExitCode.NO_SUCCESS)
    assert says in summary.message and "job.allow_empty=true" in summary.message and "\n" not in summary.message
    manifest = _manifest(summary.run_dir)
    assert (manifest["status"], manifest["exit_code"], manifest["error"]) == ("empty", 5, summary.message)
    allowed = _run(tmp_path, *overrides, "job.allow_empty=true", name="allowed")
    assert (allowed.status, allowed.exit_code, allowed.message) == ("completed", ExitCode.OK, "")
    assert read_jsonl(allowed.run_dir / "results.jsonl") == read_jsonl(allowed.run_dir / "errors.jsonl") == []


def test_a_dry_run_of_an_empty_input_exits_5_too(tmp_path: Path) -> None:
    overrides, says = _empty_inputs(tmp_path)["empty file"]
    summary = _run(tmp_path, *overrides, "job.dry_run=true")
    assert (summary.status, summary.exit_code) == ("empty", ExitCode.NO_SUCCESS) and says in summary.message
    allowed = _run(tmp_path, *overrides, "job.dry_run=true", "job.allow_empty=true", name="allowed")
    assert (allowed.status, allowed.exit_code) == ("dry_run", ExitCode.OK)


def test_a_shard_without_records_of_its_own_is_not_an_empty_input(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [GOOD[0]])
    summaries = [_run(tmp_path, f"job.input={src}", "job.num_shards=2", f"job.shard={i}", name=f"s{i}") for i in (0, 1)]
    assert sorted(s.stats.ok for s in summaries) == [0, 1]
    assert [(s.status, s.exit_code) for s in summaries] == [("completed", ExitCode.OK)] * 2


def test_every_record_failing_exits_5_and_names_the_first_error(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": "x"}, "not json", {"id": "c", "text": "y"}])
    done = _adam("backend=echo", f"job.input={src}", f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 5, done.stderr
    errors = [line for line in done.stderr.splitlines() if "[ERROR]" in line]
    assert len(errors) == 1 and "Traceback" not in done.stderr
    assert "no record succeeded: all 3 failed, the first (line 1): missing 'prompt'" in errors[0]
    manifest = _manifest(tmp_path / "run")
    assert (manifest["status"], manifest["exit_code"], manifest["counts"]["failed"]) == ("all_failed", 5, 3)
    some = write_jsonl(tmp_path / "some.jsonl", [*GOOD, "not json"])
    assert _run(tmp_path, f"job.input={some}", name="some").exit_code == ExitCode.PARTIAL  # 3 stays "some failed"


def test_a_dry_run_in_which_every_record_is_invalid_exits_5(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", ["not json", {"id": "b"}])
    summary = _run(tmp_path, f"job.input={src}", "job.dry_run=true")
    assert (summary.status, summary.exit_code) == ("dry_run_invalid", ExitCode.NO_SUCCESS)
    assert "0 records would run" in summary.message and "not one record is valid" in summary.message
    one_good = write_jsonl(tmp_path / "one.jsonl", [GOOD[0], "not json"])
    assert _run(tmp_path, f"job.input={one_good}", "job.dry_run=true", name="one").exit_code == ExitCode.PARTIAL


def test_a_resume_is_judged_over_every_session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = EchoBackend._generate_batch

    def failing_on(word: str):
        def generate(self, requests):
            if any(word in r.text for r in requests):
                raise BackendError("HTTP 500: upstream reset")
            return real(self, requests)

        return generate

    src = write_jsonl(tmp_path / "in.jsonl", [*GOOD, {"id": "c", "prompt": "four"}])
    monkeypatch.setattr(EchoBackend, "_generate_batch", failing_on("three"))
    first = _run(tmp_path, f"job.input={src}")
    assert (first.stats.ok, first.stats.failed, first.exit_code) == (2, 1, ExitCode.PARTIAL)
    nothing_left = _run(tmp_path, f"job.input={src}", f"job.resume={first.run_dir}", name="r1")
    assert (nothing_left.stats.ok, nothing_left.stats.failed, nothing_left.exit_code) == (0, 0, ExitCode.PARTIAL)
    monkeypatch.setattr(EchoBackend, "_generate_batch", failing_on(""))  # every request fails from here on
    retried = _run(tmp_path, f"job.input={src}", f"job.resume={first.run_dir}", "job.retry_errors=true", name="r2")
    assert (retried.stats.ok, retried.stats.failed) == (0, 1)
    assert retried.exit_code == ExitCode.PARTIAL  # all it retried failed again, yet the run holds two results
    none_ok = _run(tmp_path, f"job.input={src}", name="none")
    assert (none_ok.status, none_ok.exit_code) == ("all_failed", ExitCode.NO_SUCCESS)
    again = _run(tmp_path, f"job.input={src}", f"job.resume={none_ok.run_dir}", name="r3")
    assert (again.stats.ok, again.stats.failed, again.exit_code) == (0, 0, ExitCode.NO_SUCCESS)
    assert _manifest(none_ok.run_dir)["totals"] == {"results": 0, "errors": 3, "skipped_as_done": 3}


def test_the_worst_status_of_a_sweep_is_ranked_explicitly() -> None:
    assert SEVERITY == (ExitCode.OK, ExitCode.PARTIAL, ExitCode.STOPPED, ExitCode.NO_SUCCESS, ExitCode.CONFIG)
    assert worst() == 0 and worst(3, 0) == 3 and worst(4, 3) == 4
    assert worst(4, 5) == worst(5, 4) == 5  # no record succeeded ranks above a resumable stop
    assert worst(5, 1) == worst(1, 4) == worst(3, 1) == 1  # a job that could not run at all ranks above all
    rows = [{"exit_code": 4}, {"exit_code": 5}, {"exit_code": 3}, {"status": "running"}]
    assert worst_exit_code(rows) == 5


def test_the_docs_and_the_shipped_units_agree_with_the_exit_statuses() -> None:
    page = (REPO / "docs" / "exit-statuses.md").read_text(encoding="utf-8")
    table = "\n".join(line for line in page.splitlines() if line.startswith("| "))
    documented = {int(m) for m in re.findall(r"^\| (\d) \|", table, flags=re.M)}
    assert documented == {int(code) for code in ExitCode}
    assert "no record succeeded" in table and "job.allow_empty=true" in table
    unit = (REPO / "jobs" / "scheduled" / "adam-embed.service").read_text(encoding="utf-8")
    assert re.findall(r"^SuccessExitStatus=(.*)$", unit, flags=re.M) == ["3"] and "5 no document succeeded" in unit
    cron = (REPO / "jobs" / "scheduled" / "nightly-embed.cron").read_text(encoding="utf-8")
    assert "5 no document succeeded" in cron and "[ $s -eq 3 ]" in cron
    notes = (REPO / "jobs" / "scheduled" / "README.md").read_text(encoding="utf-8")
    assert "5 when no document succeeded" in notes


def test_shards_in_which_every_record_failed_merge_into_a_run_that_exits_5(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": f"r{i}", "text": "not a prompt"} for i in range(8)])
    shards = [
        _run(tmp_path, f"job.input={src}", f"job.shard={k}", "job.num_shards=2", name=f"sweep/{k}") for k in (0, 1)
    ]
    assert [(s.status, s.exit_code) for s in shards] == [("all_failed", ExitCode.NO_SUCCESS)] * 2
    merged = run(compose_cfg("job=merge", f"job.runs={tmp_path / 'sweep'}", run_dir=tmp_path / "merged"))
    assert (merged.status, merged.exit_code, merged.stats.failed) == ("all_failed", ExitCode.NO_SUCCESS, 8)
