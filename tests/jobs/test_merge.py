"""job=merge: shard run dirs become one run dir equal to the unsharded run, or a one-line refusal."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers import compose_cfg, read_jsonl, write_jsonl

from adam.errors import ConfigError, ExitCode
from adam.io.embed_store import EmbeddingStore
from adam.jobs import merge
from adam.run.locks import RunDirLock
from adam.run.runner import run
from adam.run.shard_runs import check_alike, check_complete, find_shard_runs, lock_finished

ECHO = ("backend=echo", "job.progress=false")


def _rows(n: int) -> list[dict | str]:
    rows: list[dict | str] = [{"id": f"r{i}", "prompt": f"say {i} " + "word " * (i % 5)} for i in range(n)]
    rows[5] = "{broken json"
    return rows


def _run(run_dir: Path, *overrides: str):
    return run(compose_cfg(*ECHO, *overrides, run_dir=run_dir))


def _sweep(tmp_path: Path, src: Path, n: int, *overrides: str, name: str = "sweep") -> Path:
    sweep = tmp_path / name
    for k in range(n):
        _run(sweep / str(k), f"job.input={src}", f"job.shard={k}", f"job.num_shards={n}", *overrides)
    return sweep


def _merge(tmp_path: Path, runs: str, *overrides: str, name: str = "merged"):
    return run(compose_cfg("job=merge", f"job.runs={runs}", *overrides, run_dir=tmp_path / name))


def _by_id(path: Path) -> dict:
    return {row["id"]: row for row in read_jsonl(path)}


def test_merge_equals_the_unsharded_run(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", _rows(30))
    whole = _run(tmp_path / "whole", f"job.input={src}")
    sweep = _sweep(tmp_path, src, 3)
    merged = _merge(tmp_path, str(sweep))
    assert (merged.status, merged.exit_code) == ("partial", ExitCode.PARTIAL)  # the broken line failed
    results = read_jsonl(merged.run_dir / "results.jsonl")
    assert len(results) == len({r["id"] for r in results}) == 29  # every id exactly once
    assert _by_id(merged.run_dir / "results.jsonl") == _by_id(whole.run_dir / "results.jsonl")
    assert read_jsonl(merged.run_dir / "errors.jsonl") == read_jsonl(whole.run_dir / "errors.jsonl")
    manifest = json.loads((merged.run_dir / "manifest.json").read_text())
    shards = manifest["merge"]["shards"]
    assert [s["shard"] for s in shards] == [0, 1, 2] and sum(s["results"] for s in shards) == 29
    assert manifest["counts"]["tokens"] == sum(s["tokens"] for s in shards) > 0
    assert manifest["merge"]["slowest_shard"]["wall_time_s"] == max(s["wall_time_s"] for s in shards)
    assert manifest["backend"]["model"] == "echo/demo" and manifest["exit_code"] == 3


def test_merge_of_embeddings_and_stores(tmp_path: Path) -> None:
    docs = [{"id": f"d{i}", "text": f"document {i} about " + "things " * i} for i in range(20)]
    src = write_jsonl(tmp_path / "docs.jsonl", docs)
    whole = _run(tmp_path / "whole", "job=embed", f"job.input={src}")
    sweep = _sweep(tmp_path, src, 2, "job=embed")
    merged = _merge(tmp_path, f"[{sweep / '0'},{sweep / '1'}]")
    assert merged.exit_code == ExitCode.OK
    got, want = (pq.read_table(d / "embeddings.parquet").to_pydict() for d in (merged.run_dir, whole.run_dir))
    assert sorted(got["id"]) == sorted(want["id"]) and len(got["id"]) == 20
    vectors = dict(zip(want["id"], want["vector"], strict=True))
    assert all(np.allclose(v, vectors[i]) for i, v in zip(got["id"], got["vector"], strict=True))

    stores = _sweep(tmp_path, src, 2, "job=embed", f"job.store={tmp_path}/x-${{job.shard}}.db", name="stores")
    target = tmp_path / "all.db"
    merged = _merge(tmp_path, str(stores), f"job.store={target}", name="merged-store")
    manifest = json.loads((merged.run_dir / "manifest.json").read_text())
    assert manifest["counts"]["store"]["records"] == 20 and len(manifest["counts"]["store"]["merged_from"]) == 2
    model = manifest["counts"]["store"]["model"]
    with EmbeddingStore(target, model) as store:
        ids, _, matrix = store.all_vectors()
        assert len(ids) == 20 and store.texts(["d3"]) == {"d3": docs[3]["text"]}
        assert np.allclose(matrix[ids.index("d3")], vectors["d3"])


def _variant(sweep: Path, shard: str, to: Path, **changes: object) -> Path:
    """A copy of a shard's run dir whose manifest differs as given (``job__max_tokens`` edits config.job)."""
    shutil.copytree(sweep / shard, to)
    doc = json.loads((to / "manifest.json").read_text())
    for key, value in changes.items():
        node = doc
        *parents, leaf = key.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    (to / "manifest.json").write_text(json.dumps(doc))
    return to


def _plan(*runs: Path) -> None:
    """The merge's checks, in the order run_merge makes them."""
    found, bare = find_shard_runs([str(r) for r in runs])
    with contextlib.ExitStack() as locks:
        lock_finished(found, locks)
        check_alike(found)
        check_complete(found, bare)


def test_merge_refuses_shards_that_do_not_add_up(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", _rows(30))
    sweep = _sweep(tmp_path, src, 3)
    s0, s1, s2 = (sweep / str(k) for k in range(3))

    def refused(*runs: Path) -> str:
        with pytest.raises(ConfigError) as err:
            _plan(*runs)
        assert "\n" not in str(err.value)
        return str(err.value)

    _plan(s0, s1, s2)  # these add up
    assert "shard 2 of 3 is missing" in refused(s0, s1)
    assert "shard 1 is there twice" in refused(s0, s1, _variant(sweep, "1", tmp_path / "again"), s2)
    four = _variant(sweep, "2", tmp_path / "four", config__job__num_shards=4)
    assert "shard counts differ" in refused(s0, s1, four)
    moved = _variant(sweep, "2", tmp_path / "moved", input__sha256="0" * 64)
    assert "inputs differ" in refused(s0, s1, moved)
    other = _variant(sweep, "2", tmp_path / "other", backend__model="echo/qwen3_small")
    assert "models differ" in refused(s0, s1, other)
    short = _variant(sweep, "2", tmp_path / "short", config__job__max_tokens=3)
    assert "settings differ" in refused(s0, s1, short) and "job.max_tokens: null -> 3" in refused(s0, s1, short)
    assert "was killed while running" in refused(s0, s1, _variant(sweep, "2", tmp_path / "dead", status="running"))
    stopped = _variant(sweep, "2", tmp_path / "stopped", status="stopped")
    message = refused(s0, s1, stopped)
    assert f"shard 2 ({stopped}) ended stopped: resume it first: python -m adam" in message
    assert f"job.resume={stopped}" in message and "job.shard=2 job.num_shards=3" in message
    with RunDirLock(s1):  # a shard still running holds its run dir
        assert f"shard 1 ({s1}) is still running" in refused(s0, s1, s2)

    with pytest.raises(ConfigError, match=r"^shard 2 of 3 is missing: run it \(job.shard=2 job.num_shards=3\)"):
        _merge(tmp_path, f"[{s0},{s1}]")  # the same through run(): one line, and its own run dir failed
    assert json.loads((tmp_path / "merged" / "manifest.json").read_text())["status"] == "failed"
    with pytest.raises(ConfigError, match=r"needs job\.runs="):
        _merge(tmp_path, "null", name="none")


def test_merge_refuses_a_record_twice_in_a_shard_or_in_two(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", _rows(30))
    sweep = _sweep(tmp_path, src, 2)
    results = [sweep / str(k) / "results.jsonl" for k in range(2)]
    lines = [path.read_bytes().splitlines(keepends=True) for path in results]
    twice = json.loads(lines[1][0])["id"]
    results[1].write_bytes(b"".join([*lines[1], lines[1][0]]))  # a line added again (files joined by hand)
    with pytest.raises(ConfigError) as err:
        _merge(tmp_path, str(sweep))
    assert str(err.value).startswith(
        f"shard 1 ({sweep / '1'}) holds id {twice!r} twice (results.jsonl line 1 and results.jsonl line "
        f"{len(lines[1]) + 1}): a shard holds one line per record"
    )
    assert (tmp_path / "merged" / "results.jsonl").read_bytes() == b""  # refused before anything was written
    results[1].write_bytes(b"".join([*lines[1], lines[0][2]]))  # shard 0's record in shard 1 as well
    with pytest.raises(ConfigError, match=r"^id '\w+' is in two shards \(shard 0 .* results.jsonl line 3, shard 1 "):
        _merge(tmp_path, str(sweep), name="across")


def test_sigterm_stops_a_merge_and_the_same_merge_finishes_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = [{"id": f"d{i}", "text": f"document {i}"} for i in range(20)]
    src = write_jsonl(tmp_path / "docs.jsonl", docs)
    sweep = _sweep(tmp_path, src, 3, "job=embed", f"job.store={tmp_path}/x-${{job.shard}}.db")
    target = tmp_path / "all.db"
    copy = merge._append_lines

    def terminated_after_the_first_shard(*args: object) -> int:
        count = copy(*args)
        if not sent:
            sent.append(os.kill(os.getpid(), signal.SIGTERM))  # as `kill <pid>` mid-merge
        return count

    class Killed(Exception):  # SIGTERM's default, ending the process, without ending pytest
        pass

    def killed(signum: int, frame: object) -> None:
        raise Killed

    sent: list[None] = []
    monkeypatch.setattr(merge, "_append_lines", terminated_after_the_first_shard)
    before = signal.signal(signal.SIGTERM, killed)
    try:
        stopped = _merge(tmp_path, str(sweep), f"job.store={target}")
    finally:
        signal.signal(signal.SIGTERM, before)
    assert (stopped.status, stopped.exit_code) == ("interrupted", ExitCode.STOPPED)
    manifest = json.loads((stopped.run_dir / "manifest.json").read_text())
    assert (manifest["status"], manifest["exit_code"]) == ("interrupted", 4)
    assert manifest["error"].startswith("stopped by SIGTERM; run it again to finish it (it starts over): python -m")
    assert f"hydra.run.dir={stopped.run_dir}" in manifest["error"]
    assert 0 < len(read_jsonl(stopped.run_dir / "results.jsonl")) < 20
    monkeypatch.undo()
    again = _merge(tmp_path, str(sweep), f"job.store={target}")  # the same merge, into the same run dir
    assert (again.status, again.exit_code) == ("completed", ExitCode.OK)
    assert sorted(r["id"] for r in read_jsonl(again.run_dir / "results.jsonl")) == sorted(d["id"] for d in docs)
    assert sorted(pq.read_table(again.run_dir / "embeddings.parquet").column("id").to_pylist()) == sorted(
        d["id"] for d in docs
    )
    manifest = json.loads((again.run_dir / "manifest.json").read_text())
    assert manifest["counts"]["ok"] == 20 and manifest["counts"]["store"]["records"] == 20
    with pytest.raises(ConfigError, match="already holds results"):  # a finished merge is not redone
        _merge(tmp_path, str(sweep), f"job.store={target}")


def test_merged_shards_get_the_table_their_job_asked_for(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", _rows(20))
    sweep = _sweep(tmp_path, src, 2, "job.results_format=[jsonl,csv]")
    merged = _merge(tmp_path, str(sweep))
    table = (merged.run_dir / "results.csv").read_text().splitlines()
    assert table[0].startswith("id,prompt,text,")
    ids = [line.split(",", 1)[0] for line in table[1:]]
    assert ids == [r["id"] for r in read_jsonl(merged.run_dir / "results.jsonl")] and len(set(ids)) == 19
