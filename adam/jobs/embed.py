"""job=embed: one vector per input record, to results.jsonl and embeddings.parquet."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from adam.errors import BackendError
from adam.io.openai_batch import embedding_result, error_result
from adam.io.records import Record
from adam.io.writers import results_to_parquet
from adam.jobs.batching import BatchOutput, JobStats, run_batches
from adam.jobs.context import JobContext

log = logging.getLogger(__name__)

PARQUET_NAME = "embeddings.parquet"


def run_embed(ctx: JobContext) -> JobStats:
    """Embed every record of job.input, then build the Parquet file from the results."""
    backend, model = ctx.backend, ctx.model_name
    truncated = 0

    def process(batch: Sequence[Record]) -> BatchOutput:
        nonlocal truncated
        out = BatchOutput()
        results = backend.embed([r.text or "" for r in batch])
        for record, result in zip(batch, results, strict=True):
            if isinstance(result, BackendError):
                out.errors.append(error_result(record, str(result), code="backend_error"))
            else:
                out.results.append(embedding_result(record, result, model=model))
                out.tokens += result.tokens
                truncated += int(result.truncated)
        return out

    stats = run_batches(
        ctx.records("embed"),
        backend=backend,
        writer=ctx.writer,
        progress=ctx.progress("embed"),
        window=ctx.job.window,
        batch_size=ctx.job.batch_size,
        process=process,
    )
    stats.extra["truncated"] = truncated
    if ctx.job.parquet:
        ctx.writer.close()
        rows = results_to_parquet(ctx.writer.results_path, ctx.run_dir / PARQUET_NAME)
        stats.extra["parquet_rows"] = rows
        log.info("wrote %d vectors to %s", rows, ctx.run_dir / PARQUET_NAME)
    return stats
