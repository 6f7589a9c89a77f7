"""job.chunk_tokens / job.chunk_overlap: long documents split into overlapping chunks with derived ids."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from helpers import compose_cfg, read_jsonl, write_jsonl

from adam.errors import ExitCode
from adam.jobs.chunking import split_text
from adam.run.runner import run


def _words(text: str) -> int:
    return len(text.split())


def test_chunks_fit_overlap_and_cover_the_text_in_order() -> None:
    words = [f"w{i}" for i in range(25)]
    chunks = split_text("  ".join(words) + "\n", _words, 10, 3)
    assert all(_words(c) <= 10 for c in chunks)
    assert chunks[0].split() == words[:10]
    for before, after in itertools.pairwise(chunks):
        assert before.split()[-3:] == after.split()[:3]  # 3 tokens repeated
    assert chunks[-1].split()[-1] == "w24"
    seen = [w for c in chunks for w in c.split()]
    assert sorted(set(seen), key=lambda w: int(w[1:])) == words
    assert split_text("short text", _words, 10) == ["short text"]
    with pytest.raises(ValueError, match="chunk_overlap"):
        split_text("a b c", _words, 2, 2)


def test_embed_with_chunks_writes_one_vector_per_chunk(tmp_path: Path) -> None:
    long = " ".join(f"w{i}" for i in range(20))
    src = write_jsonl(
        tmp_path / "in.jsonl", [{"id": "doc", "text": long, "metadata": {"src": "a"}}, {"id": 7, "text": "tiny"}]
    )
    summary = run(compose_cfg(*_overrides(tmp_path, src), run_dir=tmp_path / "run"))
    assert summary.exit_code == ExitCode.OK
    results = {r["id"]: r for r in read_jsonl(summary.run_dir / "results.jsonl")}
    assert sorted(results) == ["7#0", "doc#0", "doc#1", "doc#2"]  # 8 + 6 new + 6 new words (2 repeated each time)
    assert results["doc#1"]["metadata"] == {"src": "a", "doc_id": "doc", "chunk": 1, "chunks": 3}
    again = run(compose_cfg(*_overrides(tmp_path, src), run_dir=tmp_path / "again"))  # nothing changed
    assert {r["status"] for r in read_jsonl(again.run_dir / "results.jsonl")} == {"unchanged"}


def _overrides(tmp_path: Path, src: Path) -> list[str]:
    return [
        "backend=echo",
        "job=embed",
        f"job.input={src}",
        "job.chunk_tokens=8",
        "job.chunk_overlap=2",
        f"job.store={tmp_path / 'store.db'}",
        "job.prune=true",
    ]
