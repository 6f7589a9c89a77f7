"""A Batch API batch as an adam run: a RunSession over its run dir, with the job it runs as.

The job is the runner's own GenerateJob or EmbedJob (adam/settings/job_schemas.py: its defaults are stated there
once) over the batch's input file, with the server's job.max_batch as its batch size and job.batch_job's
overrides (max_errors, max_consecutive_failures, window). So a batch is locked, resumed, length-sorted,
batched, counted and stopped as ``python -m adam`` is (adam/run/run_session.py), and its manifest.json is a
run's: the job with its name and input, the engine's settings, the input's sha256, the model's identity.
The manifest ends as the batch ends: as a job's does when every line was answered (completed, partial, or
all_failed with exit status 5 when no line succeeded, while the batch object says ``completed`` as OpenAI's
does), cancelled, expired, stopped when the server stops first or when the run's stop policy stops it (too
many errors, a run of backend failures).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from adam.engine import Engine
from adam.errors import ConfigError, ExitCode
from adam.hashing import file_sha256
from adam.protocol.openai import Kind
from adam.run.manifest import MANIFEST_NAME
from adam.run.run_session import RunSession
from adam.settings.job_schemas import EmbedJob, GenerateJob, JobSpec

RESUMES = "a server started again on this state dir resumes it"
# how a batch's end maps to its run's status and exit code (a stopped run keeps what it finished, and resumes)
ENDINGS = {
    "cancelled": ("cancelled", ExitCode.STOPPED),
    "expired": ("expired", ExitCode.STOPPED),
    "shutdown": ("stopped", ExitCode.STOPPED),
    "stopped": ("stopped", ExitCode.STOPPED),
}


def batch_job(kind: Kind, input_path: Path, *, batch_size: int, overrides: Mapping[str, Any] | None = None) -> JobSpec:
    """The job a batch runs as: job=generate or job=embed over its input, with the server's batch size.

    ``overrides``: job.batch_job (max_errors, max_consecutive_failures, window); a wrong key or value is a ConfigError.
    """
    spec = GenerateJob if kind == "generate" else EmbedJob
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(spec)})
    if unknown:
        keys = ", ".join(f"job.batch_job.{k}" for k in unknown)
        raise ConfigError(f"unknown key {keys}: a batch takes keys of job={kind}, such as max_errors")
    return spec(name=kind, input=str(input_path), batch_size=batch_size, progress=False, **overrides)


class BatchRun(RunSession):
    """``with BatchRun(...) as run:`` owns the batch's run dir; raises RunDirLocked when another process does,
    and ConfigError when a resume finds another model (the manifest then stays as it was)."""

    def __init__(self, run_dir: Path, batch: dict[str, Any], input_path: Path, engine: Engine, job: JobSpec) -> None:
        self.batch = batch
        self.input_path = input_path
        self.engine = engine
        self.job = job
        config = {"job": self._job_doc(), "settings": _plain(dataclasses.asdict(engine.settings))}
        super().__init__(run_dir, config, resuming=(run_dir / MANIFEST_NAME).exists(), hint=RESUMES)

    def __enter__(self) -> BatchRun:
        super().__enter__()
        try:
            self.begin(input={"path": str(self.input_path), "sha256": file_sha256(self.input_path)})
            self.open()
            self.start(
                self.engine.backend.info(),
                command=f"POST /v1/batches ({self.batch['id']})",
                batch={"id": self.batch["id"], "endpoint": self.batch["endpoint"]},
            )
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def _job_doc(self) -> dict[str, Any]:
        """The job as a run's config records it, with the batch's format and completion window."""
        doc = _plain(dataclasses.asdict(self.job))
        return {**doc, "format": "openai", "completion_window": self.batch.get("completion_window")}

    def finish(self, ending: str, *, error: str | None = None) -> None:
        """End the manifest as the batch ends: ``finalizing`` (every line answered: the runner's outcome rule,
        completed 0, partial 3 or all_failed 5, over every session) or one of ENDINGS."""
        if ending == "finalizing":
            self.conclude(if_possible=False)
            return
        status, code = ENDINGS[ending]
        self.end(status, code, error=error)

    def finish_if_possible(self, ending: str, *, error: str | None = None) -> None:
        """``finish`` on a disk that may be full (the manifest is left as it was when it cannot be written)."""
        status, code = ENDINGS[ending]
        self.end_if_possible(status, code, error=error)


def _plain(doc: dict[str, Any]) -> dict[str, Any]:
    """A dataclass's dict as JSON values (enums by their value)."""
    return json.loads(json.dumps(doc, default=lambda v: getattr(v, "value", str(v))))  # type: ignore[no-any-return]
