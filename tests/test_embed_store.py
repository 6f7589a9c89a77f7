"""job=embed job.store=...: only new or changed texts are embedded; reuse, metadata updates, prune, export."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers import EXAMPLES, compose_cfg, read_jsonl, write_jsonl

from adam.engine import Engine
from adam.errors import ConfigError, ExitCode
from adam.io.embed_store import EmbeddingStore
from adam.run.runner import build_backend, run


def _docs(n: int = 6) -> list[dict]:
    return [{"id": f"d{i}", "text": f"document number {i} about topic {i % 3}", "metadata": {"n": i}} for i in range(n)]


def _embed(tmp_path: Path, src: Path, store: Path, *overrides: str, name: str, size: str = "demo"):
    cfg = compose_cfg(
        "backend=echo" if size == "demo" else "backend=huggingface",
        "job=embed",
        f"size={size}" if size != "demo" else "size=demo",
        f"job.input={src}",
        f"job.store={store}",
        "job.batch_size=4",
        *overrides,
        run_dir=tmp_path / name,
    )
    summary = run(cfg)
    manifest = json.loads((summary.run_dir / "manifest.json").read_text())
    return summary, manifest["counts"]


def _stored(store: Path) -> dict[str, tuple[str, str | None, np.ndarray]]:
    """id -> (sha256, metadata, vector) straight from SQLite."""
    with sqlite3.connect(store) as db:
        rows = db.execute(
            "SELECT r.id, r.sha256, r.metadata, v.vector FROM records r JOIN vectors v "
            "ON v.model = r.model AND v.sha256 = r.sha256"
        ).fetchall()
    return {i: (sha, meta, np.frombuffer(blob, dtype=np.float32)) for i, sha, meta, blob in rows}


def test_rerun_embeds_only_what_changed(tmp_path: Path) -> None:
    store = tmp_path / "store.db"
    docs = _docs()
    src = write_jsonl(tmp_path / "in.jsonl", docs)
    first, counts = _embed(tmp_path, src, store, name="first")
    assert first.exit_code == ExitCode.OK
    assert (counts["embedded"], counts["reused"], counts["unchanged"]) == (6, 0, 0)
    assert len(_stored(store)) == 6

    _, counts = _embed(tmp_path, src, store, name="same")
    assert (counts["embedded"], counts["unchanged"], counts["metadata_updated"]) == (0, 6, 0)

    docs[2]["text"] = "a changed text"
    write_jsonl(src, docs)
    second, counts = _embed(tmp_path, src, store, name="one_changed")
    assert (counts["embedded"], counts["unchanged"]) == (1, 5)  # exactly one text embedded the second time
    statuses = {r["id"]: r["status"] for r in read_jsonl(second.run_dir / "results.jsonl")}
    assert statuses["d2"] == "embedded" and {s for i, s in statuses.items() if i != "d2"} == {"unchanged"}


def test_same_text_new_id_reuses_the_vector_and_metadata_change_does_not_embed(tmp_path: Path) -> None:
    store = tmp_path / "store.db"
    docs = _docs()
    src = write_jsonl(tmp_path / "in.jsonl", docs)
    _embed(tmp_path, src, store, name="first")
    before = _stored(store)
    docs.append({"id": "copy-of-d1", "text": docs[1]["text"], "metadata": {"copy": True}})
    docs[3]["metadata"] = {"n": 3, "tag": "new"}
    write_jsonl(src, docs)
    _, counts = _embed(tmp_path, src, store, name="second")
    assert (counts["embedded"], counts["reused"], counts["metadata_updated"], counts["unchanged"]) == (0, 1, 1, 5)
    after = _stored(store)
    np.testing.assert_array_equal(after["copy-of-d1"][2], before["d1"][2])
    assert json.loads(after["d3"][1]) == {"n": 3, "tag": "new"}
    assert after["d3"][0] == before["d3"][0]  # same content hash: not re-embedded


def test_prune_removes_ids_gone_from_the_input_and_export_matches_the_store(tmp_path: Path) -> None:
    store = tmp_path / "store.db"
    docs = _docs()
    src = write_jsonl(tmp_path / "in.jsonl", docs)
    _embed(tmp_path, src, store, name="first")
    write_jsonl(src, docs[:4])
    _, counts = _embed(tmp_path, src, store, name="no_prune")
    assert counts["pruned"] == 0 and len(_stored(store)) == 6
    pruned, counts = _embed(tmp_path, src, store, "job.prune=true", name="prune")
    assert counts["pruned"] == 2 and sorted(_stored(store)) == ["d0", "d1", "d2", "d3"]
    assert counts["store"]["records"] == 4
    with sqlite3.connect(store) as db:  # the two unused vectors went too
        assert db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0] == 4
    table = pq.read_table(pruned.run_dir / "embeddings.parquet").to_pylist()
    stored = _stored(store)
    assert [row["id"] for row in table] == sorted(stored) and counts["parquet_rows"] == 4
    for row in table:
        np.testing.assert_array_equal(np.asarray(row["vector"], dtype=np.float32), stored[row["id"]][2])
        assert json.loads(row["metadata"]) == {"n": int(row["id"][1:])}


@pytest.mark.parametrize("emptied", ["empty_dir", "only_invalid_lines"])
def test_an_input_without_records_never_prunes(tmp_path: Path, emptied: str, caplog: pytest.LogCaptureFixture) -> None:
    store = tmp_path / "notes.db"
    _embed(tmp_path, write_jsonl(tmp_path / "in.jsonl", _docs(3)), store, name="first")
    if emptied == "empty_dir":  # the nightly job's folder, unmounted or emptied
        (src := tmp_path / "empty").mkdir()
        refused, _ = _embed(tmp_path, src, store, "job.prune=true", "job.prune_max_fraction=1.0", name="refused")
        assert (refused.status, refused.exit_code) == ("empty", ExitCode.NO_SUCCESS)  # the run ends there, exit 5
        assert sorted(_stored(store)) == ["d0", "d1", "d2"]
        allowed = ["job.allow_empty=true"]  # then the run goes on to the prune, which the guard still stops
    else:
        src = write_jsonl(tmp_path / "bad.jsonl", ["{broken", {"id": "x"}])
        allowed = []
    _, counts = _embed(tmp_path, src, store, "job.prune=true", "job.prune_max_fraction=1.0", *allowed, name="prune")
    assert counts["pruned"] == 0 and sorted(_stored(store)) == ["d0", "d1", "d2"]
    assert f"nothing was pruned from {store}: job.input={src} holds no records" in caplog.text


def test_a_prune_past_job_prune_max_fraction_is_refused_in_one_line_and_loses_nothing(tmp_path: Path) -> None:
    store = tmp_path / "store.db"
    docs = _docs(6)
    src = write_jsonl(tmp_path / "in.jsonl", docs)
    _embed(tmp_path, src, store, name="first")
    write_jsonl(src, [*docs[:2], {"id": "new", "text": "a new document"}])  # 4 of the 6 are gone
    refused, counts = _embed(tmp_path, src, store, "job.prune=true", name="refused")
    assert (refused.exit_code, refused.status) == (ExitCode.STOPPED, "stopped")
    assert refused.message.startswith(
        f"refused to prune {store}: job.input={src} lacks 4 of the 6 records the store held before this run (67%), "
        "more than job.prune_max_fraction=0.5; nothing was pruned"
    )
    assert "\n" not in refused.message and f"job.resume={refused.run_dir}" in refused.message
    assert counts["embedded"] == 1 and sorted(_stored(store)) == ["d0", "d1", "d2", "d3", "d4", "d5", "new"]
    manifest = json.loads((refused.run_dir / "manifest.json").read_text())
    assert (manifest["status"], manifest["exit_code"]) == ("stopped", 4)
    cfg = compose_cfg(  # allowed on resume: the work done stays, only the prune runs
        "backend=echo", "job=embed", "size=demo", f"job.input={src}", f"job.store={store}", "job.batch_size=4",
        "job.prune=true", "job.prune_max_fraction=1.0", f"job.resume={refused.run_dir}", run_dir=tmp_path / "unused",
    )  # fmt: skip
    allowed = run(cfg)
    assert allowed.exit_code == ExitCode.OK and allowed.stats.extra["pruned"] == 4
    assert sorted(_stored(store)) == ["d0", "d1", "new"]
    with pytest.raises(ConfigError, match=r"'job\.prune_max_fraction' must be between 0 and 1"):
        _embed(tmp_path, src, store, "job.prune_max_fraction=1.5", name="bad_fraction")


def test_stored_vectors_equal_freshly_computed_ones_and_failures_stay_out(tmp_path: Path) -> None:
    store = tmp_path / "store.db"
    docs = _docs(30)
    src = write_jsonl(tmp_path / "in.jsonl", docs)
    summary, counts = _embed(tmp_path, src, store, "backend.failure_rate=0.2", name="flaky")
    failed = {e["id"] for e in read_jsonl(summary.run_dir / "errors.jsonl")}
    assert summary.exit_code == ExitCode.PARTIAL and failed
    assert set(_stored(store)) == {d["id"] for d in docs} - failed
    plain = run(compose_cfg("backend=echo", "job=embed", f"job.input={src}", run_dir=tmp_path / "plain"))
    fresh = {r["id"]: np.asarray(r["embedding"], dtype=np.float32) for r in read_jsonl(plain.run_dir / "results.jsonl")}
    for id_, (_, _, vector) in _stored(store).items():
        np.testing.assert_allclose(vector, fresh[id_], rtol=1e-6)
    _, counts = _embed(tmp_path, src, store, name="healed")  # the failed ones are embedded on the next run
    assert counts["embedded"] == len({d["text"] for d in docs if d["id"] in failed})


def test_the_store_keys_vectors_by_model(tmp_path: Path) -> None:
    store_path = tmp_path / "store.db"
    with EmbeddingStore(store_path, "model-a") as a:
        a.commit_batch({"h": np.ones(3, dtype=np.float32)}, [("x", "h", None)])
    with EmbeddingStore(store_path, "model-b") as b:
        assert b.records(["x"]) == {} and b.vectors(["h"]) == {}
    engine = Engine(build_backend(compose_cfg("backend=echo", "size=qwen3_embedding_0_6b", "size.dimensions=64")))
    assert engine.store_key({"model": "m", "revision": "abc"}) == "m@abc#64"


@pytest.mark.slow
def test_minilm_store_reuses_exactly_the_vectors_a_fresh_run_computes(tmp_path: Path) -> None:
    store = tmp_path / "store.db"
    docs = read_jsonl(EXAMPLES / "docs.jsonl")
    src = write_jsonl(tmp_path / "in.jsonl", docs)
    first, counts = _embed(tmp_path, src, store, name="first", size="minilm")
    assert first.exit_code == ExitCode.OK and counts["embedded"] == len(docs)
    renamed = [{**d, "id": f"new-{d['id']}"} if i == 0 else d for i, d in enumerate(docs)]
    renamed.append({"id": "extra", "text": "A brand new sentence about databases."})
    write_jsonl(src, renamed)
    _, counts = _embed(tmp_path, src, store, "job.prune=true", name="second", size="minilm")
    assert (counts["embedded"], counts["reused"], counts["unchanged"], counts["pruned"]) == (1, 1, len(docs) - 1, 1)
    plain = run(compose_cfg("job=embed", "size=minilm", f"job.input={src}", run_dir=tmp_path / "plain"))
    fresh = {r["id"]: r["embedding"] for r in read_jsonl(plain.run_dir / "results.jsonl")}
    stored = _stored(store)
    assert sorted(stored) == sorted(fresh)
    for id_, (_, _, vector) in stored.items():
        np.testing.assert_allclose(vector, fresh[id_], atol=1e-5)


def test_search_returns_the_most_similar_stored_records(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store.db"
    docs = [
        {"id": "cats", "text": "cats purr and chase mice", "metadata": {"kind": "animal"}},
        {"id": "rust", "text": "the rust compiler checks borrows"},
        {"id": "tea", "text": "green tea is brewed at low temperature"},
    ]
    _embed(tmp_path, write_jsonl(tmp_path / "in.jsonl", docs), store, name="fill")
    capsys.readouterr()
    cfg = compose_cfg(
        "backend=echo",
        "job=search",
        "size=demo",  # the size the store was filled with (job=search defaults to minilm)
        f"job.store={store}",
        "job.query=cats chase mice",
        "job.top_k=2",
        run_dir=tmp_path / "search",
    )
    summary = run(cfg)
    assert summary.exit_code == ExitCode.OK
    (line,) = read_jsonl(summary.run_dir / "results.jsonl")
    assert json.loads(capsys.readouterr().out) == line
    assert line["hits"][0]["id"] == "cats" and len(line["hits"]) == 2
    assert line["hits"][0]["metadata"] == {"kind": "animal"}
    assert line["hits"][0]["text"] == "cats purr and chase mice"  # the store keeps texts by default
    assert line["hits"][0]["score"] > line["hits"][1]["score"]
    queries = tmp_path / "queries.txt"
    queries.write_text("rust compiler borrows\ngreen tea temperature\n")
    cfg = compose_cfg(
        "backend=echo",
        "job=search",
        "size=demo",
        f"job.store={store}",
        f"job.queries={queries}",
        "job.top_k=1",
        run_dir=tmp_path / "many",
    )
    summary = run(cfg)
    assert [r["hits"][0]["id"] for r in read_jsonl(summary.run_dir / "results.jsonl")] == ["rust", "tea"]


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ([], "needs job.store"),
        (["job.store=missing.db", "job.query=x"], "missing.db does not exist"),
        (["job.store={db}"], "needs job.query"),
    ],
)
def test_search_config_mistakes_fail_before_the_backend(tmp_path: Path, overrides: list[str], fragment: str) -> None:
    db = tmp_path / "s.db"
    EmbeddingStore(db, "m").close()
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        run(compose_cfg("backend=echo", "job=search", *[o.format(db=db) for o in overrides], run_dir=tmp_path / "r"))
