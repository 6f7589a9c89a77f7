"""job=search: the stored records most similar to each query, from an embedding store (job=embed job.store=...)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from adam.engine import Outcome
from adam.errors import BackendError, ConfigError
from adam.io.embed_store import EmbeddingStore
from adam.io.readers import RecordReader
from adam.io.records import Record
from adam.jobs.batching import JobStats
from adam.jobs.context import JobContext
from adam.jobs.embed import warn_generation_model


def _queries(job: Any) -> list[Record]:
    """job.query as one record, else the valid records of the job.queries file."""
    if job.query is not None:
        return [Record(line=1, id="query", text=str(job.query))]
    return [r for r in RecordReader(job.queries, "embed") if isinstance(r, Record)]


def check_search(cfg: DictConfig) -> None:
    """A store that exists, and a query or a file of them."""
    if cfg.job.store is None:
        raise ConfigError("job=search needs job.store=<file.db>, a store filled by job=embed job.store=...")
    if not Path(cfg.job.store).is_file():
        raise ConfigError(f"store {cfg.job.store} does not exist: fill it with job=embed job.store=...")
    if cfg.job.query is None and (cfg.job.queries is None or not Path(cfg.job.queries).is_file()):
        raise ConfigError('job=search needs job.query="..." or job.queries=<file of queries>')
    if cfg.job.query is None:
        RecordReader(cfg.job.queries, "embed")  # an unknown extension or a UTF-16 file is refused now
    warn_generation_model(cfg)


def run_search(ctx: JobContext) -> JobStats:
    """Embed each query with the store's model and write its top_k hits to results.jsonl and stdout."""
    job = ctx.job
    model = ctx.make_engine().store_key(ctx.info)
    out = Outcome()
    with EmbeddingStore(job.store, model) as store:
        if store.count() == 0:
            held = ", ".join(store.models()) or "none"
            raise ConfigError(
                f"{job.store} holds no vectors for model {model} (it holds: {held}): "
                "search with the size and backend that filled it"
            )
        engine = ctx.make_engine(store.width())  # a store of mixed widths is refused here, in one line
        queries = _queries(job)
        for query, vector in zip(queries, engine.embed_texts([q.text or "" for q in queries]), strict=True):
            if isinstance(vector, BackendError):
                out.fail(query, vector)
                continue
            hits = [
                {
                    "id": hit.id,
                    "score": round(hit.score, 6),
                    "text": hit.text,  # a chunk's own text for chunked documents; null where the store kept none
                    "metadata": None if hit.metadata is None else json.loads(hit.metadata),
                }
                for hit in store.search(vector.vector, int(job.top_k))
            ]
            out.results.append({"id": query.id, "query": query.text, "hits": hits})
    ctx.writer.write(out.results, out.errors)
    for line in out.results:
        sys.stdout.write(json.dumps(line, ensure_ascii=False, allow_nan=False) + "\n")
    return JobStats(ok=len(out.results), backend_errors=len(out.errors))
