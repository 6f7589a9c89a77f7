"""The loop every batch job shares: read ahead a window, sort it by length, run batches, write as they finish."""

from __future__ import annotations

import contextlib
import itertools
import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from adam.backends.base import ModelBackend, plan_batches
from adam.engine import Outcome
from adam.io.openai_batch import error_result
from adam.io.records import InvalidRecord, Record
from adam.io.writers import RunWriter
from adam.run.signals import StopRequest

log = logging.getLogger(__name__)


@dataclass
class JobStats:
    """Counts a job reports in its manifest."""

    ok: int = 0
    invalid: int = 0  # records rejected before reaching the backend
    backend_errors: int = 0  # records the backend failed
    tokens: int = 0  # generated tokens (generate) or input tokens (embed)
    seconds: float = 0.0  # time spent running the records, set when the batches end
    started: float | None = None  # perf_counter when they began: rates in the progress written meanwhile
    extra: dict[str, Any] = field(default_factory=dict)  # job-specific counts (truncated, parquet_rows)
    shared: dict[str, Any] | None = None  # where the model was shared to, when it was
    failure_streak: int = 0  # backend errors since the last batch with a success (job.max_consecutive_failures)
    last_backend_error: str | None = None  # the newest backend error's message, for the stop message

    @property
    def failed(self) -> int:
        """Records that ended in errors.jsonl."""
        return self.invalid + self.backend_errors

    def elapsed(self) -> float:
        """Seconds spent on the records so far; 0 for a job that timed nothing (info, search, a dry run)."""
        if self.seconds > 0:
            return self.seconds
        return time.perf_counter() - self.started if self.started is not None else 0.0

    def as_dict(self) -> dict[str, Any]:
        """Counts, and rates over the time measured (none where nothing was timed) for the manifest."""
        out: dict[str, Any] = {
            "ok": self.ok,
            "failed": self.failed,
            "invalid": self.invalid,
            "backend_errors": self.backend_errors,
            "tokens": self.tokens,
        }
        secs = self.elapsed()
        if secs > 0:
            out["records_per_s"] = round((self.ok + self.backend_errors) / secs, 3)
            out["tokens_per_s"] = round(self.tokens / secs, 3)
        return {**out, **self.extra}


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
    process: Callable[[Sequence[Record]], Outcome],
    after_batch: Callable[[JobStats], None] | None = None,
    stats: JobStats | None = None,
    stop: StopRequest | None = None,
    before_first: Callable[[], None] | None = None,
) -> JobStats:
    """Run ``process`` over length-sorted batches of valid records; invalid ones become error lines.

    ``after_batch`` sees the counts after every durable write and may raise JobStopped. With ``stop``,
    a signal ends the job at once while it reads, and otherwise before the next batch starts, so no
    batch runs after one; ``before_first`` (a model load) runs before the first batch, for the same reason.
    """
    stats = stats if stats is not None else JobStats()
    started = stats.started = time.perf_counter()
    check = stop.check if stop is not None else _nothing
    try:
        for chunk in windows(stop.read(records) if stop is not None else records, window):
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
                check()
                if before_first is not None:
                    with _busy(stop, "the model load under way"):
                        before_first()
                    before_first = None
                    check()
                with _busy(stop, "the batch in flight"):
                    out = process([valid[i] for i in batch])
                    writer.write(out.results, out.errors)
                if stop is not None:
                    stop.batches += 1
                stats.ok += len(out.results)
                stats.invalid += out.rejected
                stats.backend_errors += len(out.errors) - out.rejected
                _note_failures(stats, out)
                stats.tokens += out.tokens
                if out.truncated:
                    stats.extra["truncated"] = stats.extra.get("truncated", 0) + out.truncated
                if out.deduplicated:
                    stats.extra["deduplicated"] = stats.extra.get("deduplicated", 0) + out.deduplicated
                progress.update(len(batch), out.tokens)
                if after_batch is not None:
                    after_batch(stats)
    finally:
        stats.seconds = time.perf_counter() - started
        progress.close()
    return stats


def _nothing() -> None:
    """No stop to check."""


def _busy(stop: StopRequest | None, what: str) -> contextlib.AbstractContextManager[None]:
    return stop.busy(what) if stop is not None else contextlib.nullcontext()


def _note_failures(stats: JobStats, out: Outcome) -> None:
    """Track backend errors in a row: a batch with any success ends the streak."""
    failures = len(out.errors) - out.rejected
    if out.results:
        stats.failure_streak = 0
    elif failures:
        stats.failure_streak += failures
        line = out.errors[-1]
        error = line.get("error") or ((line.get("response") or {}).get("body") or {}).get("error")  # native | OpenAI
        if isinstance(error, dict):
            stats.last_backend_error = str(error.get("message") or "")
