"""A Batch API batch's run dir as an adam run: locked while it runs, manifest.json from start to end, resumable.

The same pieces ``adam.runner`` uses for ``python -m adam``: the run-dir lock (a second server on the same
state dir refuses the batch instead of answering its lines twice), a manifest written before results.jsonl
with the input's sha256 and the model's identity, the run dir's ``Done`` on a restart, and a resume that
refuses a model changed since (the same ``check_same_model``). The manifest ends as the batch ends:
completed (or partial), cancelled, expired, or stopped when the server stops first.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from omegaconf import OmegaConf

from adam.engine import Engine
from adam.errors import ExitCode
from adam.hashing import file_sha256
from adam.io.record_parser import Kind
from adam.io.writers import RunWriter
from adam.locks import RunDirLock
from adam.manifest import MANIFEST_NAME, Manifest
from adam.resume import Done, load_done, remove_stale_temp_files
from adam.run_control import PROGRESS_EVERY_S, check_same_model, previous_manifest, resume_doc

log = logging.getLogger(__name__)

# how a batch's end maps to the run's status and exit code (cancelled and expired runs keep what they finished)
ENDINGS = {
    "cancelled": ("cancelled", ExitCode.STOPPED),
    "expired": ("expired", ExitCode.STOPPED),
    "stopped": ("stopped", ExitCode.STOPPED),
}
RESUMES = "a server started again on this state dir resumes it"


class BatchRun:
    """``with BatchRun(...) as run:`` owns the run dir; raises RunDirLocked when another process does."""

    def __init__(self, run_dir: Path, batch: dict[str, Any], input_path: Path, engine: Engine, job: Kind) -> None:
        self.run_dir = run_dir
        self.batch = batch
        self.input_path = input_path
        self.engine = engine
        self.job = job  # generate or embed
        self._lock = RunDirLock(run_dir)
        self.done: Done | None = None
        self.writer: RunWriter | None = None
        self.manifest: Manifest | None = None
        self._ended = False
        self._last_progress = time.monotonic()

    def __enter__(self) -> BatchRun:
        self._lock.acquire()
        try:
            self._open()
        except BaseException:
            self._lock.release()
            raise
        return self

    def _open(self) -> None:
        resuming = (self.run_dir / MANIFEST_NAME).exists()
        previous = previous_manifest(self.run_dir) if resuming else None
        if resuming:
            remove_stale_temp_files(self.run_dir)
            self.done = load_done(self.run_dir, retry_errors=False)
        info = self.engine.backend.info()
        if previous is not None:
            check_same_model(previous, info, self.run_dir)  # a ConfigError: the batch fails, nothing is mixed
        self.manifest = Manifest(self.run_dir, OmegaConf.create({"job": self._job_doc()}))
        self.manifest.doc.update(
            command=f"POST /v1/batches ({self.batch['id']})",
            input={"path": str(self.input_path), "sha256": file_sha256(self.input_path)},
            backend=info,
            batch={"id": self.batch["id"], "endpoint": self.batch["endpoint"]},
        )
        if previous is not None:
            self.manifest.doc.update(resume_doc(previous, self.done))
        self.manifest.write()  # before results.jsonl is opened, as a plain run does
        self.writer = RunWriter(self.run_dir)

    def _job_doc(self) -> dict[str, Any]:
        """The job as a run config records it: the kind, the input, and the settings the engine applies."""
        settings = json.loads(json.dumps(dataclasses.asdict(self.engine.settings), default=str))
        return {
            "name": self.job,
            "input": str(self.input_path),
            "format": "openai",
            "completion_window": self.batch.get("completion_window"),
            "settings": settings,
        }

    @property
    def before(self) -> tuple[int, int]:
        """Results and errors a previous server wrote for this batch."""
        return (self.done.results, self.done.errors) if self.done is not None else (0, 0)

    def progress(self, completed: int, failed: int) -> None:
        """Record the counts so far, every PROGRESS_EVERY_S as the runner does (the batch store has them at once).

        ``completed`` and ``failed`` count every line answered, across restarts.
        """
        assert self.manifest is not None
        if time.monotonic() - self._last_progress < PROGRESS_EVERY_S:
            return
        self._last_progress = time.monotonic()
        ok, bad = self.before
        self.manifest.update(
            progress={"ok": completed - ok, "failed": failed - bad, "results": completed, "errors": failed}
        )

    def end(self, ending: str, completed: int, failed: int, error: str | None = None) -> None:
        """Finish the manifest: ``finalizing`` (every line answered) or one of ENDINGS."""
        assert self.manifest is not None
        if ending == "finalizing":
            status, code = ("partial", ExitCode.PARTIAL) if failed else ("completed", ExitCode.OK)
        else:
            status, code = ENDINGS[ending]
        ok, bad = self.before
        extra: dict[str, Any] = {"error": error} if error else {}
        if self.done is not None:  # as the runner records a resumed run: this session's counts, and the totals
            extra["totals"] = {"results": completed, "errors": failed, "skipped_as_done": self.done.skipped}
        self.manifest.finish(status, code, counts={"ok": completed - ok, "failed": failed - bad}, **extra)
        self._ended = True

    def end_if_possible(self, ending: str, completed: int, failed: int, error: str | None = None) -> None:
        """``end``, on a disk that may be full: a manifest that cannot be written is logged, and left as it was."""
        try:
            self.end(ending, completed, failed, error=error)
        except OSError as err:
            log.warning("could not update %s: %s", self.run_dir / MANIFEST_NAME, err)
            self._ended = True  # not "failed" on the way out: the batch resumes from what the run dir holds

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self.writer is not None:
                self.writer.close()
            if exc is not None and not self._ended and self.manifest is not None:  # a bug: say how the run ended
                try:
                    self.manifest.finish("failed", ExitCode.CONFIG, error=f"{type(exc).__name__}: {exc}; {RESUMES}")
                except OSError as err:
                    log.error("could not update %s: %s", self.manifest.path, err)
        finally:
            self._lock.release()
