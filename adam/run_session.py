"""One run in a run dir: its lock, manifest, resume, writer, counts, stop policy and batch loop, in one object.

A Batch API batch drives it (adam/server/batch_run.py) with the same pieces the CLI runner (adam/runner.py)
uses for ``python -m adam``: the run-dir lock, ``resume_state`` (stale temporary files removed, the previous
manifest, the run dir's Done), ``check_same_model``, ``resume_doc``, the Manifest, the RunWriter, JobStats,
the StopPolicy between batches (max_errors, a run of failures, and the door's own reasons: signals for a job,
cancel, expiry and a stopping server for a batch) and ``run_batches`` (length-sorted, planned batches). The
two differ only in where records come from and what stops them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from adam.backends.base import ModelBackend
from adam.engine import Outcome
from adam.errors import ExitCode
from adam.io.records import InvalidRecord, Record
from adam.io.writers import RunWriter
from adam.jobs.batching import JobStats, Progress, run_batches
from adam.locks import RunDirLock
from adam.manifest import Manifest
from adam.resume import Done
from adam.run_control import StopPolicy, after_batches, check_same_model, resume_doc, resume_state, totals

log = logging.getLogger(__name__)


class RunSession:
    """``with RunSession(run_dir, config, resuming=...) as run:`` holds the run dir; RunDirLocked when another does.

    ``config`` is what the manifest records as the run's config (a composed config, or plain nodes with a
    ``job`` holding its ``name``). A bug inside the block leaves a manifest that says the run failed, and how.
    """

    def __init__(
        self, run_dir: Path, config: Mapping[str, Any], *, resuming: bool, retry_errors: bool = False, hint: str = ""
    ) -> None:
        self.run_dir = run_dir
        self.config = config
        self.resuming = resuming
        self.retry_errors = retry_errors
        self.hint = hint  # what to do about a run that failed (added to its manifest's error)
        self.previous: dict[str, Any] | None = None
        self.done: Done | None = None
        self.manifest: Manifest | None = None
        self.writer: RunWriter | None = None
        self.stats = JobStats()
        self._lock = RunDirLock(run_dir)
        self._written = False  # the manifest was written by this session (a refused resume leaves it as it was)
        self._ended = False

    def __enter__(self) -> RunSession:
        self._lock.acquire()
        try:
            self.previous, self.done = resume_state(
                self.run_dir, resuming=self.resuming, retry_errors=self.retry_errors
            )
            self.manifest = Manifest(self.run_dir, self.config)
        except BaseException:
            self._lock.release()
            raise
        return self

    def start(self, info: dict[str, Any], **doc: Any) -> None:
        """Refuse a resume on another model (ConfigError), write the manifest, then open results.jsonl.

        ``doc``: more fields for the manifest (its command, input, ...).
        """
        assert self.manifest is not None
        if self.previous is not None:
            check_same_model(self.previous, info, self.run_dir)
            self.manifest.doc.update(resume_doc(self.previous, self.done))
        self.manifest.doc.update(backend=info, **doc)
        self.manifest.write()  # before results.jsonl is opened, as every run's is
        self._written = True
        self.manifest.reserve()  # so a disk that fills during the run still gets the run's outcome written
        self.writer = RunWriter(self.run_dir)

    @property
    def before(self) -> tuple[int, int]:
        """Results and errors earlier sessions of this run wrote."""
        return (self.done.results, self.done.errors) if self.done is not None else (0, 0)

    @property
    def counts(self) -> tuple[int, int]:
        """Results and errors the run dir holds now, over every session."""
        ok, bad = self.before
        return ok + self.stats.ok, bad + self.stats.failed

    def policy(self, job: Any, **kwargs: Any) -> StopPolicy:
        """The stop policy of ``job`` (its max_errors and max_consecutive_failures), counting earlier sessions."""
        return StopPolicy.of_job(job, done=self.done, **kwargs)

    def run(
        self,
        records: Iterable[Record | InvalidRecord],
        *,
        backend: ModelBackend,
        process: Callable[[Sequence[Record]], Outcome],
        job: Any,
        policy: StopPolicy,
        after_batch: Callable[[JobStats], None] | None = None,
    ) -> JobStats:
        """Run the records not done yet in length-sorted batches of job.batch_size (read ahead job.window), each
        written durably before ``after_batch`` sees the counts and the policy decides whether to go on."""
        assert self.writer is not None and self.manifest is not None
        todo = self.done.filter(records) if self.done is not None else records
        check = after_batches(policy, self.manifest)

        def after(stats: JobStats) -> None:
            if after_batch is not None:
                after_batch(stats)
            check(stats)

        return run_batches(
            todo,
            backend=backend,
            writer=self.writer,
            progress=Progress(None, enabled=False, desc=str(job.name)),
            window=int(job.window),
            batch_size=int(job.batch_size),
            process=process,
            after_batch=after,
            stats=self.stats,
        )

    def end(self, status: str, code: ExitCode, *, error: str | None = None) -> None:
        """Finish the manifest: this session's counts, and the totals of every session of a resumed run."""
        assert self.manifest is not None
        extra: dict[str, Any] = {"error": error} if error else {}
        if self.done is not None:
            extra["totals"] = totals(self.done, self.stats)
        self.manifest.finish(status, code, counts=self.stats.as_dict(), **extra)
        self._ended = True

    def end_if_possible(self, status: str, code: ExitCode, *, error: str | None = None) -> None:
        """``end``, on a disk that may be full: a manifest that cannot be written is logged and left as it was."""
        try:
            self.end(status, code, error=error)
        except OSError as err:
            log.warning("could not update the manifest in %s: %s", self.run_dir, err)
            self._ended = True  # not "failed" on the way out: the run resumes from what the run dir holds

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self.writer is not None:
                self.writer.close()
            if exc is not None and self._written and not self._ended:  # a bug: say how the run ended
                assert self.manifest is not None
                hint = f"; {self.hint}" if self.hint else ""
                try:
                    self.manifest.finish("failed", ExitCode.CONFIG, error=f"{type(exc).__name__}: {exc}{hint}")
                except OSError as err:
                    log.error("could not update %s: %s", self.manifest.path, err)
        finally:
            if self.manifest is not None:
                self.manifest.release()
            self._lock.release()
