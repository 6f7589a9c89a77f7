"""Vectors are checked before they are written: a NaN, an infinity or a stray width is that record's error.

The Ollama cases go through the fake server (the real client, bad replies on the wire); the store
and search cases through the echo backend, whose width is ``backend.dimensions``.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from fake_ollama import FakeOllama, Model
from helpers import compose_cfg, read_jsonl, write_jsonl

from adam.engine.core import WIDTH_PROBE
from adam.engine.vectors import VectorCheck
from adam.errors import ConfigError, ExitCode
from adam.io.embed_store import EmbeddingStore
from adam.run.runner import run

EMBED_TAG = "qwen3-embedding:0.6b"  # size=qwen3_embedding_0_6b's ollama_tag


def _codes(run_dir: Path) -> dict[str, tuple[str, str]]:
    return {e["id"]: (e["error"]["code"], e["error"]["message"]) for e in read_jsonl(run_dir / "errors.jsonl")}


def test_the_check_takes_the_first_width_and_refuses_what_differs() -> None:
    seen: list[int] = []
    check = VectorCheck(on_width=seen.append)
    assert check.problem(np.ones(4)) is None and (check.width, seen) == (4, [4])
    assert check.problem([1.0, 2.0]) == (
        "the backend returned a 2-wide vector, but this run's vectors are 4-wide: "
        "check backend.dimensions and size.dimensions"
    )
    assert "holding nan (at index 2)" in str(check.problem([0.0, 1.0, math.nan, 1.0]))
    assert "holding inf (at index 0)" in str(check.problem([1e39, 0.0, 0.0, 0.0]))  # past float32, as Parquet holds it
    assert "not one vector" in str(check.problem([[1.0, 2.0], [3.0, 4.0]]))
    assert "not a list of numbers" in str(check.problem(["a", "b", "c", "d"]))
    assert seen == [4]
    recorded = VectorCheck(8, on_width=seen.append)  # a resumed run: the width its manifest recorded
    assert seen == [4, 8] and "but this run's vectors are 8-wide" in str(recorded.problem(np.ones(4)))


def test_bad_and_ragged_vectors_from_the_server_are_errors_and_the_rest_are_written(
    tmp_path: Path, fake_ollama: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADAM_SHARE_DIR", str(tmp_path / "share"))
    fake_ollama.models[EMBED_TAG] = Model(EMBED_TAG)
    bad = {"nan": [math.nan] * 8, "short": [0.5] * 4, "huge": [1e39] * 8}  # (the client refuses non-numbers itself)
    fake_ollama.embedding_of = lambda text, vector: bad.get(text, vector)
    docs = [
        {"id": "good", "text": "the longest text, so the first vector of the run"},
        {"id": "fine", "text": "also ok"},
    ]
    src = write_jsonl(tmp_path / "in.jsonl", [*docs, *({"id": k, "text": k} for k in bad)])
    cfg = compose_cfg(
        "backend=ollama",
        f"backend.host={fake_ollama.url}",
        "size=qwen3_embedding_0_6b",
        "job=embed",
        f"job.input={src}",
        "job.batch_size=8",  # one request: the reply itself is ragged
        run_dir=tmp_path / "run",
    )
    summary = run(cfg)
    assert summary.exit_code == ExitCode.PARTIAL
    probe, batch = fake_ollama.bodies("/api/embed")  # the width is the model's, probed before the first record
    assert probe["input"] == [WIDTH_PROBE] and len(batch["input"]) == 5
    assert [r["id"] for r in read_jsonl(summary.run_dir / "results.jsonl")] == ["good", "fine"]
    codes = _codes(summary.run_dir)
    assert {k: code for k, (code, _) in codes.items()} == dict.fromkeys(bad, "invalid_output")
    assert "holding nan" in codes["nan"][1]
    assert "a 4-wide vector, but this run's vectors are 8-wide" in codes["short"][1]
    assert "holding inf (at index 0)" in codes["huge"][1]  # past what float32 (and so Parquet) holds
    table = pq.read_table(summary.run_dir / "embeddings.parquet")
    assert table.column("id").to_pylist() == ["good", "fine"]
    assert {len(v) for v in table.column("vector").to_pylist()} == {8}


def test_the_width_is_the_models_so_an_outlier_first_is_the_only_error(
    tmp_path: Path, fake_ollama: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADAM_SHARE_DIR", str(tmp_path / "share"))
    fake_ollama.models[EMBED_TAG] = Model(EMBED_TAG)
    fake_ollama.embedding_dim = 16
    outlier = "the outlier, the longest text of all, so the first vector of the run " * 2
    fake_ollama.embedding_of = lambda text, vector: [0.125] * 64 if text == outlier else vector
    docs = [{"id": "odd", "text": outlier}, *({"id": f"d{i}", "text": f"document {i}"} for i in range(4))]
    src = write_jsonl(tmp_path / "in.jsonl", docs)
    store = tmp_path / "store.db"
    common = ("backend=ollama", f"backend.host={fake_ollama.url}", "size=qwen3_embedding_0_6b")

    def embed(*overrides: str, name: str) -> Path:
        summary = run(compose_cfg(*common, "job=embed", f"job.input={src}", *overrides, run_dir=tmp_path / name))
        assert summary.exit_code == ExitCode.PARTIAL
        assert {k: c for k, (c, _) in _codes(summary.run_dir).items()} == {"odd": "invalid_output"}
        assert "a 64-wide vector, but this run's vectors are 16-wide" in _codes(summary.run_dir)["odd"][1]
        assert json.loads((summary.run_dir / "manifest.json").read_text())["dimensions"] == 16
        return summary.run_dir

    plain = embed(name="plain")  # results.jsonl and embeddings.parquet
    assert sorted(r["id"] for r in read_jsonl(plain / "results.jsonl")) == ["d0", "d1", "d2", "d3"]
    assert {len(v) for v in pq.read_table(plain / "embeddings.parquet").column("vector").to_pylist()} == {16}
    embed(f"job.store={store}", name="store")  # a new store: its width is the model's, fixed as it is made
    with EmbeddingStore(store, EMBED_TAG) as db:
        assert (db.width(), db.count()) == (16, 4)
    fake_ollama.embedding_of = lambda text, vector: vector
    cfg = compose_cfg(*common, "job=search", f"job.store={store}", "job.query=document 2", run_dir=tmp_path / "s")
    searched = run(cfg)
    assert searched.exit_code == ExitCode.OK
    (line,) = read_jsonl(searched.run_dir / "results.jsonl")
    assert line["hits"][0]["id"] == "d2"


def test_a_store_keeps_one_width_and_search_refuses_a_store_of_several(tmp_path: Path) -> None:
    store = tmp_path / "store.db"
    first = write_jsonl(tmp_path / "a.jsonl", [{"id": "a", "text": "alpha"}, {"id": "b", "text": "beta"}])

    def embed(src: Path, *overrides: str, name: str) -> Path:
        args = ("backend=echo", "job=embed", f"job.input={src}", f"job.store={store}", *overrides)
        return run(compose_cfg(*args, run_dir=tmp_path / name)).run_dir

    embed(first, name="fill")
    grown = write_jsonl(tmp_path / "b.jsonl", [{"id": "a", "text": "alpha"}, {"id": "c", "text": "gamma"}])
    run_dir = embed(grown, "backend.dimensions=16", name="narrow")
    assert [(r["id"], r["status"]) for r in read_jsonl(run_dir / "results.jsonl")] == [("a", "unchanged")]
    assert _codes(run_dir) == {
        "c": (
            "invalid_output",
            "the backend returned a 16-wide vector, but this run's vectors are 32-wide: "
            "check backend.dimensions and size.dimensions",
        )
    }
    with EmbeddingStore(store, "echo/minilm") as db:  # job=embed defaults to size=minilm
        assert db.width() == 32 and db.count() == 2
        db.commit_batch({"odd": np.ones(16, dtype=np.float32)}, [("d", "odd", None)])  # as an older adam could
    cfg = compose_cfg("backend=echo", "job=search", f"job.store={store}", "job.query=alpha", run_dir=tmp_path / "s")
    with pytest.raises(ConfigError, match=re.escape(f"the store {store} mixes vectors of widths 16, 32 for model")):
        run(cfg)


def test_a_query_of_another_width_is_an_error_line(tmp_path: Path) -> None:
    store = tmp_path / "store.db"
    src = write_jsonl(tmp_path / "a.jsonl", [{"id": "a", "text": "alpha"}])
    run(compose_cfg("backend=echo", "job=embed", f"job.input={src}", f"job.store={store}", run_dir=tmp_path / "fill"))
    cfg = compose_cfg(
        "backend=echo",
        "backend.dimensions=8",
        "job=search",
        f"job.store={store}",
        "job.query=alpha",
        run_dir=tmp_path / "s",
    )
    summary = run(cfg)
    assert summary.exit_code == ExitCode.NO_SUCCESS  # its only query failed
    assert _codes(summary.run_dir)["query"][0] == "invalid_output"


def test_the_width_is_recorded_and_a_resumed_run_checks_against_it(tmp_path: Path) -> None:
    docs = [{"id": f"d{i}", "text": f"document {i}"} for i in range(4)]
    src = write_jsonl(tmp_path / "in.jsonl", [*docs[:2], {"id": "bad"}, {"id": "worse"}, *docs[2:]])
    common = ("backend=echo", "job=embed", f"job.input={src}", "job.window=2", "job.batch_size=2")
    stopped = run(compose_cfg(*common, "job.max_errors=1", run_dir=tmp_path / "run"))
    assert stopped.exit_code == ExitCode.STOPPED  # after the first window's vectors, at the invalid lines
    manifest_path = stopped.run_dir / "manifest.json"
    assert json.loads(manifest_path.read_text())["dimensions"] == 32
    manifest = json.loads(manifest_path.read_text())
    manifest["dimensions"] = 16  # as if the first attempt's model had given 16-wide vectors
    manifest_path.write_text(json.dumps(manifest))
    resumed = run(compose_cfg(*common, f"job.resume={stopped.run_dir}", run_dir=tmp_path / "unused"))
    assert resumed.exit_code == ExitCode.PARTIAL
    codes = _codes(stopped.run_dir)
    assert {k: c for k, (c, _) in codes.items()} == {
        "bad": "invalid_input",
        "worse": "invalid_input",
        "d2": "invalid_output",
        "d3": "invalid_output",
    }
    assert "a 32-wide vector, but this run's vectors are 16-wide" in codes["d2"][1]
    assert json.loads(manifest_path.read_text())["dimensions"] == 16
    assert {len(v) for v in pq.read_table(stopped.run_dir / "embeddings.parquet").column("vector").to_pylist()} == {32}
