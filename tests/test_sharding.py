"""job.shard/job.num_shards: a stable split by id hash, invalid lines by line number, documents kept whole, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import compose_cfg, read_jsonl, write_jsonl
from omegaconf import OmegaConf

from adam.errors import ConfigError
from adam.io.readers import RecordReader
from adam.io.records import InvalidRecord, Record
from adam.io.sharding import shard_of, shard_of_id, shard_records
from adam.run.launchers import launcher_threads
from adam.run.runner import run


def _rows(n: int) -> list[dict | str]:
    rows: list[dict | str] = [{"id": f"r{i}", "prompt": f"say {i} " + "word " * (i % 5)} for i in range(n)]
    rows[3] = "{broken json"  # no usable id: goes by its line number
    rows[7] = {"id": 7, "prompt": f"a number id {7}"}
    return rows


def test_shard_of_an_id_is_the_sha256_of_its_json_text() -> None:
    # pinned: any machine, any Python hash seed, any later adam must split an input the same way
    assert [shard_of_id("a", 4), shard_of_id("r1", 4), shard_of_id(7, 4), shard_of_id("7", 4)] == [0, 0, 1, 2]
    assert shard_of(InvalidRecord(line=10, id=None, message="x"), 4) == 10 % 4
    assert shard_of(Record(line=10, id="a"), 4) == shard_of_id("a", 4)


def test_shards_partition_the_records() -> None:
    records = [Record(line=i + 1, id=f"id-{i}") for i in range(400)] + [InvalidRecord(401, None, "bad")]
    parts = [list(shard_records(records, k, 3)) for k in range(3)]
    assert sorted(r.line for part in parts for r in part) == list(range(1, 402))  # each exactly once
    assert all(60 < len(part) < 200 for part in parts)  # a hash split, roughly even
    assert list(shard_records(records, 0, 1)) == records


def _mixed_lines() -> bytes:
    """Every kind of line a reader meets: good, invalid with an id, without one, nested too deep, OpenAI, dupes."""
    deep = "[" * 120 + "]" * 120
    lines = []
    for i in range(60):
        lines += [
            json.dumps({"id": f"ok{i}", "prompt": f"p{i}"}),
            json.dumps({"id": f"bad{i}", "prompt": f"p{i}", "max_tokens": -1}),  # invalid, names its id
            json.dumps({"prompt": f"no id {i}"}),  # its id is its line number
            '{"id": "deep' + str(i) + '", "prompt": "x", "metadata": ' + deep + "}",  # the error names no id
            json.dumps({"id": [i], "prompt": "x"}),  # an id that is not one
            "{not json",
            json.dumps(
                {
                    "custom_id": f"c{i}",
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": {"messages": [{"role": "user", "content": "hi"}]},
                }
            ),
            json.dumps({"id": f"ok{i}", "prompt": "a duplicate"}),
        ]
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.parametrize("num_shards", [2, 3])
def test_the_reader_skips_other_shards_lines_as_shard_records_would(tmp_path: Path, num_shards: int) -> None:
    """The reader decides a JSON line's shard before validating it; the split must equal the one after."""
    src = tmp_path / "mixed.jsonl"
    src.write_bytes(_mixed_lines())

    def seen(records):
        return [(r.line, r.id, getattr(r, "message", None)) for r in records]

    whole = list(RecordReader(src, "generate"))
    for k in range(num_shards):
        early = list(shard_records(RecordReader(src, "generate", shard=(k, num_shards)), k, num_shards))
        assert seen(early) == seen(shard_records(whole, k, num_shards))
        assert len(list(RecordReader(src, "generate", shard=(k, num_shards)))) < len(whole)  # it did skip


def _shard_run(tmp_path: Path, name: str, *overrides: str):
    return run(compose_cfg("backend=echo", "job.progress=false", *overrides, run_dir=tmp_path / name))


def test_shard_runs_add_up_to_the_whole_run(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", _rows(40))
    whole = _shard_run(tmp_path, "whole", f"job.input={src}")
    sha = json.loads((whole.run_dir / "manifest.json").read_text())["input"]["sha256"]
    ids, lines = [], []
    for k in range(3):
        summary = _shard_run(tmp_path, f"s{k}", f"job.input={src}", f"job.shard={k}", "job.num_shards=3")
        ids += [r["id"] for r in read_jsonl(summary.run_dir / "results.jsonl")]
        lines += [e["line"] for e in read_jsonl(summary.run_dir / "errors.jsonl")]
        manifest = json.loads((summary.run_dir / "manifest.json").read_text())
        assert manifest["input"]["sha256"] == sha  # every shard records the whole input's hash
    assert sorted(ids, key=str) == sorted((r["id"] for r in read_jsonl(whole.run_dir / "results.jsonl")), key=str)
    assert lines == [4]  # the broken line, reported by exactly one shard


def test_chunked_embed_keeps_a_documents_chunks_in_one_shard(tmp_path: Path) -> None:
    docs = [{"id": f"d{i}", "text": " ".join(f"w{i}-{j}" for j in range(30))} for i in range(12)]
    src = write_jsonl(tmp_path / "docs.jsonl", docs)
    owners: dict[str, set[int]] = {}
    for k in range(2):
        shard = (f"job.shard={k}", "job.num_shards=2")
        summary = _shard_run(tmp_path, f"e{k}", "job=embed", f"job.input={src}", "job.chunk_tokens=8", *shard)
        for row in read_jsonl(summary.run_dir / "results.jsonl"):
            owners.setdefault(row["id"].split("#")[0], set()).add(k)
    assert len(owners) == 12 and all(len(shards) == 1 for shards in owners.values())
    assert all(shard_of_id(doc, 2) in shards for doc, shards in owners.items())


def test_dry_run_counts_its_shard(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", _rows(40))
    counts = [
        _shard_run(tmp_path, f"d{k}", f"job.input={src}", "job.dry_run=true", f"job.shard={k}", "job.num_shards=2")
        for k in range(2)
    ]
    assert sum(s.stats.ok for s in counts) == 39 and sum(s.stats.invalid for s in counts) == 1


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["job.input=-", "job.num_shards=2"], "standard input cannot be sharded"),
        (["job.shard=2", "job.num_shards=2"], "'job.shard' must be at least 0 and below job.num_shards=2"),
        (["job.num_shards=0"], "'job.num_shards' must be at least 1"),
    ],
)
def test_shard_settings_are_refused_in_one_line(tmp_path: Path, overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        _shard_run(tmp_path, "r", *overrides)
    assert "\n" not in str(err.value)


def test_resume_true_finds_the_same_shard_and_refuses_another(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", _rows(40))
    sweep = tmp_path / "sweep"
    for k in range(2):
        _shard_run(sweep, str(k), f"job.input={src}", f"job.shard={k}", "job.num_shards=2")
    (sweep / "1" / "results.jsonl").write_text("")  # shard 1 lost its results: resuming it runs them again
    again = _shard_run(sweep, "1", f"job.input={src}", "job.shard=1", "job.num_shards=2", "job.resume=true")
    assert again.run_dir == sweep / "1" and again.stats.ok > 0  # its own dir, not shard 0's (newer or not)
    with pytest.raises(ConfigError, match=r"job.shard: 0 -> 1"):
        _shard_run(tmp_path, "x", f"job.input={src}", "job.shard=1", "job.num_shards=2", f"job.resume={sweep / '0'}")


def test_parallel_launchers_divide_the_cores() -> None:
    conf = OmegaConf.create
    assert launcher_threads(conf({"n_jobs": 4}), 16) == 4
    assert launcher_threads(conf({"n_jobs": -1}), 16) == 1  # joblib: one job per core
    assert launcher_threads(conf({"n_jobs": 3}), 2) == 1
    assert launcher_threads(conf({"cpus_per_task": 8, "array_parallelism": 16}), 64) == 8  # submitit
    assert launcher_threads(conf({"ray": {"init": {"address": None}, "remote": {"num_cpus": 2}}}), 64) == 2
    assert launcher_threads(conf({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}), 8) is None
