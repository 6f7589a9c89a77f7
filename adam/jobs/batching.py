"""The loop every batch job shares: read ahead a window, sort it by length, run batches, write as they finish."""

from __future__ import annotations

import itertools
import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from adam.backends.base import ModelBackend, plan_batches
from adam.io.openai_batch import error_result
from adam.io.records import InvalidRecord, Record
from adam.io.writers import RunWriter

log = logging.getLogger(__name__)


@dataclass
class BatchOutput:
    """What processing one batch produced: result lines, error lines and tokens counted."""

    results: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    tokens: int = 0
    rejected: int = 0  # how many of ``errors`` are input problems found before the backend (context overflow)


@dataclass
class JobStats:
    """Counts a job reports in its manifest."""

    ok: int = 0
    invalid: int = 0  # records rejected before reaching the backend
    backend_errors: int = 0  # records the backend failed
    tokens: int = 0  # generated tokens (generate) or input tokens (embed)
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)  # job-specific counts (truncated, parquet_rows)
    shared: dict[str, Any] | None = None  # where the model was shared to, when it was

    @property
    def failed(self) -> int:
        """Records that ended in errors.jsonl."""
        return self.invalid + self.backend_errors

    def as_dict(self) -> dict[str, Any]:
        """Counts and rates for the manifest."""
        secs = max(self.seconds, 1e-9)
        return {
            "ok": self.ok,
            "failed": self.failed,
            "invalid": self.invalid,
            "backend_errors": self.backend_errors,
            "tokens": self.tokens,
            "records_per_s": round((self.ok + self.backend_errors) / secs, 3),
            "tokens_per_s": round(self.tokens / secs, 3),
            **self.extra,
        }


class JobStopped(Exception):
    """Raised between batches to end a job early (an interrupt, too many errors); the run can be resumed."""

    def __init__(self, message: str, status: str = "stopped") -> None:
        super().__init__(message)
        self.status = status


class Progress:
    """A tqdm bar on stderr with records/s and tokens/s; silent when stderr is not a terminal (cron)."""

    def __init__(self, total: int | None, *, enabled: bool, desc: str) -> None:
        from tqdm import tqdm

        self._started = time.perf_counter()
        self._tokens = 0
        self._bar = tqdm(
            total=total, desc=desc, unit="rec", file=sys.stderr, dynamic_ncols=True, disable=None if enabled else True
        )

    def update(self, records: int, tokens: int) -> None:
        """Count finished records and tokens."""
        self._tokens += tokens
        elapsed = max(time.perf_counter() - self._started, 1e-9)
        self._bar.set_postfix_str(f"{self._tokens / elapsed:.1f} tok/s", refresh=False)
        self._bar.update(records)

    def close(self) -> None:
        """Finish the bar."""
        self._bar.close()


def windows(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive lists of up to ``size`` items, so sorting by length never holds the whole input."""
    it = iter(items)
    while chunk := list(itertools.islice(it, max(size, 1))):
        yield chunk


def run_batches(
    records: Iterable[Record | InvalidRecord],
    *,
    backend: ModelBackend,
    writer: RunWriter,
    progress: Progress,
    window: int,
    batch_size: int,
    process: Callable[[Sequence[Record]], BatchOutput],
    after_batch: Callable[[JobStats], None] | None = None,
    stats: JobStats | None = None,
) -> JobStats:
    """Run ``process`` over length-sorted batches of valid records; invalid ones become error lines.

    ``after_batch`` sees the counts after every durable write and may raise JobStopped.
    """
    stats = stats if stats is not None else JobStats()
    started = time.perf_counter()
    try:
        for chunk in windows(records, window):
            valid = [r for r in chunk if isinstance(r, Record)]
            invalid = [r for r in chunk if isinstance(r, InvalidRecord)]
            if invalid:
                writer.write([], [error_result(r, r.message, code="invalid_input") for r in invalid])
                stats.invalid += len(invalid)
                progress.update(len(invalid), 0)
                if after_batch is not None:
                    after_batch(stats)
            lengths = backend.sort_keys([r.content for r in valid])
            for batch in plan_batches(lengths, batch_size, backend.token_budget):
                out = process([valid[i] for i in batch])
                writer.write(out.results, out.errors)
                stats.ok += len(out.results)
                stats.invalid += out.rejected
                stats.backend_errors += len(out.errors) - out.rejected
                stats.tokens += out.tokens
                progress.update(len(batch), out.tokens)
                if after_batch is not None:
                    after_batch(stats)
    finally:
        stats.seconds = time.perf_counter() - started
        progress.close()
    return stats
