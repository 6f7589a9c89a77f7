"""Issue 12 end to end: table inputs in a run, the embed jobs' default size, old runs resumed, the store's text."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import REPO, compose_cfg, read_jsonl, write_jsonl

from adam.errors import ConfigError, ExitCode
from adam.io.embed_store import SCHEMA_VERSION, EmbeddingStore
from adam.run.runner import run

HAS_DATASETS = importlib.util.find_spec("datasets") is not None


def _run(tmp_path: Path, *overrides: str, name: str = "run"):
    return run(compose_cfg("backend=echo", *overrides, run_dir=tmp_path / name))


# ----------------------------------------------------------------- inputs through a run
def test_a_csv_input_runs_with_row_errors_naming_their_line(tmp_path: Path) -> None:
    src = tmp_path / "prompts.csv"
    src.write_text('prompt,max_tokens\n"say, hi",4\nsecond,many\n\nthird,\n', encoding="utf-8")
    summary = _run(tmp_path, f"job.input={src}")
    assert summary.exit_code == ExitCode.PARTIAL
    results = {r["id"]: r for r in read_jsonl(summary.run_dir / "results.jsonl")}
    assert sorted(results) == [1, 3]  # row numbers, as no column is named id
    (error,) = read_jsonl(summary.run_dir / "errors.jsonl")
    assert (error["line"], error["error"]["code"]) == (3, "invalid_input")
    assert error["error"]["message"] == "'max_tokens' must be an integer of at least 1, got \"many\""
    manifest = json.loads((summary.run_dir / "manifest.json").read_text())
    assert manifest["input"]["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()


def test_a_parquet_input_embeds_and_resumes_by_row(tmp_path: Path) -> None:
    src = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"id": [f"d{i}" for i in range(12)], "text": [f"doc {i}" for i in range(12)]}), src)
    summary = _run(tmp_path, "job=embed", f"job.input={src}", "job.batch_size=4")
    assert summary.exit_code == ExitCode.OK
    lines = read_jsonl(summary.run_dir / "results.jsonl")
    assert sorted(r["id"] for r in lines) == sorted(f"d{i}" for i in range(12))
    assert pq.read_table(summary.run_dir / "embeddings.parquet").num_rows == 12
    kept = lines[:5]  # as if the run had been killed after these
    write_jsonl(summary.run_dir / "results.jsonl", kept)
    again = _run(tmp_path, "job=embed", f"job.input={src}", f"job.resume={summary.run_dir}", name="again")
    assert again.run_dir == summary.run_dir and again.exit_code == ExitCode.OK
    ids = [r["id"] for r in read_jsonl(summary.run_dir / "results.jsonl")]
    assert sorted(ids) == sorted(f"d{i}" for i in range(12)) and len(ids) == 12  # each row exactly once


@pytest.mark.skipif(not HAS_DATASETS, reason="the datasets library is not installed (the datasets extra)")
def test_a_saved_dataset_is_a_generate_input(tmp_path: Path) -> None:
    import datasets

    splits = {
        "train": datasets.Dataset.from_dict({"question": ["one?", "two?"]}),
        "test": datasets.Dataset.from_dict({"question": ["three?"]}),
    }
    datasets.DatasetDict(splits).save_to_disk(str(tmp_path / "qa"))
    summary = _run(tmp_path, f"job.input={tmp_path / 'qa'}", "job.split=train", "job.text_field=question")
    assert summary.exit_code == ExitCode.OK
    assert sorted(r["id"] for r in read_jsonl(summary.run_dir / "results.jsonl")) == [1, 2]


def test_the_cli_refuses_utf16_and_unknown_extensions_in_one_line(tmp_path: Path) -> None:
    utf16 = tmp_path / "prompts.jsonl"
    utf16.write_bytes('{"prompt": "hi"}\n'.encode("utf-16"))
    xlsx = tmp_path / "prompts.xlsx"
    xlsx.write_bytes(b"PK\x03\x04")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for path, fragment in ((utf16, "save as UTF-8"), (xlsx, "adam does not read .xlsx files")):
        done = subprocess.run(
            [sys.executable, "-m", "adam", "backend=echo", f"job.input={path}", f"hydra.run.dir={tmp_path / 'r'}"],
            capture_output=True,
            text=True,
            cwd=REPO,
            env=env,
            timeout=300,
        )
        assert done.returncode == 1, done.stderr
        errors = [line for line in done.stderr.splitlines() if fragment in line]
        assert len(errors) == 1, done.stderr
        assert not (tmp_path / "r" / "results.jsonl").exists()


# ----------------------------------------------------------------- the right model for the job
def test_embed_and_search_default_to_the_bundled_embedder_and_size_wins() -> None:
    assert compose_cfg("job=embed").size.name == "minilm"
    assert compose_cfg("job=search").size.name == "minilm"
    assert compose_cfg().size.name == "demo"  # job=generate keeps the chat demo
    assert compose_cfg("job=embed", "size=demo").size.name == "demo"
    assert compose_cfg("size=qwen3_embedding_0_6b", "job=embed").size.name == "qwen3_embedding_0_6b"
    assert compose_cfg("job=embed", "size=auto").size.name == "auto"


def test_a_generation_model_for_embeddings_is_warned_about(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": "one"}])
    with caplog.at_level(logging.WARNING, logger="adam"):
        _run(tmp_path, "job=embed", f"job.input={src}", name="minilm")
    assert "generation model" not in caplog.text
    with caplog.at_level(logging.WARNING, logger="adam"):
        _run(tmp_path, "job=embed", "size=demo", f"job.input={src}", name="demo")
    assert "size=demo is a generation model: its embeddings make poor neighbours" in caplog.text


def test_an_old_run_with_the_old_default_size_still_resumes(tmp_path: Path) -> None:
    """Runs started before job=embed defaulted to minilm used size=demo; resuming them without size= keeps it."""
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": f"t{i}", "text": f"text {i}"} for i in range(10)])
    runs = tmp_path / "runs"
    old = _run(runs, "job=embed", "size=demo", f"job.input={src}", "job.batch_size=2", name="old")
    first_lines = read_jsonl(old.run_dir / "results.jsonl")
    write_jsonl(old.run_dir / "results.jsonl", first_lines[:4])  # killed after two batches
    resumed = _run(runs, "job=embed", f"job.input={src}", "job.resume=true", name="new")
    assert resumed.run_dir == old.run_dir and resumed.exit_code == ExitCode.OK
    manifest = json.loads((old.run_dir / "manifest.json").read_text())
    assert manifest["config"]["size"]["name"] == "demo" and manifest["resumes"] == 1
    lines = read_jsonl(old.run_dir / "results.jsonl")
    assert sorted(r["id"] for r in lines) == [f"t{i}" for i in range(10)]
    assert {len(r["embedding"]) for r in lines} == {len(first_lines[0]["embedding"])}
    with pytest.raises(ConfigError, match=r"size.name: \"demo\" -> \"minilm\""):  # size= on the command line wins
        _run(runs, "job=embed", "size=minilm", f"job.input={src}", f"job.resume={old.run_dir}", name="pinned")


# ----------------------------------------------------------------- a store you can read
_V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE vectors (
    model TEXT NOT NULL, sha256 TEXT NOT NULL, dim INTEGER NOT NULL, vector BLOB NOT NULL, created TEXT NOT NULL,
    PRIMARY KEY (model, sha256)
);
CREATE TABLE records (
    model TEXT NOT NULL, id TEXT NOT NULL, sha256 TEXT NOT NULL, metadata TEXT,
    created TEXT NOT NULL, updated TEXT NOT NULL,
    PRIMARY KEY (model, id)
);
CREATE INDEX records_by_sha ON records (model, sha256);
INSERT INTO meta VALUES ('schema_version', '1');
"""


def _v1_store(path: Path, model: str, texts: dict[str, str], width: int) -> dict[str, np.ndarray]:
    """A store as adam wrote it before it kept texts, with one vector per text."""
    vectors = {}
    with sqlite3.connect(path) as db:
        db.executescript(_V1_SCHEMA)
        for n, (id_, text) in enumerate(texts.items()):
            sha = hashlib.sha256(text.encode()).hexdigest()
            vectors[id_] = np.full(width, n + 1, dtype=np.float32)
            db.execute(
                "INSERT INTO vectors VALUES (?, ?, ?, ?, '2024-01-01')", (model, sha, width, vectors[id_].tobytes())
            )
            db.execute(
                "INSERT INTO records VALUES (?, ?, ?, ?, '2024-01-01', '2024-01-02')", (model, id_, sha, '{"n":1}')
            )
    return vectors


def test_an_old_store_is_migrated_in_place_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    vectors = _v1_store(path, "m", {"a": "alpha", "b": "beta"}, 3)
    with EmbeddingStore(path, "m") as store:
        assert store.count() == 2
        assert store.search(np.array([1, 1, 1], dtype=np.float32), 1)[0].text is None  # not known yet
    with sqlite3.connect(path) as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(records)")]
        assert columns == ["model", "id", "sha256", "metadata", "created", "updated", "text"]
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(SCHEMA_VERSION),)
        rows = db.execute("SELECT id, metadata, created, updated, text FROM records ORDER BY id").fetchall()
        assert rows == [
            ("a", '{"n":1}', "2024-01-01", "2024-01-02", None),
            ("b", '{"n":1}', "2024-01-01", "2024-01-02", None),
        ]
        blobs = dict(db.execute("SELECT r.id, v.vector FROM records r JOIN vectors v USING (model, sha256)"))
    assert {k: np.frombuffer(v, dtype=np.float32).tolist() for k, v in blobs.items()} == {
        k: v.tolist() for k, v in vectors.items()
    }
    with EmbeddingStore(path, "m") as store:  # opening it again is a no-op; a text is filled in without an update
        sha = hashlib.sha256(b"alpha").hexdigest()
        store.commit_batch({}, [("a", sha, '{"n":1}', "alpha")])
        assert store.texts(["a", "b"]) == {"a": "alpha"}
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT updated FROM records WHERE id = 'a'").fetchone() == ("2024-01-02",)


def test_a_run_over_a_migrated_store_reuses_its_vectors_and_fills_in_texts(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": "alpha"}, {"id": "b", "text": "beta"}])
    store = tmp_path / "store.db"
    filled = _run(tmp_path, "job=embed", f"job.input={src}", f"job.store={store}", name="fill")
    model = json.loads((filled.run_dir / "manifest.json").read_text())["counts"]["store"]["model"]
    with sqlite3.connect(store) as db:  # make it what an older adam left: no text column
        db.execute("ALTER TABLE records DROP COLUMN text")
        db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
        before = db.execute("SELECT sha256, vector FROM vectors ORDER BY sha256").fetchall()
    again = _run(tmp_path, "job=embed", f"job.input={src}", f"job.store={store}", name="again")
    counts = json.loads((again.run_dir / "manifest.json").read_text())["counts"]
    assert (counts["embedded"], counts["unchanged"]) == (0, 2)
    with EmbeddingStore(store, model) as db:
        assert db.texts(["a", "b"]) == {"a": "alpha", "b": "beta"}
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT sha256, vector FROM vectors ORDER BY sha256").fetchall() == before


def test_search_hits_carry_text_a_chunks_own_and_store_text_false_keeps_hashes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    long = " ".join(f"w{i}" for i in range(20))
    docs = [{"id": "doc", "text": long}, {"id": "tea", "text": "green tea leaves"}]
    src = write_jsonl(tmp_path / "in.jsonl", docs)
    store = tmp_path / "store.db"
    chunked = ("job=embed", f"job.input={src}", f"job.store={store}", "job.chunk_tokens=8", "job.chunk_overlap=2")
    _run(tmp_path, *chunked, name="fill")
    capsys.readouterr()
    found = _run(tmp_path, "job=search", f"job.store={store}", "job.query=w10 w11 w12", "job.top_k=4", name="search")
    (line,) = read_jsonl(found.run_dir / "results.jsonl")
    hits = {hit["id"]: hit for hit in line["hits"]}
    assert set(hits) == {"doc#0", "doc#1", "doc#2", "tea#0"}
    assert hits["tea#0"]["text"] == "green tea leaves"
    for hit in (hits["doc#0"], hits["doc#1"], hits["doc#2"]):
        assert hit["text"] in long and hit["text"] != long  # the chunk's own text, not the document's
    assert hits["doc#0"]["text"].startswith("w0 ") and hits["doc#2"]["text"].endswith(" w19")
    _run(tmp_path, *chunked, "job.store_text=false", name="hashes")
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT COUNT(*) FROM records WHERE text IS NOT NULL").fetchone() == (0,)
        assert db.execute("SELECT COUNT(*) FROM records").fetchone() == (4,)
    capsys.readouterr()
    blind = _run(tmp_path, "job=search", f"job.store={store}", "job.query=green tea", name="blind")
    assert all(hit["text"] is None for hit in read_jsonl(blind.run_dir / "results.jsonl")[0]["hits"])
