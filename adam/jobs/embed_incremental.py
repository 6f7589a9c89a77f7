"""job=embed with job.store: embed only what the store lacks, commit each batch, optionally prune.

results.jsonl gets one short line per record saying what happened to it (embedded, reused,
unchanged, metadata_updated); the vectors live in the store, and embeddings.parquet is exported
from it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from adam.embed_store import EmbeddingStore, metadata_text
from adam.errors import BackendError
from adam.io.openai_batch import error_result
from adam.io.readers import RecordReader
from adam.io.records import InvalidRecord, Record
from adam.io.writers import PARQUET_NAME
from adam.jobs.batching import BatchOutput, JobStats
from adam.jobs.chunking import chunk_records
from adam.jobs.context import JobContext

log = logging.getLogger(__name__)

STATUSES = ("embedded", "reused", "unchanged", "metadata_updated")


def store_model_key(info: dict[str, Any], dimensions: int | None) -> str:
    """The model part of the store key: name, revision or file hash, and kept dimensions."""
    key = str(info.get("model") or "unknown")
    pin = info.get("revision") or info.get("sha256")
    if pin:
        key += f"@{str(pin)[:16]}"
    if dimensions:
        key += f"#{dimensions}"
    return key


def content_sha(text: str) -> str:
    """sha256 of the exact text the model reads."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def run_embed_store(ctx: JobContext, prefix: str) -> JobStats:
    """Embed new and changed texts of job.input into the store at job.store."""
    from adam.jobs.embed import overflow_screen

    backend = ctx.backend
    model = store_model_key(ctx.info, backend.size.dimensions)
    counts = dict.fromkeys((*STATUSES, "truncated", "pruned"), 0)
    screen = overflow_screen(ctx, prefix)
    store = EmbeddingStore(ctx.job.store, model)

    def process(batch: Sequence[Record]) -> BatchOutput:
        out = BatchOutput()
        batch = screen(batch, out)
        shas = [content_sha(prefix + (r.text or "")) for r in batch]
        stored = store.records([str(r.id) for r in batch])
        vectors = store.vectors(shas)
        wanted: dict[str, str] = {}  # sha -> text, each new text once
        for record, sha in zip(batch, shas, strict=True):
            if sha not in vectors:
                wanted.setdefault(sha, prefix + (record.text or ""))
        fresh: dict[str, np.ndarray] = {}
        failed: dict[str, str] = {}
        for (sha, _), result in zip(wanted.items(), backend.embed(list(wanted.values())), strict=True):
            if isinstance(result, BackendError):
                failed[sha] = str(result)
            else:
                fresh[sha] = np.asarray(result.vector, dtype=np.float32)
                out.tokens += result.tokens
                counts["truncated"] += int(result.truncated)
        rows = []
        first_use = set(fresh)
        for record, sha in zip(batch, shas, strict=True):
            if sha in failed:
                out.errors.append(error_result(record, failed[sha], code="backend_error"))
                continue
            meta = metadata_text(record.metadata)
            old = stored.get(str(record.id))
            if old is not None and old.sha256 == sha:
                status = "unchanged" if old.metadata == meta else "metadata_updated"
            elif sha in first_use:
                status = "embedded"
                first_use.discard(sha)
            else:
                status = "reused"
            counts[status] += 1
            rows.append((str(record.id), sha, meta))
            line: dict[str, Any] = {"id": record.id, "status": status, "sha256": sha, "model": model}
            if record.metadata is not None:
                line["metadata"] = record.metadata
            out.results.append(line)
        store.commit_batch(fresh, rows)  # before results.jsonl: a crash in between only repeats a no-op
        return out

    try:
        stats = ctx.run_batches("embed", process)
        if ctx.job.get("prune"):
            counts["pruned"] = store.prune(_valid_ids(ctx))
            log.info("pruned %d records no longer in the input from %s", counts["pruned"], ctx.job.store)
        stats.extra.update(counts)
        stats.extra["store"] = {"path": str(ctx.job.store), "model": model, "records": store.count()}
        if ctx.job.parquet:
            rows_written = store.export_parquet(ctx.run_dir / PARQUET_NAME)
            stats.extra["parquet_rows"] = rows_written
    finally:
        ctx.stats.extra.update(counts)
        store.close()
    log.info(
        "store %s: %d embedded, %d reused, %d unchanged, %d metadata updated, %d pruned",
        ctx.job.store,
        *(counts[k] for k in (*STATUSES, "pruned")),
    )
    return stats


def _valid_ids(ctx: JobContext) -> set[str]:
    """Every valid record id of the whole input (a resumed run skips some, but they are still in it)."""
    records: Iterable[Record | InvalidRecord] = RecordReader(
        ctx.job.input, "embed", id_field=ctx.job.id_field, text_field=ctx.job.text_field
    )
    if ctx.job.get("chunk_tokens"):
        tokens, overlap = int(ctx.job.chunk_tokens), int(ctx.job.get("chunk_overlap") or 0)
        records = chunk_records(records, ctx.backend.count_tokens, tokens, overlap)
    return {str(r.id) for r in records if isinstance(r, Record)}
