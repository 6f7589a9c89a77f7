"""job=embed: one vector per input record, to results.jsonl and embeddings.parquet."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from adam.errors import BackendError
from adam.io.openai_batch import embedding_result, error_result
from adam.io.records import Record
from adam.io.writers import PARQUET_NAME, VectorParquetWriter, embedding_row, results_to_parquet
from adam.jobs.batching import BatchOutput, JobStats
from adam.jobs.context import JobContext
from adam.jobs.overflow import text_overflow

log = logging.getLogger(__name__)


def query_prefix(instruction: str | None, task: str | None) -> str:
    """The text put before each query (``Instruct: {task}\nQuery:`` for Qwen3-Embedding); documents get none."""
    if not task:
        return ""
    if not instruction:
        log.warning("job.query_task is set but this model has no query instruction (size.query_instruction)")
        return ""
    return instruction.replace("{task}", task)


def overflow_screen(ctx: JobContext, prefix: str) -> Callable[[Sequence[Record], BatchOutput], list[Record]]:
    """With job.overflow=error, texts longer than the model reads become error lines; else all pass."""
    check = str(ctx.job.get("overflow", "truncate")) == "error"

    def screen(batch: Sequence[Record], out: BatchOutput) -> list[Record]:
        if not check:
            return list(batch)
        kept = []
        for record in batch:
            problem = text_overflow(ctx.backend, prefix + (record.text or ""))
            if problem is None:
                kept.append(record)
            else:
                out.errors.append(error_result(record, problem, code="context_overflow"))
                out.rejected += 1
        return kept

    return screen


def run_embed(ctx: JobContext) -> JobStats:
    """Embed every record of job.input into results.jsonl and, as batches finish, embeddings.parquet.

    A resumed run's Parquet file is rebuilt from results.jsonl at the end instead, since the vectors
    of the earlier attempt are only there.
    """
    backend, model = ctx.backend, ctx.model_name
    prefix = query_prefix(backend.size.query_instruction, ctx.job.get("query_task"))
    if ctx.job.get("store"):
        from adam.jobs.embed_incremental import run_embed_store

        return run_embed_store(ctx, prefix)
    truncated = 0
    screen = overflow_screen(ctx, prefix)
    parquet_path = ctx.run_dir / PARQUET_NAME
    streamed = VectorParquetWriter(parquet_path) if ctx.job.parquet and ctx.done is None else None

    def process(batch: Sequence[Record]) -> BatchOutput:
        nonlocal truncated
        out = BatchOutput()
        batch = screen(batch, out)
        results = backend.embed([prefix + (r.text or "") for r in batch])
        for record, result in zip(batch, results, strict=True):
            if isinstance(result, BackendError):
                out.errors.append(error_result(record, str(result), code="backend_error"))
                continue
            line = embedding_result(record, result, model=model)
            out.results.append(line)
            out.tokens += result.tokens
            truncated += int(result.truncated)
            if streamed is not None and (row := embedding_row(line)) is not None:
                streamed.add(row[0], result.vector, row[2])  # the array itself, not its JSON floats
        return out

    try:
        stats = ctx.run_batches("embed", process)
    except BaseException:
        if streamed is not None:
            streamed.abort()  # a stopped run's vectors are in results.jsonl; resuming rebuilds the file
        raise
    stats.extra["truncated"] = truncated
    if ctx.job.parquet:
        ctx.writer.close()
        rows = streamed.close() if streamed is not None else results_to_parquet(ctx.writer.results_path, parquet_path)
        stats.extra["parquet_rows"] = rows
        log.info("wrote %d vectors to %s", rows, parquet_path)
    return stats
