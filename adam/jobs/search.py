"""job=search: the stored records most similar to each query, from an embedding store (job=embed job.store=...)."""

from __future__ import annotations

import json
import sys
from typing import Any

from adam.embed_store import EmbeddingStore
from adam.errors import BackendError, ConfigError
from adam.io.openai_batch import error_result
from adam.io.readers import RecordReader
from adam.io.records import Record
from adam.jobs.batching import JobStats
from adam.jobs.context import JobContext
from adam.jobs.embed import query_prefix
from adam.jobs.embed_incremental import store_model_key


def _queries(job: Any) -> list[Record]:
    """job.query as one record, else the valid records of the job.queries file."""
    if job.query is not None:
        return [Record(line=1, id="query", text=str(job.query))]
    return [r for r in RecordReader(job.queries, "embed") if isinstance(r, Record)]


def run_search(ctx: JobContext) -> JobStats:
    """Embed each query with the store's model and write its top_k hits to results.jsonl and stdout."""
    job, backend = ctx.job, ctx.backend
    model = store_model_key(ctx.info, backend.size.dimensions)
    stats = JobStats()
    with EmbeddingStore(job.store, model) as store:
        if store.count() == 0:
            raise ConfigError(
                f"{job.store} holds no vectors for model {model}: search with the size and backend that filled it"
            )
        queries = _queries(job)
        prefix = query_prefix(backend.size.query_instruction, job.get("query_task"))
        embedded = backend.embed([prefix + (q.text or "") for q in queries])
        results, errors = [], []
        for query, vector in zip(queries, embedded, strict=True):
            if isinstance(vector, BackendError):
                errors.append(error_result(query, str(vector), code="backend_error"))
                continue
            hits = [
                {"id": id_, "score": round(score, 6), "metadata": None if meta is None else json.loads(meta)}
                for id_, score, meta in store.search(vector.vector, int(job.top_k))
            ]
            results.append({"id": query.id, "query": query.text, "hits": hits})
    ctx.writer.write(results, errors)
    for line in results:
        sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")
    stats.ok, stats.backend_errors = len(results), len(errors)
    return stats
