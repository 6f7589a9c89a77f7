"""What a job gets from the runner: its settings, the backend, and where to write."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from adam.backends.base import ModelBackend
from adam.engine import Engine, Outcome
from adam.errors import BackendError, NoRecords
from adam.io.readers import RecordReader, no_records_message
from adam.io.records import InvalidRecord, Record
from adam.io.sharding import job_shard, shard_records
from adam.io.writers import RunWriter
from adam.jobs.batching import JobStats, JobStopped, Progress, run_batches
from adam.run.signals import StopRequest

if TYPE_CHECKING:
    from adam.run.resume import Done
    from adam.run.run_session import RunSession


@dataclass
class JobContext:
    """A job's inputs; a job never knows which backend it drives."""

    job: Any  # the job config node
    domain: Any  # the domain config node
    share: Any  # the share config node (model sharing settings)
    backend: ModelBackend
    run_dir: Path
    writer: RunWriter
    reader: RecordReader | None = None
    info: dict[str, Any] = field(default_factory=dict)  # backend.info(), taken once
    done: Done | None = None  # a resumed run: what the run dir already holds, skipped
    stats: JobStats = field(default_factory=JobStats)  # filled in as batches finish, kept if the job stops early
    vector_width: int | None = None  # embeddings: the width a resumed run's manifest recorded; new vectors match it
    on_vector_width: Callable[[int], None] | None = None  # embeddings: records the run's width (in the manifest)
    config: Any = None  # the whole composed config, for a job that builds a second backend (job=serve's embed_size)
    update_manifest: Callable[..., None] | None = None  # sets fields of the run's manifest.json (job=merge's shards)
    stop_request: StopRequest | None = None  # the runner's: reading stops at once, a batch is finished (merge checks)
    session: RunSession | None = None  # the run (adam/run/run_session.py): its batch loop and stop policy
    _engine: Engine | None = field(default=None, repr=False)

    @property
    def model_name(self) -> str:
        """The model name written into results."""
        return str(self.info.get("model") or self.backend.size.name)

    def records(self, kind: Literal["generate", "embed"]) -> Iterable[Record | InvalidRecord]:
        """The records of job.input still to run (all of them unless resuming); the reader is kept for its hash.

        An input that holds no record at all raises NoRecords once read, unless job.allow_empty is set.
        """
        self.reader = RecordReader.for_job(self.job, kind)
        return self._records(kind, self.reader)

    def _records(self, kind: Literal["generate", "embed"], reader: RecordReader) -> Iterator[Record | InvalidRecord]:
        records: Iterable[Record | InvalidRecord] = shard_records(reader, *job_shard(self.job))  # before chunking
        if kind == "embed" and self.job.get("chunk_tokens"):
            from adam.jobs.chunking import chunk_records

            tokens, overlap = int(self.job.chunk_tokens), int(self.job.get("chunk_overlap") or 0)
            records = chunk_records(records, self.backend.count_tokens, tokens, overlap)
        if self.done is not None and self.session is None:  # a session skips what is done itself
            records = self.done.filter(records)
        yield from records
        if reader.records_read == 0 and not self.job.get("allow_empty"):
            raise NoRecords(no_records_message(reader))

    def make_engine(
        self, vector_width: int | None = None, *, on_vector_width: Callable[[int], None] | None = None
    ) -> Engine:
        """An engine with this job's settings; ``vector_width`` (a store's) wins over the recorded one, and
        ``on_vector_width`` (a store's) is told the width instead of the manifest alone."""
        return Engine.from_config(
            self.backend,
            self.job,
            self.domain,
            model_name=self.model_name,
            vector_width=vector_width if vector_width is not None else self.vector_width,
            on_vector_width=on_vector_width or self.on_vector_width,
        )

    def stop_if_asked(self) -> None:
        """Raise JobStopped once Ctrl-C or SIGTERM came, for a job that checks between its own steps (job=merge)."""
        if self.stop_request:
            raise JobStopped(f"stopped by {self.stop_request.signal_name}", status="interrupted")

    @property
    def engine(self) -> Engine:
        """The job's engine (made on first use, after the runner has the backend's info)."""
        if self._engine is None:
            self._engine = self.make_engine()
        return self._engine

    def progress(self, desc: str) -> Progress:
        """A progress bar sized to the input where that is cheap to know."""
        total = self.reader.count_hint() if self.reader is not None else None
        shards = job_shard(self.job)[1]
        if total is not None and shards > 1:
            total = -(-total // shards)  # a shard gets about its share
        return Progress(total, enabled=bool(self.job.progress), desc=desc)

    def run_batches(
        self, kind: Literal["generate", "embed"], process: Callable[[Sequence[Record]], Outcome]
    ) -> JobStats:
        """Run ``process`` over the job's records in length-sorted batches, with the run's stop policy between them
        (the session's batch loop; without a session, no checks)."""
        records = self.records(kind)  # first: the progress bar sizes itself from the reader
        common: dict[str, Any] = {
            "backend": self.backend,
            "process": process,
            "progress": self.progress(kind),
            "stop": self.stop_request,
            "before_first": lambda: self._load_model(kind),
        }
        if self.session is not None:
            return self.session.run(records, job=self.job, **common)
        return run_batches(
            records, writer=self.writer, window=self.job.window, batch_size=self.job.batch_size, stats=self.stats,
            **common,
        )  # fmt: skip

    def _load_model(self, kind: Literal["generate", "embed"]) -> None:
        """Load a local model before the first batch, so that a stop during the load runs no batch after it."""
        if not (self.backend.loads_in_process and self.backend.size.kind.value == kind):
            return  # a server loads on the first request; an embedding job on a chat model loads its own way
        with contextlib.suppress(BackendError):  # the first batch meets it again, as its records' error lines
            self.backend.load()
