"""Runs the Batch API's batches: one at a time, oldest first, after interactive requests.

A model with a scheduler (llama.cpp, transformers) gets a batch's lines as batch work, which its
scheduler runs after the chat and completion requests at every decode step; any other local model gets
them in the gaps between interactive requests, a chunk at a time on its worker thread.

Each batch is an adam run over its input file (adam/server/batch_run.py on adam/run/run_session.py: the run-dir
lock, manifest.json, resume, the runner's batch loop): records in, length-sorted and planned into batches of
job.max_batch, the engine's result and error lines out, appended durably to the batch's run dir
(``batches/<id>/run``) a batch at a time. A server started again on the same state dir resumes a batch that
was in progress: the run dir's Done skips every custom_id it holds, so each line is answered exactly once.
Cancel and expiry are checked between batches, with the run's stop policy: past job.batch_job.max_errors, or
after max_consecutive_failures backend errors in a row, the batch fails with that message (what it finished
is kept in its output and error files).

A full disk pauses a batch and never ends it: the chunk that did not fit is not kept (RunWriter writes
all or nothing), the batch stays in progress, and the worker tries again after a backoff (sooner when a
file is deleted through the API), resuming from the run dir as a restarted server would.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from adam.engine import Engine, Outcome
from adam.errors import AdamError, ConfigError, RunDirLocked, RunStopped, is_disk_full
from adam.io.openai_batch import refused_request
from adam.io.records import Record
from adam.jobs.batching import JobStats, JobStopped
from adam.server.batch_input import VALIDATED_NAME, Resolve, check_file, kind_of, requests
from adam.server.batch_run import RESUMES, BatchRun, batch_job
from adam.server.batch_store import BatchStore
from adam.server.batcher import Batcher
from adam.server.errors import ApiError, error_body
from adam.server.file_store import FileStore

log = logging.getLogger(__name__)

IDLE_POLL_S = 0.5  # how often an idle worker looks for new batches (it is woken at once on create)
YIELD_S = 0.005  # while interactive requests wait, batch work waits this long before looking again
DISK_RETRY_S = (0.5, 30.0)  # a full disk: try again after the first, doubling up to the second


class Served(Protocol):
    """What the worker needs of a served model (adam.server.state.Served, which imports this module's users)."""

    engine: Engine
    batcher: Batcher
    openai_id: str

    @property
    def can_embed(self) -> bool: ...

    @property
    def can_generate(self) -> bool: ...


class BatchWorker:
    """The one thread that runs batches; start() on server start, stop() before the batchers close.

    ``resolve`` finds the model a line names as the HTTP routes do (ServerState.for_endpoint), so a line
    is refused with the same status and error body its route would answer.
    """

    def __init__(
        self,
        batches: BatchStore,
        files: FileStore,
        models: Sequence[Served],
        chunk: int,
        resolve: Resolve,
        job_overrides: Mapping[str, Any] | None = None,
    ) -> None:
        self.batches = batches
        self.files = files
        self.models = models
        self.chunk = max(1, chunk)  # a batch's job.batch_size: the server's job.max_batch
        self.resolve = resolve
        self.job_overrides = dict(job_overrides or {})  # job.batch_job: keys of the job a batch runs as
        batch_job("generate", Path("-"), batch_size=self.chunk, overrides=self.job_overrides)  # a ConfigError now
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="adam-batches", daemon=True)

    def start(self) -> None:
        """Begin running batches (those a previous server left in progress first)."""
        self._thread.start()

    def wake(self) -> None:
        """A batch was created or cancelled, or a file deleted (space for a paused batch): look now."""
        self._wake.set()

    def stop(self, timeout: float | None = None) -> None:
        """Stop after the chunk in flight; a batch in progress stays in progress, to resume on the next start."""
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # ----------------------------------------------------------------- the thread
    def _loop(self) -> None:
        pause = 0.0
        while not self._stopping.is_set():
            batch = self.batches.next_active()
            if batch is None:
                self._sleep(IDLE_POLL_S)
                continue
            try:
                self._advance(batch)
                pause = 0.0
            except (OSError, RunStopped) as err:  # RunStopped: the run's first write found the disk full
                if not is_disk_full(err):
                    self._bug(batch, err)
                    continue
                pause = min(max(2 * pause, DISK_RETRY_S[0]), DISK_RETRY_S[1])
                log.warning("batch %s paused: the disk is full (%s); trying again in %g s, or when a file is "
                            "deleted", batch["id"], err, pause)  # fmt: skip
                self._sleep(pause)
            except Exception as err:
                self._bug(batch, err)

    def _sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or until woken (a create, a cancel, a deleted file, stop)."""
        self._wake.wait(seconds)
        self._wake.clear()

    def _bug(self, batch: dict[str, Any], err: Exception) -> None:
        """A bug fails the batch, never the server (nor this thread, even when failing it cannot be written)."""
        log.error("batch %s failed", batch["id"], exc_info=err)
        try:
            self._fail(batch["id"], "server_error", f"{type(err).__name__}: {err}")
        except OSError as again:
            log.error("could not mark batch %s failed: %s", batch["id"], again)
            self._sleep(DISK_RETRY_S[1])

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
        path, endpoint = self.files.path(batch["input_file_id"]), batch["endpoint"]
        if path is None or not path.exists():
            self._fail(batch["id"], "invalid_file", f"the input file {batch['input_file_id']} was deleted")
            return
        found = check_file(path, endpoint, self.resolve, keep=self._validated(batch["id"]))
        if found.problems:
            self._fail_with(batch["id"], found.problems)
            return
        served = self._served(endpoint, found.model.openai_id if found.model is not None else None)
        if served is None:
            what = "an embedding model" if kind_of(endpoint) == "embed" else "a chat model"
            self._fail(batch["id"], "unsupported", f"{endpoint} needs {what}, which this server does not serve")
            return
        counts = {"total": found.lines, "completed": 0, "failed": 0}
        self.batches.update(
            batch["id"],
            only_if="validating",
            status="in_progress",
            in_progress_at=int(time.time()),
            request_counts=counts,
            model=served.openai_id,
        )

    def _run(self, batch: dict[str, Any]) -> None:
        batch_id = batch["id"]
        served = self._served(batch["endpoint"], batch.get("model"))
        path = self.files.path(batch["input_file_id"])
        if path is None:
            self._fail(batch_id, "invalid_file", f"the input file {batch['input_file_id']} is not there any more")
            return
        if served is None:  # a server started again with other models: never answer the rest with another one
            model = batch.get("model") or f"a model for {batch['endpoint']}"
            served_now = ", ".join(m.openai_id for m in self.models)
            message = f"the batch runs {model}, which this server does not serve (it serves {served_now})"
            self._fail(batch_id, "model_changed", message)
            return
        try:
            run_dir, kind = self.batches.run_dir(batch_id), kind_of(batch["endpoint"])
            job = batch_job(kind, path, batch_size=self.chunk, overrides=self.job_overrides)
            with BatchRun(run_dir, batch, path, served.engine, job) as run:
                ending, problem = self._answer(batch, run, served)
        except RunDirLocked as err:  # another server on this state dir runs it: look again later
            log.warning("batch %s: %s", batch_id, err)
            self._stopping.wait(IDLE_POLL_S * 4)
            return
        except ConfigError as err:  # the resume was refused (the model changed): fail it, mix nothing
            self._fail(batch_id, "model_changed", str(err))
            return
        if problem is not None:  # the run's stop policy ended it: what finished is in its output and error files
            self._end(batch_id, "failed", problem=problem)
        elif ending is not None:
            self._end(batch_id, ending)

    def _answer(self, batch: dict[str, Any], run: BatchRun, served: Served) -> tuple[str | None, str | None]:
        """Answer the lines the run dir does not hold yet, as a run of ``run.job``: (how the batch must end, or None
        to resume later; why the stop policy failed it, or None).

        A full disk is raised (after the manifest says the batch stopped, where it can): the loop waits for space.
        """
        batch_id, endpoint = batch["id"], batch["endpoint"]
        total = batch["request_counts"]["total"]

        def ending() -> str | None:
            return self._ending(batch_id) or ("shutdown" if self._stopping.is_set() else None)

        def counted(stats: JobStats) -> None:
            completed, failed = run.counts
            self.batches.update(batch_id, request_counts={"total": total, "completed": completed, "failed": failed})

        try:
            if (now := ending()) is not None:
                raise JobStopped(now, status=now)
            run.use_policy(run.job, ending=ending)  # max_errors, a run of failures, cancel, expiry, a stopping server
            run.run(
                requests(run.input_path, endpoint, self._validated(batch_id)),
                backend=served.engine.backend,
                process=lambda records: self._outcome(records, endpoint, served),
                job=run.job,
                after_batch=counted,
            )
        except JobStopped as err:
            if err.status == "shutdown":  # the batch stays in progress, to resume on the next start
                run.finish("shutdown", error=f"the server stopped; {RESUMES}")
                return None, None
            if err.status in ("cancelled", "expired"):
                run.finish(err.status)
                return err.status, None
            run.finish("stopped", error=str(err))  # max_errors or a run of backend failures, as a job stops
            return "failed", str(err)
        except AdamError as err:  # the model went away (shutting down, a server backend down): resume later
            log.warning("batch %s paused: %s", batch_id, err)
            run.finish("shutdown", error=f"{err}; it resumes when the server can answer again")
            self._stopping.wait(1.0)
            return None, None
        except OSError as err:
            if is_disk_full(err):
                run.finish_if_possible("shutdown", error=f"the disk is full ({err}); it resumes when there is space "
                                       f"again, or {RESUMES}")  # fmt: skip
            raise
        run.finish("finalizing")
        return "finalizing", None

    def _outcome(self, records: Sequence[Record], endpoint: str, served: Served) -> Outcome:
        """Result and error lines for one planned batch: lines naming a model this batch does not run are refused
        as their HTTP route would refuse them, the rest go to the model (after the interactive requests waiting)."""
        refused: list[dict[str, Any]] = []
        ready: list[Record] = []
        for item in records:
            if (line := self._refusal(item, endpoint, served)) is not None:
                refused.append(line)
            else:
                ready.append(item)
        generating = kind_of(endpoint) == "generate"
        work = served.engine.generate if generating else served.engine.embed
        if not ready:
            outcome = Outcome()
        elif generating and served.batcher.scheduled:  # as batch work: the scheduler runs chats first, step by step
            outcome = work(ready)
        else:  # the model's worker thread, once the interactive requests waiting for it are done
            self._yield_to_requests(served)
            outcome = served.batcher.call_from_thread(lambda: work(ready))
        outcome.errors[:0] = refused
        outcome.rejected += len(refused)  # the requests' own errors, not the backend's: no failure streak
        return outcome

    def _refusal(self, record: Record, endpoint: str, served: Served) -> dict[str, Any] | None:
        """The error line for a record whose body.model this batch's model cannot answer, or None."""
        if record.model is None:
            return None
        try:
            named = self.resolve(endpoint, record.model)
            if named.openai_id != served.openai_id:  # served since validation, by another model than the batch's
                raise ApiError(400, f"this batch runs '{served.openai_id}', not '{record.model}'", param="model")
        except ApiError as err:
            body = error_body("/v1", err.status, err.message, err.code, err.param)
            return refused_request(record, err.status, body["error"])
        return None

    def _validated(self, batch_id: str) -> Path:
        """Where validation keeps the batch's requests for its run (beside its run dir)."""
        return self.batches.run_dir(batch_id).parent / VALIDATED_NAME

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

    def _served(self, endpoint: str, model: str | None) -> Served | None:
        """The batch's model: the one its lines name, else the first served model that answers ``endpoint``."""
        if model is not None:
            return next((m for m in self.models if m.openai_id == model), None)
        if kind_of(endpoint) == "embed":
            return next((m for m in self.models if m.can_embed), None)
        return next((m for m in self.models if m.can_generate), None)

    # ----------------------------------------------------------------- endings
    def _end(self, batch_id: str, status: str, *, problem: str | None = None) -> None:
        """Finalize: the run's results and errors become the output and error files; then ``status``.

        ``failed`` with a ``problem``: the run's stop policy ended it; what it finished is still in its files.
        """
        now = int(time.time())
        if status == "finalizing":
            self.batches.update(batch_id, status="finalizing", finalizing_at=now)
            status = "completed"
        files = self._outputs(batch_id)
        stamp = {"completed": "completed_at", "cancelled": "cancelled_at", "expired": "expired_at",
                 "failed": "failed_at"}[status]  # fmt: skip
        extra: dict[str, Any] = {}
        if problem is not None:
            problems = [{"code": "stopped", "line": None, "message": problem, "param": None}]
            extra["errors"] = {"object": "list", "data": problems}
        self.batches.update(batch_id, status=status, **{stamp: int(time.time())}, **files, **extra)
        self._validated(batch_id).unlink(missing_ok=True)  # its run is over: the space goes back

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
        self._validated(batch_id).unlink(missing_ok=True)


def _hex(batch_id: str, key: str) -> str:
    """A stable file id for a batch's output (the same after a restart)."""
    return hashlib.sha256(f"{batch_id}/{key}".encode()).hexdigest()[:32]
