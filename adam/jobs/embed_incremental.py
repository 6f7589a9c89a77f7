"""job=embed with job.store: embed only what the store lacks, commit each batch, optionally prune.

results.jsonl gets one short line per record saying what happened to it (embedded, reused,
unchanged, metadata_updated); the vectors live in the store, and embeddings.parquet is exported
from it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from adam.engine import Engine, Outcome
from adam.errors import BackendError
from adam.io.embed_store import EmbeddingStore, PruneRefused, metadata_text
from adam.io.readers import RecordReader
from adam.io.records import InvalidRecord, Record
from adam.io.writers import PARQUET_NAME
from adam.jobs.batching import JobStats, JobStopped
from adam.jobs.chunking import chunk_records
from adam.jobs.context import JobContext
from adam.run.locks import StoreLock

log = logging.getLogger(__name__)

STATUSES = ("embedded", "reused", "unchanged", "metadata_updated")


def run_embed_store(ctx: JobContext) -> JobStats:
    """Embed new and changed texts of job.input into the store at job.store."""
    counts = dict.fromkeys((*STATUSES, "truncated", "pruned"), 0)
    lock = StoreLock(ctx.job.store).share()  # held for the run, so no other run prunes under it
    store: EmbeddingStore | None = None
    try:
        probe = ctx.make_engine()
        model = probe.store_key(ctx.info)
        store = EmbeddingStore(ctx.job.store, model)
        held = store.count()  # what a prune may take a fraction of
        engine = ctx.make_engine(store.width(), on_vector_width=_fixing(store, ctx.on_vector_width))
        keep_text = bool(ctx.job.get("store_text", True))
        stats = ctx.run_batches("embed", _processor(engine, store, model, counts, keep_text=keep_text))
        if ctx.job.get("prune"):
            if not lock.try_exclusive():  # another run is filling the store: its records are not in our input
                raise JobStopped(
                    f"every record is in the store, but it was not pruned: another run is using {ctx.job.store}; "
                    "prune when that run has ended"
                )
            counts["pruned"] = _prune(ctx, store, held)
        stats.extra.update(counts)
        stats.extra["store"] = {"path": str(ctx.job.store), "model": model, "records": store.count()}
        if ctx.job.parquet:
            stats.extra["parquet_rows"] = store.export_parquet(ctx.run_dir / PARQUET_NAME)
    finally:
        ctx.stats.extra.update(counts)
        if store is not None:
            store.close()
        lock.release()
    log.info(
        "store %s: %d embedded, %d reused, %d unchanged, %d metadata updated, %d pruned",
        ctx.job.store,
        *(counts[k] for k in (*STATUSES, "pruned")),
    )
    return stats


def _fixing(store: EmbeddingStore, then: Callable[[int], None] | None) -> Callable[[int], None]:
    """What the engine calls once the run's vector width is known: the store keeps it for good, then ``then``."""

    def fixed(width: int) -> None:
        store.fix_width(width)
        if then is not None:
            then(width)

    return fixed


def _prune(ctx: JobContext, store: EmbeddingStore, held: int) -> int:
    """Remove the records no longer in the input, unless the input has none or too many would go (one line why)."""
    keep = _valid_ids(ctx)
    if not keep:  # an unmounted disk or an emptied folder must never wipe the store
        log.warning(
            "nothing was pruned from %s: job.input=%s holds no records, and an input without records never prunes",
            ctx.job.store,
            ctx.job.input,
        )
        return 0
    fraction = float(ctx.job.prune_max_fraction)
    try:
        pruned = store.prune(keep, at_most=math.floor(fraction * held + 1e-9))
    except PruneRefused as refused:
        share = f" ({refused.doomed / held:.0%})" if held else ""
        raise JobStopped(
            f"refused to prune {ctx.job.store}: job.input={ctx.job.input} lacks {refused.doomed} of the {held} "
            f"records the store held before this run{share}, more than job.prune_max_fraction={fraction:g}; nothing "
            "was pruned and every record embedded is kept; if the input is right, add job.prune_max_fraction=1.0"
        ) from None
    log.info("pruned %d records no longer in the input from %s", pruned, ctx.job.store)
    return pruned


def _processor(
    engine: Engine, store: EmbeddingStore, model: str, counts: dict[str, int], *, keep_text: bool = True
) -> Callable[[Sequence[Record]], Outcome]:
    """The batch step: embed each text the store lacks once, commit the batch, say what happened to each record.

    With ``keep_text`` each record's own text (a chunk's, for chunked documents) is stored beside its hash.
    """

    def process(batch: Sequence[Record]) -> Outcome:
        out = Outcome()
        shas = [engine.content_sha(r.text or "") for r in batch]
        stored = store.records([str(r.id) for r in batch])
        vectors = store.vectors(shas)
        wanted: dict[str, str] = {}  # sha -> text, each new text once
        for record, sha in zip(batch, shas, strict=True):
            if sha not in vectors:
                wanted.setdefault(sha, record.text or "")
        fresh: dict[str, np.ndarray] = {}
        failed: dict[str, BackendError] = {}
        for sha, result in zip(wanted, engine.embed_texts(list(wanted.values())), strict=True):
            if isinstance(result, BackendError):
                failed[sha] = result
            else:
                fresh[sha] = np.asarray(result.vector, dtype=np.float32)
                out.tokens += result.tokens
                counts["truncated"] += int(result.truncated)
        rows = []
        first_use = set(fresh)
        for record, sha in zip(batch, shas, strict=True):
            if sha in failed:
                out.fail(record, failed[sha])
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
            rows.append((str(record.id), sha, meta, record.text if keep_text else None))
            line: dict[str, Any] = {"id": record.id, "status": status, "sha256": sha, "model": model}
            if record.metadata is not None:
                line["metadata"] = record.metadata
            out.results.append(line)
        store.commit_batch(fresh, rows)  # before results.jsonl: a crash in between only repeats a no-op
        return out

    return process


def _valid_ids(ctx: JobContext) -> set[str]:
    """Every valid record id of the whole input (a resumed run skips some, but they are still in it)."""
    records: Iterable[Record | InvalidRecord] = RecordReader.for_job(ctx.job, "embed")
    if ctx.job.get("chunk_tokens"):
        tokens, overlap = int(ctx.job.chunk_tokens), int(ctx.job.get("chunk_overlap") or 0)
        records = chunk_records(records, ctx.backend.count_tokens, tokens, overlap)
    return {str(r.id) for r in records if isinstance(r, Record)}
