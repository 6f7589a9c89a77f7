"""job=embed: one vector per input record, to results.jsonl and embeddings.parquet."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from omegaconf import DictConfig

from adam.engine import Outcome
from adam.errors import ConfigError
from adam.io.records import Record
from adam.io.writers import PARQUET_NAME, VectorParquetWriter, embedding_row, results_to_parquet
from adam.jobs.batching import JobStats
from adam.jobs.context import JobContext
from adam.jobs.kept_input import keeping_input
from adam.settings.config import ModelKind

log = logging.getLogger(__name__)


def check_embed(cfg: DictConfig) -> None:
    """job.prune reads the input a second time, which standard input cannot give."""
    if cfg.job.get("store") and str(cfg.job.input) == "-" and cfg.job.get("prune"):
        raise ConfigError("job.prune=true needs job.input to be a file or directory: stdin cannot be read twice")
    warn_generation_model(cfg)


def warn_generation_model(cfg: DictConfig) -> None:
    """A chat model embeds poorly (its neighbours are weak): say so, and name the embedders."""
    if str(cfg.size.kind) == ModelKind.generate.value:
        log.warning(
            "size=%s is a generation model: its embeddings make poor neighbours; use an embedding size "
            "(size=minilm, bundled, or a qwen3_embedding_* size), or set size.kind=embed if it is one",
            cfg.size.name,
        )


def run_embed(ctx: JobContext) -> JobStats:
    """Embed every record of job.input into results.jsonl and, as batches finish, embeddings.parquet.

    A resumed run's Parquet file is rebuilt from results.jsonl at the end instead, since the vectors
    of the earlier attempt are only there.
    """
    if ctx.job.get("store"):
        from adam.jobs.embed_incremental import run_embed_store

        return run_embed_store(ctx)
    engine = ctx.engine
    ctx.stats.extra.setdefault("truncated", 0)
    parquet_path = ctx.run_dir / PARQUET_NAME
    streamed = VectorParquetWriter(parquet_path) if ctx.job.parquet and ctx.done is None else None

    embed = keeping_input(engine.embed) if ctx.job.get("keep_input") else engine.embed

    def process(batch: Sequence[Record]) -> Outcome:
        outcome = embed(batch)
        if streamed is not None:
            for line, vector in zip(outcome.results, outcome.vectors, strict=True):
                if (row := embedding_row(line)) is not None:
                    streamed.add(row[0], vector, row[2])  # the array itself, not its JSON floats
        return outcome

    try:
        stats = ctx.run_batches("embed", process)
    except BaseException:
        if streamed is not None:
            streamed.abort()  # a stopped run's vectors are in results.jsonl; resuming rebuilds the file
        raise
    if ctx.job.parquet:
        ctx.writer.close()
        rows = streamed.close() if streamed is not None else results_to_parquet(ctx.writer.results_path, parquet_path)
        stats.extra["parquet_rows"] = rows
        log.info("wrote %d vectors to %s", rows, parquet_path)
    return stats
