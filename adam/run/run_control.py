"""The rules every run follows, a job's or a Batch API batch's (adam/run/run_session.py applies them): the stop policy
and the progress it records between batches, resume bookkeeping, the outcome rule; and dry runs."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from adam.backends.base import ModelBackend
from adam.errors import ConfigError, ExitCode
from adam.io.readers import RecordReader, no_records_message
from adam.io.records import Record
from adam.io.sharding import job_shard, shard_records
from adam.jobs.batching import JobStats, JobStopped
from adam.run.manifest import MANIFEST_NAME, Manifest
from adam.run.resume import Done, load_done
from adam.run.signals import StopRequest
from adam.run.summary import RunSummary
from adam.settings.config import ModelKind

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 10.0  # how often the manifest's progress is rewritten during a run
FRACTION_MIN_SEEN = 100  # a fractional job.max_errors is judged only after this many records
_MODEL_INFO_KEYS = ("model", "revision", "sha256", "digest")  # digest: an Ollama model; sha256: a GGUF file


ENDINGS = {  # a batch's own reasons to end between batches (adam/server/batch_run.py), as JobStopped statuses
    "cancelled": "the batch was cancelled",
    "expired": "the batch passed its completion window",
    "shutdown": "the server is stopping",
}


@dataclass
class StopPolicy:
    """When a run stops between batches, for every door: a signal, past max_errors, a run of backend failures,
    or a reason of its own (a batch's cancel, expiry, or its server stopping). Counts include a resumed run's."""

    max_errors: float | None = None  # job.max_errors: a count, or below 1 a fraction of the records seen
    max_consecutive_failures: int | None = None  # job.max_consecutive_failures
    signal: StopRequest | None = None  # truthy once Ctrl-C or SIGTERM came
    ending: Callable[[], str | None] | None = None  # one of ENDINGS when the run must end now (a batch's)
    prior_failed: int = 0  # errors a resumed run's earlier sessions wrote
    prior_seen: int = 0  # records they answered

    @classmethod
    def of_job(cls, job: Any, *, signal: StopRequest | None = None, done: Done | None = None,
               ending: Callable[[], str | None] | None = None) -> StopPolicy:  # fmt: skip
        """The policy of a job config node (or JobSpec): its max_errors and max_consecutive_failures."""
        failed = done.errors if done is not None else 0
        return cls(
            max_errors=getattr(job, "max_errors", None),
            max_consecutive_failures=getattr(job, "max_consecutive_failures", None),
            signal=signal,
            ending=ending,
            prior_failed=failed,
            prior_seen=failed + (done.results if done is not None else 0),
        )

    def check(self, stats: JobStats) -> None:
        """Raise JobStopped (its status says why) when the run must stop after the batch just written."""
        if self.signal:
            raise JobStopped(self.signal.stopped_message(), status="interrupted")
        ending = self.ending() if self.ending is not None else None
        if ending is not None:
            raise JobStopped(ENDINGS[ending], status=ending)
        failed = stats.failed + self.prior_failed
        seen = stats.ok + stats.failed + self.prior_seen
        limit = self.max_errors
        if limit is not None and _too_many(failed, seen, float(limit)):
            what = f"{int(limit)}" if limit >= 1 else f"{limit:g} of the records seen"
            raise JobStopped(
                f"{failed} of {seen} records failed, more than job.max_errors={what}: is job.input the right "
                "file for this job? see errors.jsonl"
            )
        streak = self.max_consecutive_failures
        if streak is not None and stats.failure_streak >= int(streak):
            raise JobStopped(
                f"the backend failed {stats.failure_streak} requests in a row (job.max_consecutive_failures="
                f"{int(streak)}), last: {stats.last_backend_error}; it looks unhealthy, so the run stopped"
            )


def after_batches(policy: StopPolicy, manifest: Manifest) -> Callable[[JobStats], None]:
    """The check run after each durable batch: the stop policy, then the manifest's progress every PROGRESS_EVERY_S."""
    last = time.monotonic()

    def check(stats: JobStats) -> None:
        nonlocal last
        policy.check(stats)
        if time.monotonic() - last >= PROGRESS_EVERY_S:
            last = time.monotonic()
            manifest.update(progress={**stats.as_dict(), "results": stats.ok, "errors": stats.failed})

    return check


def _too_many(failed: int, seen: int, limit: float) -> bool:
    if limit >= 1:
        return failed > limit
    return seen >= FRACTION_MIN_SEEN and failed / seen > limit


def previous_manifest(run_dir: Path) -> dict[str, Any]:
    """The manifest of the run being resumed."""
    try:
        return dict(json.loads((run_dir / MANIFEST_NAME).read_text(encoding="utf-8")))
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot resume {run_dir}: its manifest.json cannot be read ({err})") from err


def check_same_model(previous: dict[str, Any], info: dict[str, Any], run_dir: Path) -> None:
    """Refuse to resume when the backend now reports another model, revision or weights file."""
    before = previous.get("backend") or {}
    changed = [k for k in _MODEL_INFO_KEYS if k in before and before.get(k) != info.get(k)]
    if changed:
        detail = ", ".join(f"{k}: {before.get(k)} -> {info.get(k)}" for k in changed)
        raise ConfigError(f"cannot resume {run_dir}: the model changed since ({detail}); start a new run")
    _check_same_weight_type(before, info, run_dir)
    _check_same_runtime(before, info, run_dir)


def _check_same_weight_type(before: dict[str, Any], info: dict[str, Any], run_dir: Path) -> None:
    """Refuse to resume on another weight type (llamacpp's backend.weight_type): its answers would differ.

    A run from before backend.weight_type recorded none and ran its file as it is (the file's own type).
    """
    now = info.get("weight_type")
    if now is None:
        return
    then = before.get("weight_type") or (before.get("backend") == info.get("backend") and info.get("file_type"))
    if not then or then == now:
        return
    fix = "as_is" if then == info.get("file_type") else then
    raise ConfigError(
        f"cannot resume {run_dir}: it ran on {then} weights and this run would use {now}; "
        f"resume with backend.weight_type={fix}"
    )


def _check_same_runtime(before: dict[str, Any], info: dict[str, Any], run_dir: Path) -> None:
    """Refuse to resume on another runtime or quantization (backend.runtime=onnx): vectors of two never mix.

    A HuggingFace run from before backend.runtime recorded none and ran on torch.
    """
    now = (info.get("runtime"), info.get("quantization") or "none")
    if now[0] is None:
        return
    legacy = "torch" if before.get("backend") == info.get("backend") else None
    then = (before.get("runtime") or legacy, before.get("quantization") or "none")
    if then[0] is None or then == now:
        return
    raise ConfigError(
        f"cannot resume {run_dir}: its vectors came from runtime={then[0]} (quantization={then[1]}) and this run "
        f"would use runtime={now[0]} (quantization={now[1]}); resume with backend.runtime={then[0]} "
        f"backend.quantization={then[1]}, or start a new run"
    )


def resume_doc(previous: dict[str, Any], done: Done | None) -> dict[str, Any]:
    """Manifest fields that carry the history of a resumed run."""
    return {
        "first_started": previous.get("first_started") or previous.get("started"),
        "resumes": int(previous.get("resumes") or 0) + 1,
        "resumed_from_status": previous.get("status"),
        "resume": None
        if done is None
        else {"results_before": done.results, "errors_before": done.errors, "retried": done.retried},
    }


def totals(done: Done, stats: JobStats) -> dict[str, int]:
    """Records in results.jsonl and errors.jsonl over every session of a resumed run."""
    return {
        "results": done.results + stats.ok,
        "errors": done.errors + stats.failed,
        "skipped_as_done": done.skipped,
    }


def outcome(stats: JobStats, done: Done | None, run_dir: Path) -> tuple[str, ExitCode, str]:
    """(status, exit status, message) of a run that went to its end, judged over every session of a resumed one.

    A resumed run that finds everything done succeeded if any session did; no record succeeding at all is 5.
    """
    ok = stats.ok + (done.results if done is not None else 0)
    failed = stats.failed + (done.errors if done is not None else 0)
    if failed and not ok:
        first = _first_error(run_dir / "errors.jsonl")
        return "all_failed", ExitCode.NO_SUCCESS, f"no record succeeded: all {failed} failed{first}; see {run_dir}"
    if failed:
        return "partial", ExitCode.PARTIAL, ""
    return "completed", ExitCode.OK, ""


def _first_error(path: Path) -> str:
    """The message's ", the first (line N): <message>", from errors.jsonl (native or OpenAI lines); "" if unreadable."""
    try:
        with open(path, encoding="utf-8") as fh:
            line = json.loads(fh.readline())
    except (OSError, ValueError):
        return ""
    error = line.get("error") or ((line.get("response") or {}).get("body") or {}).get("error")
    message = error.get("message") if isinstance(error, dict) else None
    if not message:
        return ""
    number = line.get("line")
    where = f"line {number}" if isinstance(number, int) else f"id {line.get('id') or line.get('custom_id')}"
    return f", the first ({where}): {message}"


def dry_run(cfg: DictConfig, backend: ModelBackend, run_dir: Path, *, resuming: bool) -> RunSummary:
    """Validate the whole input and say what would run; load no model and write no results."""
    kind = "embed" if getattr(OmegaConf.get_type(cfg.job), "model_kind", None) is ModelKind.embed else "generate"
    reader = RecordReader.for_job(cfg.job, kind)
    done = load_done(run_dir, retry_errors=False) if resuming else None
    stats = JobStats()
    examples: list[str] = []
    records = shard_records(reader, *job_shard(cfg.job))
    for record in done.filter(records) if done is not None else records:
        if isinstance(record, Record):
            stats.ok += 1
        else:
            stats.invalid += 1
            if len(examples) < 5:
                examples.append(f"line {record.line}: {record.message}")
    model = cfg.size.path or cfg.size.hf_id or cfg.size.package or cfg.size.name
    skipped = f", {done.skipped} already done in {run_dir}" if done is not None else ""
    message = (
        f"dry run: {stats.ok} records would run on {model} ({backend.name} backend), {stats.invalid} invalid"
        f"{skipped}; no model was loaded"
    )
    log.info("%s", message)
    for line in examples:
        log.warning("invalid: %s", line)
    status, code = ("dry_run_invalid", ExitCode.PARTIAL) if stats.invalid else ("dry_run", ExitCode.OK)
    if stats.invalid and not stats.ok and not (done is not None and done.results):
        code = ExitCode.NO_SUCCESS  # not one record would run
        message = f"{message}: not one record is valid"
    elif reader.records_read == 0 and not cfg.job.get("allow_empty"):
        status, code, message = "empty", ExitCode.NO_SUCCESS, no_records_message(reader)
    if not resuming:  # a resumed run's own manifest stays as it is
        manifest = Manifest(run_dir, cfg)
        counts = {"valid": stats.ok, "invalid": stats.invalid, "invalid_examples": examples}
        manifest.finish(status, code, counts=counts, input={"path": str(cfg.job.input), "sha256": reader.sha256})
    return RunSummary(cfg.job.name, status, code, run_dir, stats, message if code != ExitCode.OK else "")
