"""Runs the Batch API's batches: one at a time, oldest first, in the gaps between interactive requests.

Each batch is an adam run over its input file (adam/server/batch_run.py: the run-dir lock, manifest.json,
resume): records in, the engine's result and error lines out, appended durably to the batch's run dir
(``batches/<id>/run``) a chunk at a time. A server started again on the same state dir resumes a batch
that was in progress: the run dir's Done skips every custom_id it holds, so each line is answered exactly
once. Cancel and expiry are checked between chunks.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from adam.engine import Engine
from adam.errors import AdamError, ConfigError, RunDirLocked
from adam.io.record_parser import URLS, Kind, RecordParser
from adam.io.records import Record
from adam.server.batch_run import RESUMES, BatchRun
from adam.server.batch_store import BatchStore
from adam.server.batcher import Batcher
from adam.server.file_store import FileStore, validate_batch

log = logging.getLogger(__name__)

IDLE_POLL_S = 0.5  # how often an idle worker looks for new batches (it is woken at once on create)
YIELD_S = 0.005  # while interactive requests wait, batch work waits this long before looking again


class Served(Protocol):
    """What the worker needs of a served model (adam.server.state.Served, which imports this module's users)."""

    engine: Engine
    batcher: Batcher

    @property
    def can_embed(self) -> bool: ...

    @property
    def can_generate(self) -> bool: ...


def kind_of(endpoint: str) -> Kind:
    """The job an endpoint asks for."""
    return next(k for k, urls in URLS.items() if endpoint in urls)


class BatchWorker:
    """The one thread that runs batches; start() on server start, stop() before the batchers close."""

    def __init__(self, batches: BatchStore, files: FileStore, models: Sequence[Served], chunk: int) -> None:
        self.batches = batches
        self.files = files
        self.models = models
        self.chunk = max(1, chunk)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="adam-batches", daemon=True)

    def start(self) -> None:
        """Begin running batches (those a previous server left in progress first)."""
        self._thread.start()

    def wake(self) -> None:
        """A batch was created or cancelled: look now."""
        self._wake.set()

    def stop(self, timeout: float | None = None) -> None:
        """Stop after the chunk in flight; a batch in progress stays in progress, to resume on the next start."""
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # ----------------------------------------------------------------- the thread
    def _loop(self) -> None:
        while not self._stopping.is_set():
            batch = self.batches.next_active()
            if batch is None:
                self._wake.wait(IDLE_POLL_S)
                self._wake.clear()
                continue
            try:
                self._advance(batch)
            except Exception as err:  # a bug fails the batch, never the server
                log.exception("batch %s failed", batch["id"])
                self._fail(batch["id"], "server_error", f"{type(err).__name__}: {err}")

    def _advance(self, batch: dict[str, Any]) -> None:
        """Move one batch on to its next state (running it when it is in progress)."""
        status, batch_id = batch["status"], batch["id"]
        if status == "cancelling" and batch["in_progress_at"] is None:
            self._end(batch_id, "cancelled")
        elif status == "validating":
            self._validate(batch)
        elif status in ("in_progress", "cancelling"):
            self._run(batch)
        elif status == "finalizing":
            self._end(batch_id, "completed")

    def _validate(self, batch: dict[str, Any]) -> None:
        data = self.files.content(batch["input_file_id"])
        if data is None:
            self._fail(batch["id"], "invalid_file", f"the input file {batch['input_file_id']} was deleted")
            return
        found = validate_batch(data, kind_of(batch["endpoint"]))
        if found.problems:
            self._fail_with(batch["id"], found.problems)
            return
        if self._served(batch["endpoint"]) is None:
            what = "an embedding model" if kind_of(batch["endpoint"]) == "embed" else "a chat model"
            self._fail(
                batch["id"], "unsupported", f"{batch['endpoint']} needs {what}, which this server does not serve"
            )
            return
        counts = {"total": found.lines, "completed": 0, "failed": 0}
        self.batches.update(
            batch["id"],
            only_if="validating",
            status="in_progress",
            in_progress_at=int(time.time()),
            request_counts=counts,
        )

    def _run(self, batch: dict[str, Any]) -> None:
        batch_id = batch["id"]
        served = self._served(batch["endpoint"])
        path = self.files.path(batch["input_file_id"])
        if served is None or path is None:
            self._fail(batch_id, "invalid_file", "the input file or the model for its endpoint is gone")
            return
        kind = kind_of(batch["endpoint"])
        try:
            with BatchRun(self.batches.run_dir(batch_id), batch, path, served.engine, kind) as run:
                ending = self._answer(batch, run, served)
        except RunDirLocked as err:  # another server on this state dir runs it: look again later
            log.warning("batch %s: %s", batch_id, err)
            self._stopping.wait(IDLE_POLL_S * 4)
            return
        except ConfigError as err:  # the resume was refused (the model changed): fail it, mix nothing
            self._fail(batch_id, "model_changed", str(err))
            return
        if ending is not None:
            self._end(batch_id, ending)

    def _answer(self, batch: dict[str, Any], run: BatchRun, served: Served) -> str | None:
        """Answer the lines the run dir does not hold yet; how the batch must end, or None to resume later."""
        batch_id = batch["id"]
        assert run.writer is not None
        completed, failed = run.before
        todo = _records(run.input_path, run.job)
        ending: str | None = None
        try:
            for chunk in _chunks(run.done.filter(todo) if run.done is not None else todo, self.chunk):
                ending = self._ending(batch_id)
                if ending is not None or self._stopping.is_set():
                    break
                self._yield_to_requests(served)
                work = served.engine.generate if run.job == "generate" else served.engine.embed
                outcome = served.batcher.call_from_thread(lambda work=work, chunk=chunk: work(chunk))
                run.writer.write(outcome.results, outcome.errors)
                completed, failed = completed + len(outcome.results), failed + len(outcome.errors)
                counts = {**batch["request_counts"], "completed": completed, "failed": failed}
                self.batches.update(batch_id, request_counts=counts)
                run.progress(completed, failed)
            else:
                ending = "finalizing"
        except AdamError as err:  # the model went away (shutting down, a server backend down): resume later
            log.warning("batch %s paused: %s", batch_id, err)
            run.end("stopped", completed, failed, error=f"{err}; it resumes when the server can answer again")
            self._stopping.wait(1.0)
            return None
        if ending is None:  # the server is stopping: the batch stays in progress, to resume on the next start
            run.end("stopped", completed, failed, error=f"the server stopped; {RESUMES}")
        else:
            run.end(ending, completed, failed)
        return ending

    def _ending(self, batch_id: str) -> str | None:
        """How the batch must end now, if it must: cancelled (asked to) or expired (past its window)."""
        batch = self.batches.get(batch_id)
        if batch is None or batch["status"] == "cancelling":
            return "cancelled"
        if time.time() >= batch["adam_deadline"]:
            return "expired"
        return None

    def _yield_to_requests(self, served: Served) -> None:
        while served.batcher.queue_depth and not self._stopping.is_set():
            time.sleep(YIELD_S)

    def _served(self, endpoint: str) -> Served | None:
        if kind_of(endpoint) == "embed":
            return next((m for m in self.models if m.can_embed), None)
        return next((m for m in self.models if m.can_generate), None)

    # ----------------------------------------------------------------- endings
    def _end(self, batch_id: str, status: str) -> None:
        """Finalize: the run's results and errors become the output and error files; then ``status``."""
        now = int(time.time())
        if status == "finalizing":
            self.batches.update(batch_id, status="finalizing", finalizing_at=now)
            status = "completed"
        files = self._outputs(batch_id)
        stamp = {"completed": "completed_at", "cancelled": "cancelled_at", "expired": "expired_at"}[status]
        self.batches.update(batch_id, status=status, **{stamp: int(time.time())}, **files)

    def _outputs(self, batch_id: str) -> dict[str, str | None]:
        run_dir = self.batches.run_dir(batch_id)
        ids: dict[str, str | None] = {"output_file_id": None, "error_file_id": None}
        for key, name in (("output_file_id", "results.jsonl"), ("error_file_id", "errors.jsonl")):
            path = run_dir / name
            if path.exists() and path.stat().st_size > 0:
                file_id = f"file-{_hex(batch_id, key)}"
                self.files.adopt(file_id, path, filename=f"{batch_id}_{name.split('.')[0]}.jsonl")
                ids[key] = file_id
        return ids

    def _fail(self, batch_id: str, code: str, message: str) -> None:
        self._fail_with(batch_id, [{"code": code, "line": None, "message": message, "param": None}])

    def _fail_with(self, batch_id: str, problems: list[dict[str, Any]]) -> None:
        errors = {"object": "list", "data": problems}
        self.batches.update(batch_id, status="failed", failed_at=int(time.time()), errors=errors)


def _hex(batch_id: str, key: str) -> str:
    """A stable file id for a batch's output (the same after a restart)."""
    return hashlib.sha256(f"{batch_id}/{key}".encode()).hexdigest()[:32]


def _records(path: Path, kind: Kind) -> Iterator[Record]:
    """The records of a validated batch input file."""
    parser = RecordParser(kind)
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            item = parser.from_json_line(number, raw.rstrip(b"\r\n"))
            if isinstance(item, Record):
                yield item


def _chunks(records: Iterator[Record], size: int) -> Iterator[list[Record]]:
    chunk: list[Record] = []
    for record in records:
        chunk.append(record)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
