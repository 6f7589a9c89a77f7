"""One run in a run dir: its lock, manifest, resume, writer, counts, stop policy, batch loop and outcome, in one object.

Every door drives it: the CLI runner (adam/run/runner.py) for ``python -m adam``, and a Batch API batch
(adam/server/batch_run.py). The steps, in order:

- ``with RunSession(...)``: the run-dir lock (RunDirLocked when another process holds it);
- ``begin()``: a resumed run's state (stale temporary files removed, its manifest, the run dir's Done), and a
  new run's first manifest (a run killed from then on is known); ``record_input`` adds the input's hash;
- ``open()``: the space reserve for the last manifest, and results.jsonl/errors.jsonl opened;
- ``start(info)``: a resume on another model refused (the manifest left as it was), the model recorded;
- ``use_policy`` and ``run``: length-sorted, planned batches (``run_batches``) under the StopPolicy (max_errors,
  a run of failures, and the door's own reasons: signals for a job; cancel, expiry and a stopping server for a
  batch), progress in the manifest;
- ``conclude``: the outcome rule (completed 0, partial 3, all_failed 5), judged over every session of a resumed
  run; or ``end`` with the door's own status (stopped, interrupted, cancelled, ...).

The doors differ only in where records come from and what stops them. A bug inside the block leaves a manifest
that says the run failed, and how.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from adam.backends.base import ModelBackend
from adam.engine import Outcome
from adam.errors import ConfigError, ExitCode, RunStopped, is_disk_full
from adam.io.records import InvalidRecord, Record
from adam.io.writers import RunWriter
from adam.jobs.batching import JobStats, Progress, run_batches
from adam.run.locks import RunDirLock
from adam.run.manifest import Manifest
from adam.run.resume import Done, load_done, remove_stale_temp_files
from adam.run.run_control import (
    StopPolicy,
    after_batches,
    check_same_model,
    outcome,
    previous_manifest,
    resume_doc,
    totals,
)
from adam.run.signals import StopRequest

log = logging.getLogger(__name__)


class RunSession:
    """``with RunSession(run_dir, config, resuming=...) as run:`` holds the run dir; RunDirLocked when another does.

    ``config`` is what the manifest records as the run's config (a composed config, or plain nodes with a
    ``job`` holding its ``name``).
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
        self.policy: StopPolicy | None = None
        self._lock = RunDirLock(run_dir)
        self._written = False  # this session wrote the manifest (a refused resume leaves it as it was)
        self._ended = False

    def __enter__(self) -> RunSession:
        self._lock.acquire()
        return self

    # ----------------------------------------------------------------- the steps before the first batch
    def begin(self, *, restart: bool = False, **doc: Any) -> None:
        """A resumed run's state, and a new run's first manifest (a full disk: RunStopped, in one line).

        ``restart``: the run dir holds an unfinished run that this one starts over (job=merge): its stale
        temporary files go too. ``doc``: fields the manifest has from the start (an input hashed already).
        """
        if self.resuming or restart:
            remove_stale_temp_files(self.run_dir)  # a resumed run's writer starts clean
        if self.resuming:
            self.previous = previous_manifest(self.run_dir)
            self.done = load_done(self.run_dir, retry_errors=self.retry_errors)
        self.manifest = Manifest(self.run_dir, self.config)
        self.manifest.doc.update(doc)
        if self.previous is None:
            self._first_write()

    def record_input(self, path: str, sha256: str) -> None:
        """Record the input up front, so that a killed or stopped run can be resumed."""
        assert self.manifest is not None
        self.manifest.doc["input"] = {"path": path, "sha256": sha256}
        if self.previous is None:
            self._first_write()

    def open(self) -> None:
        """Set space aside for the last manifest (a disk that fills during the run still gets the outcome written,
        ``end`` frees it), and open results.jsonl and errors.jsonl."""
        assert self.manifest is not None
        if self.previous is not None:
            self.manifest.doc.update(resume_doc(self.previous, self.done))  # written by ``start``
        self.manifest.reserve()
        self.writer = RunWriter(self.run_dir)

    def start(self, info: dict[str, Any], **doc: Any) -> None:
        """Refuse a resume on another model (ConfigError, the manifest left as it was), then record the model.

        ``doc``: more fields for the manifest (a batch's command and id).
        """
        assert self.manifest is not None
        if self.previous is not None:
            check_same_model(self.previous, info, self.run_dir)
        self._written = True
        self.manifest.update(backend=info, **doc)

    def _first_write(self) -> None:
        assert self.manifest is not None
        try:
            self.manifest.write()
        except OSError as err:
            path = self.manifest.path
            if is_disk_full(err):
                raise RunStopped(f"disk full writing {path} ({err.strerror}): free some space") from err
            raise ConfigError(f"cannot write {path}: {err.strerror}; set hydra.run.dir=") from err
        self._written = True

    # ----------------------------------------------------------------- the batches
    @property
    def before(self) -> tuple[int, int]:
        """Results and errors earlier sessions of this run wrote."""
        return (self.done.results, self.done.errors) if self.done is not None else (0, 0)

    @property
    def counts(self) -> tuple[int, int]:
        """Results and errors the run dir holds now, over every session."""
        ok, bad = self.before
        return ok + self.stats.ok, bad + self.stats.failed

    def use_policy(
        self, job: Any, *, signal: StopRequest | None = None, ending: Callable[[], str | None] | None = None
    ) -> StopPolicy:
        """Stop between batches as ``job`` says (max_errors, max_consecutive_failures, counting earlier sessions),
        and on the door's own reasons: a signal (a job) or an ending (a batch's cancel, expiry, server stop)."""
        self.policy = StopPolicy.of_job(job, signal=signal, done=self.done, ending=ending)
        return self.policy

    def run(
        self,
        records: Iterable[Record | InvalidRecord],
        *,
        backend: ModelBackend,
        process: Callable[[Sequence[Record]], Outcome],
        job: Any,
        after_batch: Callable[[JobStats], None] | None = None,
        progress: Progress | None = None,
        stop: StopRequest | None = None,
        before_first: Callable[[], None] | None = None,
    ) -> JobStats:
        """Run the records not done yet in length-sorted batches of job.batch_size (read ahead job.window), each
        written durably before ``after_batch`` sees the counts and the policy decides whether to go on.

        ``stop``: a signal ends the run at once while it reads; ``before_first``: the model load (see run_batches).
        """
        assert self.writer is not None and self.manifest is not None and self.policy is not None
        todo = self.done.filter(records) if self.done is not None else records
        check = after_batches(self.policy, self.manifest)

        def after(stats: JobStats) -> None:
            if after_batch is not None:
                after_batch(stats)
            check(stats)

        return run_batches(
            todo,
            backend=backend,
            writer=self.writer,
            progress=progress or Progress(None, enabled=False, desc=str(job.name)),
            window=int(job.window),
            batch_size=int(job.batch_size),
            process=process,
            after_batch=after,
            stats=self.stats,
            stop=stop,
            before_first=before_first,
        )

    # ----------------------------------------------------------------- the end
    def conclude(
        self, stats: JobStats | None = None, *, if_possible: bool = True, **fields: Any
    ) -> tuple[str, ExitCode, str]:
        """End a run that went to its end: (status, exit status, message) by the runner's outcome rule, judged
        over every session of a resumed run (no record succeeding at all is all_failed, 5).

        ``stats``: the job's own counts when they are not the session's (job=serve's); ``fields``: more for the
        manifest. A manifest that cannot be written is logged (``end_if_possible``), or with ``if_possible=False``
        raised (a batch waits for space and ends it again).
        """
        if stats is not None:
            self.stats = stats
        status, code, message = outcome(self.stats, self.done, self.run_dir)
        (self.end_if_possible if if_possible else self.end)(status, code, error=message or None, **fields)
        return status, code, message

    def end(self, status: str, code: ExitCode, *, error: str | None = None, **fields: Any) -> None:
        """Finish the manifest: this session's counts, and the totals of every session of a resumed run."""
        assert self.manifest is not None
        extra: dict[str, Any] = {"error": error} if error else {}
        if self.done is not None:
            extra["totals"] = totals(self.done, self.stats)
        self.manifest.finish(status, code, counts=self.stats.as_dict(), **extra, **fields)
        self._ended = True

    def end_if_possible(self, status: str, code: ExitCode, *, error: str | None = None, **fields: Any) -> None:
        """``end``, on a disk that may be full: a manifest that cannot be written keeps its last complete version
        (which a resume reads as well), and that is logged."""
        try:
            self.end(status, code, error=error, **fields)
        except OSError as err:
            path = self.manifest.path if self.manifest is not None else self.run_dir
            log.error("could not update %s (%s): it keeps its last complete version", path, err.strerror or err)
            self._ended = True  # not "failed" on the way out: the run resumes from what the run dir holds

    def fail(self, code: ExitCode, error: str) -> None:
        """End as failed, where this session wrote the manifest (a refused resume leaves it as it was)."""
        if self._written and not self._ended:
            self.end_if_possible("failed", code, error=error)
        if self.manifest is not None:
            self.manifest.release()

    def close_writer(self) -> None:
        """Close results.jsonl and errors.jsonl (done on the way out too)."""
        if self.writer is not None:
            self.writer.close()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.close_writer()
            if exc is not None and isinstance(exc, Exception):  # a bug: say how the run ended
                hint = f"; {self.hint}" if self.hint else ""
                self.fail(ExitCode.CONFIG, f"{type(exc).__name__}: {exc}{hint}")
        finally:
            if self.manifest is not None:
                self.manifest.release()
            self._lock.release()
