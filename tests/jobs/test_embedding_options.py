"""Qwen3-Embedding options through the echo backend: the query instruction and Matryoshka truncation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from helpers import compose_cfg, read_jsonl, write_jsonl

from adam import ModelManager
from adam.run.runner import run

SIZE = "size=qwen3_embedding_0_6b"


def test_queries_get_the_instruction_and_documents_none() -> None:
    m = ModelManager(model_type="echo", model_size="qwen3_embedding_0_6b")
    assert m.engine.query_prefix("find code") == "Instruct: find code\nQuery:"
    assert m.engine.query_prefix(None) == ""
    plain = ModelManager(model_type="echo", model_size="minilm")
    assert plain.engine.query_prefix("find code") == ""  # a model without one: a warning, no prefix
    query = m.embed("cats", query_task="Given a question, find passages")
    assert np.allclose(query, m.embed("Instruct: Given a question, find passages\nQuery:cats"))
    assert not np.allclose(query, m.embed("cats"))


def test_embed_job_prefixes_queries(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "q.jsonl", [{"id": "q1", "text": "cats"}])
    task = "job.query_task='Given a question, find passages'"
    cfg = compose_cfg("job=embed", "backend=echo", SIZE, f"job.input={source}", task, run_dir=tmp_path / "run")
    run(cfg)
    (row,) = read_jsonl(tmp_path / "run" / "results.jsonl")
    expected = ModelManager(model_type="echo", model_size="qwen3_embedding_0_6b").embed(
        "Instruct: Given a question, find passages\nQuery:cats"
    )
    assert np.allclose(row["embedding"], expected, atol=1e-6)


def test_dimensions_keep_the_first_n_renormalised() -> None:
    full = np.array(ModelManager(model_type="echo", model_size="qwen3_embedding_0_6b").embed("a text"))
    short = np.array(
        ModelManager(model_type="echo", model_size="qwen3_embedding_0_6b", overrides=["size.dimensions=8"]).embed(
            "a text"
        )
    )
    assert short.shape == (8,) and np.isclose(np.linalg.norm(short), 1.0)
    assert np.allclose(short, full[:8] / np.linalg.norm(full[:8]), atol=1e-6)
