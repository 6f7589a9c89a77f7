"""job=generate: one generation per input record, written to results.jsonl as batches finish."""

from __future__ import annotations

from adam.jobs.batching import JobStats
from adam.jobs.context import JobContext


def run_generate(ctx: JobContext) -> JobStats:
    """Generate for every record of job.input: reader -> engine -> writer."""
    ctx.stats.extra.setdefault("truncated", 0)
    ctx.stats.extra.setdefault("deduplicated", 0)  # records answered by an identical request's one call
    return ctx.run_batches("generate", ctx.engine.generate)
