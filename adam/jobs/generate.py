"""job=generate: one generation per input record, written to results.jsonl as batches finish.

With job.keep_input each result line also holds its prompt; with job.results_format=[jsonl,csv] (or parquet)
the results are also written as one table, rebuilt from results.jsonl when the batches end.
"""

from __future__ import annotations

import logging

from adam.io.result_tables import remove_tables, table_formats, write_tables
from adam.jobs.batching import JobStats
from adam.jobs.context import JobContext
from adam.jobs.kept_input import keeping_input

log = logging.getLogger(__name__)


def run_generate(ctx: JobContext) -> JobStats:
    """Generate for every record of job.input: reader -> engine -> writer (and the tables, at the end)."""
    ctx.stats.extra.setdefault("truncated", 0)
    ctx.stats.extra.setdefault("deduplicated", 0)  # records answered by an identical request's one call
    process = keeping_input(ctx.engine.generate) if ctx.job.get("keep_input") else ctx.engine.generate
    tables = table_formats(ctx.job.get("results_format") or ())
    remove_tables(ctx.run_dir)  # an earlier attempt's table would be stale once lines are appended
    stats = ctx.run_batches("generate", process)
    if tables:
        ctx.writer.close()
        text_name = ctx.job.get("text_field") or "prompt"
        stats.extra["tables"] = write_tables(ctx.writer.results_path, tables, text_name=text_name)
    return stats
