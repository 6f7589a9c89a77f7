"""adam's own backend=ollama and backend=openai run whole jobs against adam's server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import compose_cfg, read_jsonl, write_jsonl
from serving import engine_for, serving

from adam.run.runner import run
from adam.server.listen import BackgroundServer


@pytest.fixture(scope="module")
def server() -> Iterator[BackgroundServer]:
    # a chat model and an embedder beside it, as job.embed_size=minilm serves them
    with serving(engine_for(), engine_for("size=minilm")) as running:
        yield running


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    rows = [{"id": f"p{i}", "prompt": f"say {i} words back please"} for i in range(6)]
    rows.append({"id": "chat", "messages": [{"role": "user", "content": "hello from a chat"}]})
    return write_jsonl(tmp_path / "prompts.jsonl", rows)


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "docs.jsonl", [{"id": f"d{i}", "text": f"document number {i}"} for i in range(5)])


@pytest.mark.parametrize("backend", ["ollama", "openai"])
def test_a_generate_job_through_adams_server(
    backend: str, server: BackgroundServer, prompts: Path, tmp_path: Path
) -> None:
    where = [f"backend.host={server.url}", "backend.pull=never"] if backend == "ollama" else [
        f"backend.base_url={server.url}/v1"]  # fmt: skip
    cfg = compose_cfg(
        f"backend={backend}", "size=demo", *where, f"job.input={prompts}", "job.progress=false",
        run_dir=tmp_path / "run",
    )  # fmt: skip
    summary = run(cfg)
    assert summary.status == "completed" and summary.stats.ok == 7
    results = {r["id"]: r for r in read_jsonl(tmp_path / "run" / "results.jsonl")}
    assert results["p3"]["text"] == "say 3 words back please"
    assert results["chat"]["text"] == "hello from a chat"


@pytest.mark.parametrize("backend", ["ollama", "openai"])
def test_an_embed_job_through_adams_server(backend: str, server: BackgroundServer, docs: Path, tmp_path: Path) -> None:
    where = [f"backend.host={server.url}", "backend.pull=never"] if backend == "ollama" else [
        f"backend.base_url={server.url}/v1"]  # fmt: skip
    cfg = compose_cfg(
        f"backend={backend}", "job=embed", "size=minilm", *where, f"job.input={docs}", "job.progress=false",
        "job.parquet=false", run_dir=tmp_path / "run",
    )  # fmt: skip
    summary = run(cfg)
    assert summary.status == "completed" and summary.stats.ok == 5
    rows = read_jsonl(tmp_path / "run" / "results.jsonl")
    assert [len(r["embedding"]) for r in rows] == [32] * 5  # the echo backend's width
