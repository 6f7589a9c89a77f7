"""RunWriter, write_json_atomic, VectorParquetWriter and results_to_parquet: durable, complete lines and files."""

from __future__ import annotations

import errno
import json
import logging
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from small_disk import fill, small_disk

from adam.io.writers import RunWriter, VectorParquetWriter, results_to_parquet, write_json_atomic


def _lines(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n"), "every line must be complete"
    return text.splitlines()


def test_run_writer_appends_compact_lines_across_instances(tmp_path: Path) -> None:
    with RunWriter(tmp_path / "run") as writer:
        assert writer.results_path.exists() and writer.errors_path.exists()
        writer.write([{"id": "a", "text": "héllo ☃"}, {"id": 2, "text": "x"}], [])
        writer.write([], [{"id": None, "line": 3, "error": {"code": "invalid_input", "message": "m"}}])
    again = RunWriter(tmp_path / "run")
    again.write([{"id": "c", "text": "after reopen"}], [{"id": "d", "line": 9, "error": {}}])
    again.close()
    again.close()  # closing twice is fine

    results = _lines(tmp_path / "run" / "results.jsonl")
    assert results[0] == '{"id":"a","text":"héllo ☃"}'  # compact, not ASCII-escaped
    assert [json.loads(line)["id"] for line in results] == ["a", 2, "c"]
    errors = _lines(tmp_path / "run" / "errors.jsonl")
    assert [json.loads(line)["id"] for line in errors] == [None, "d"]


def test_run_writer_refuses_writes_after_close(tmp_path: Path) -> None:
    writer = RunWriter(tmp_path)
    writer.close()
    with pytest.raises(ValueError, match="closed"):
        writer.write([{"id": 1}], [])


def test_a_batch_that_cannot_be_serialised_writes_nothing(tmp_path: Path) -> None:
    with RunWriter(tmp_path) as writer:
        with pytest.raises(TypeError):
            writer.write([{"id": 1}, {"id": 2, "bad": object()}], [])
        writer.write([{"id": 3}], [])
    assert _lines(tmp_path / "results.jsonl") == ['{"id":3}']


def test_a_torn_last_line_is_cut_before_appending(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    results = tmp_path / "results.jsonl"
    results.write_bytes(b'{"id":1}\n{"id":2}\n{"id":3,"te')
    with caplog.at_level(logging.WARNING), RunWriter(tmp_path) as writer:
        writer.write([{"id": 4}], [])
    assert _lines(results) == ['{"id":1}', '{"id":2}', '{"id":4}']
    assert any("partial line (11 bytes)" in r.getMessage() for r in caplog.records)

    (tmp_path / "errors.jsonl").write_bytes(b"no newline at all")
    RunWriter(tmp_path).close()
    assert (tmp_path / "errors.jsonl").read_bytes() == b""


def test_write_json_atomic_replaces_whole_files_only(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    write_json_atomic(path, {"status": "running", "path": Path("/x"), "n": np.int64(3)})
    assert json.loads(path.read_text()) == {"status": "running", "path": "/x", "n": 3}
    write_json_atomic(path, {"status": "completed", "name": "ünï"})
    assert json.loads(path.read_text(encoding="utf-8")) == {"status": "completed", "name": "ünï"}
    with pytest.raises(TypeError):
        write_json_atomic(path, {"status": object()})
    assert json.loads(path.read_text(encoding="utf-8"))["status"] == "completed"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]  # no temp file left behind


def test_nothing_written_holds_nan_or_infinity(tmp_path: Path) -> None:
    with RunWriter(tmp_path) as writer:
        with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
            writer.write([{"id": 1}], [{"id": 2, "score": float("nan")}])  # the whole batch is refused
        writer.write([{"id": 3}], [])
    assert _lines(tmp_path / "results.jsonl") == ['{"id":3}'] and _lines(tmp_path / "errors.jsonl") == []
    path = tmp_path / "manifest.json"  # a manifest is still written: a config value of inf becomes its name
    write_json_atomic(path, {"config": {"memory_gb": float("inf")}, "score": np.float32("nan"), "ok": [1.5]})
    assert path.read_text().count("NaN") == path.read_text().count("Infinity") == 0
    assert json.loads(path.read_text()) == {"config": {"memory_gb": "inf"}, "score": "nan", "ok": [1.5]}


def _embedding_lines(n: int, dims: int) -> tuple[list[dict], np.ndarray]:
    vectors = np.random.default_rng(1).standard_normal((n, dims)).astype(np.float32)
    rows: list[dict] = []
    for i, vec in enumerate(vectors):
        if i % 3 == 2:  # OpenAI-format lines mixed in
            body = {"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": vec.tolist()}]}
            rows.append({"id": f"batch_req_{i}", "custom_id": f"c{i}", "response": {"status_code": 200, "body": body}})
        else:
            row = {"id": i if i % 2 else f"doc-{i}", "embedding": vec.tolist(), "model": "m"}
            if i % 4 == 0:
                row["metadata"] = {"topic": "t", "i": i, "ü": True}
            rows.append(row)
    return rows, vectors


def test_results_to_parquet_round_trip(tmp_path: Path) -> None:
    rows, vectors = _embedding_lines(11, 8)
    results = tmp_path / "results.jsonl"
    with RunWriter(tmp_path) as writer:
        writer.write(rows[:5], [])
        writer.write(rows[5:], [])
    parquet = tmp_path / "embeddings.parquet"
    assert results_to_parquet(results, parquet, batch_rows=4) == 11

    file = pq.ParquetFile(parquet)
    assert file.metadata.num_row_groups == 3
    assert str(file.schema_arrow.field("vector").type) == "list<element: float>"
    table = file.read().to_pylist()
    expected_ids = [f"c{i}" if i % 3 == 2 else (str(i) if i % 2 else f"doc-{i}") for i in range(11)]
    assert [r["id"] for r in table] == expected_ids
    for i, row in enumerate(table):
        assert np.array_equal(np.array(row["vector"], dtype=np.float32), vectors[i])
        meta = rows[i].get("metadata")
        assert (json.loads(row["metadata"]) if row["metadata"] is not None else None) == meta
    assert sorted(p.name for p in tmp_path.iterdir()) == ["embeddings.parquet", "errors.jsonl", "results.jsonl"]


def test_results_to_parquet_skips_a_torn_last_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rows, _ = _embedding_lines(3, 4)
    results = tmp_path / "results.jsonl"
    text = "".join(json.dumps(r) + "\n" for r in rows)
    results.write_text(text + '{"id": "x", "embedding": [0.1, 0.')
    with caplog.at_level(logging.WARNING):
        assert results_to_parquet(results, tmp_path / "out.parquet") == 3
    assert any("the last line is not complete JSON" in r.getMessage() for r in caplog.records)
    assert pq.read_table(tmp_path / "out.parquet").num_rows == 3


def test_results_to_parquet_leaves_out_lines_without_embeddings(tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    failed = {"id": "b", "custom_id": "c", "response": {"status_code": 500, "body": {"error": {}}}, "error": None}
    lines = [{"id": "a", "embedding": [1.0]}, {"id": "g", "text": "a generation"}, failed]
    results.write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert results_to_parquet(results, tmp_path / "out.parquet") == 1


def test_results_to_parquet_of_nothing_is_an_empty_readable_file(tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    results.write_text("")
    assert results_to_parquet(results, tmp_path / "out.parquet") == 0
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.num_rows == 0 and table.column_names == ["id", "vector", "metadata"]


def test_a_failed_conversion_keeps_the_old_parquet_file(tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"id": "a", "embedding": [1.0, 2.0]}) + "\n")
    parquet = tmp_path / "out.parquet"
    results_to_parquet(good, parquet)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "z", "embedding": ["not", "numbers"]}) + "\n")
    with pytest.raises(Exception, match="float"):
        results_to_parquet(bad, parquet)
    assert pq.read_table(parquet).to_pylist() == [{"id": "a", "vector": [1.0, 2.0], "metadata": None}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl", "good.jsonl", "out.parquet"]


def test_vector_parquet_writer_takes_arrays_or_lists_and_writes_the_same_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    vectors = [rng.standard_normal(n).astype(np.float32) for n in (4, 4, 3, 4, 5)]  # ragged is allowed
    metas = ['{"k":1}', None, '{"k":3}', None, None]
    tables = []
    for name, as_given in (("arrays", lambda v: v), ("lists", lambda v: v.tolist())):
        with VectorParquetWriter(tmp_path / f"{name}.parquet", extra=("sha256",), batch_rows=2) as out:
            for i, (vector, meta) in enumerate(zip(vectors, metas, strict=True)):
                out.add(f"id{i}", as_given(vector), meta, f"h{i}")
        assert out.rows == 5
        file = pq.ParquetFile(tmp_path / f"{name}.parquet")
        assert file.metadata.num_row_groups == 3
        assert file.schema_arrow.names == ["id", "vector", "metadata", "sha256"]
        tables.append(file.read().to_pylist())
    assert tables[0] == tables[1]
    for i, row in enumerate(tables[0]):
        assert np.array_equal(np.array(row["vector"], dtype=np.float32), vectors[i])  # float32 exact
        assert (row["id"], row["metadata"], row["sha256"]) == (f"id{i}", metas[i], f"h{i}")


def test_vector_parquet_writer_touches_the_target_only_when_closed(tmp_path: Path) -> None:
    target = tmp_path / "out.parquet"
    with VectorParquetWriter(target) as out:
        out.add("old", np.ones(2, dtype=np.float32))
    with pytest.raises(KeyboardInterrupt), VectorParquetWriter(target, batch_rows=1) as out:
        out.add("new", np.zeros(2, dtype=np.float32))  # a full row group is already in the temp file
        assert pq.read_table(target).column("id").to_pylist() == ["old"]
        raise KeyboardInterrupt
    assert pq.read_table(target).column("id").to_pylist() == ["old"]
    assert [p.name for p in tmp_path.iterdir()] == ["out.parquet"]  # no temp file left


def test_a_write_that_fills_the_disk_leaves_both_files_as_they_were(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", "1m") as disk, RunWriter(disk / "run") as writer:
        writer.write([{"id": 1}], [{"id": 0, "error": {}}])
        filler = fill(disk, leave=20_000)
        big = [{"id": i, "text": "x" * 1000} for i in range(2, 40)]  # about 40 kB: more than is left
        with pytest.raises(OSError) as err:
            writer.write(big, [{"id": "e", "error": {}}])
        assert err.value.errno == errno.ENOSPC
        assert _lines(disk / "run" / "results.jsonl") == ['{"id":1}']  # no line of it, not even a torn one
        assert _lines(disk / "run" / "errors.jsonl") == ['{"id":0,"error":{}}']
        filler.unlink()
        writer.write(big, [{"id": "e", "error": {}}])  # the same batch again, once space is back
        assert [json.loads(line)["id"] for line in _lines(disk / "run" / "results.jsonl")] == list(range(1, 40))
