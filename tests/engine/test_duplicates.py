"""Identical requests in a job (greedy, or sampled with one seed) are computed once; each record gets its own line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import compose_cfg, read_jsonl, write_jsonl

from adam.backends.echo import EchoBackend
from adam.engine import core
from adam.errors import ExitCode
from adam.run.runner import run


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The prompts of every call the echo backend gets, call by call."""
    seen: list[list[str]] = []
    original = EchoBackend._generate_batch

    def spy(self, requests):
        seen.append([r.text for r in requests])
        return original(self, requests)

    monkeypatch.setattr(EchoBackend, "_generate_batch", spy)
    return seen


def _run(tmp_path: Path, rows: list[dict], *overrides: str):
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    return run(compose_cfg("backend=echo", f"job.input={src}", *overrides, run_dir=tmp_path / "run"))


def test_identical_records_make_one_backend_call_and_each_gets_its_line(tmp_path: Path, calls) -> None:
    rows = [{"id": f"same-{i}", "prompt": "What is 2+2?"} for i in range(5)] + [{"id": "other", "prompt": "Hi"}]
    summary = _run(tmp_path, rows)
    assert summary.exit_code == ExitCode.OK
    assert sorted(p for call in calls for p in call) == ["Hi", "What is 2+2?"]  # one request each
    results = {r["id"]: r for r in read_jsonl(summary.run_dir / "results.jsonl")}
    assert set(results) == {r["id"] for r in rows}
    assert len({results[f"same-{i}"]["text"] for i in range(5)}) == 1
    assert results["same-0"]["text"] != results["other"]["text"]
    manifest = json.loads((summary.run_dir / "manifest.json").read_text())
    assert manifest["counts"]["deduplicated"] == 4 and manifest["counts"]["ok"] == 6


def test_a_repeat_in_a_later_batch_is_answered_from_the_first(tmp_path: Path, calls) -> None:
    rows = [{"id": i, "prompt": "same" if i % 3 == 0 else f"p{i}"} for i in range(9)]
    summary = _run(tmp_path, rows, "job.batch_size=2")
    assert sum(call.count("same") for call in calls) == 1
    assert len(read_jsonl(summary.run_dir / "results.jsonl")) == 9
    assert json.loads((summary.run_dir / "manifest.json").read_text())["counts"]["deduplicated"] == 2


def test_sampled_requests_are_shared_only_with_the_same_seed(tmp_path: Path, calls) -> None:
    rows = [
        {"id": "a", "prompt": "x", "temperature": 0.8},  # no seed: each is its own draw
        {"id": "b", "prompt": "x", "temperature": 0.8},
        {"id": "c", "prompt": "x", "temperature": 0.8, "seed": 1},
        {"id": "d", "prompt": "x", "temperature": 0.8, "seed": 1},
        {"id": "e", "prompt": "x", "temperature": 0.8, "seed": 2},
        {"id": "f", "prompt": "x", "max_tokens": 3},  # another setting: another request
    ]
    summary = _run(tmp_path, rows, "job.seed=null")  # the job's default seed (0) would make a and b the same too
    assert sum(len(call) for call in calls) == 5
    assert json.loads((summary.run_dir / "manifest.json").read_text())["counts"]["deduplicated"] == 1


def test_the_remembered_answers_are_bounded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, calls) -> None:
    monkeypatch.setattr(core, "REMEMBERED_ANSWERS", 2)
    rows = [{"id": i, "prompt": p} for i, p in enumerate(["a", "b", "c", "a"])]
    _run(tmp_path, rows, "job.batch_size=1", "job.window=1")
    assert [p for call in calls for p in call] == ["a", "b", "c", "a"]  # "a" was forgotten
