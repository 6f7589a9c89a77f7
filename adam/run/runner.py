"""run(cfg) -> RunSummary: check the config, build the backend, run the job, record the outcome.

No model code lives here, nor the run's bookkeeping: the run dir's lock, manifest, resume, writer, stop policy,
batch loop and outcome are adam/run/run_session.py's, which a Batch API batch drives too; this module says where the
records come from (job.input) and what stops the run (signals, job limits). Config mistakes fail in
``preflight`` before any model loads; a
BackendError is a record's problem (an error line), a BackendUnavailable or an interrupt stops
the run with exit status 4 and a manifest that says so.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import logging
import os
from pathlib import Path

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from adam.backends.base import ModelBackend
from adam.errors import AdamError, ConfigError, ExitCode, NoRecords, RunStopped, is_disk_full
from adam.io.readers import RecordReader, input_exists
from adam.jobs.batching import JobStats, JobStopped
from adam.jobs.context import JobContext
from adam.jobs.kinds import JOBS, JobKind
from adam.jobs.share import share_model
from adam.planning.sizing import resolve_auto
from adam.run.launchers import default_threads
from adam.run.resume import choose_run_dir, job_input_sha256, read_manifest, rerun_command, resume_command, wants_resume
from adam.run.run_control import dry_run
from adam.run.run_session import RunSession
from adam.run.shard_runs import FINISHED
from adam.run.signals import Interrupted, StopRequest, stop_on_signals
from adam.run.summary import RunSummary
from adam.settings.config import ModelKind
from adam.settings.job_schemas import check_values

log = logging.getLogger(__name__)


def run_dir_of(cfg: DictConfig) -> Path:
    """The Hydra run (or multirun job) directory this run writes to."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    if "hydra" in cfg:  # composed with return_hydra_config=True (tests, the Python API)
        return Path(cfg.hydra.run.dir)
    raise ConfigError("no run directory: run through `python -m adam` or compose with return_hydra_config=True")


def _unknown_keys(cfg: DictConfig) -> list[str]:
    """Keys added with Hydra's `+key=value` that the group's schema does not know."""
    found = []
    for group in cfg:
        node = cfg[group]
        schema = OmegaConf.get_type(node) if isinstance(node, DictConfig) else None
        if group == "hydra" or schema is None or not dataclasses.is_dataclass(schema):
            continue
        known = {f.name for f in dataclasses.fields(schema)}
        for key in set(node.keys()) - known:
            hint = difflib.get_close_matches(str(key), known, n=1)
            found.append(f"{group}.{key}" + (f" (did you mean {group}.{hint[0]}?)" if hint else ""))
    return sorted(found)


def preflight(cfg: DictConfig, run_dir: Path, *, resuming: bool = False) -> None:
    """Fail on config mistakes before anything loads: missing values, wrong job/model pairing, bad paths."""
    unknown = _unknown_keys(cfg)
    if unknown:
        raise ConfigError(f"unknown config key {', '.join(unknown)}")
    nodes = [g for g in cfg if g != "hydra" and isinstance(cfg[g], DictConfig)]
    missing = [f"{group}.{key}" for group in nodes for key in OmegaConf.missing_keys(cfg[group])]
    if missing:
        examples = " ".join(f"{k}=..." for k in missing)
        raise ConfigError(f"missing value for {', '.join(missing)}: set it on the command line, e.g. {examples}")
    check_values(cfg)  # job.max_tokens=-5 and the like, by the schemas' __post_init__
    if not (cfg.size.path or cfg.size.package or cfg.size.hf_id):
        raise ConfigError(
            f"size={cfg.size.name} names no model: set size.path=/path/to/model (an HF directory or a .gguf file)"
        )
    job = job_kind(cfg)
    if job.model_kind is ModelKind.generate and cfg.size.kind == ModelKind.embed:
        raise ConfigError(f"size={cfg.size.name} is an embedding model; use job=embed, or a generation size")
    if job.reads_input:
        source = str(cfg.job.input)
        if not input_exists(source):
            raise ConfigError(f"input {source} does not exist: set job.input=<file>, or job.input=- for standard input")
        RecordReader.for_job(cfg.job, job.records).check_columns()  # format, encoding and columns: refused here
    if job.preflight is not None:
        job.preflight(cfg)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".adam-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"cannot write to the output dir {run_dir}: {err.strerror}; set hydra.run.dir=") from err
    if not resuming and (run_dir / "results.jsonl").exists() and not restarts(run_dir, job):
        finish = f", or finish it with job.resume={run_dir}" if job.reads_input else " (it finished there)"
        raise ConfigError(f"{run_dir} already holds results: pick another hydra.run.dir{finish}")
    if job.reads_input and cfg.job.get("retry_errors") and not resuming:
        raise ConfigError("job.retry_errors=true needs job.resume=<run dir> (or job.resume=true): it retries that run")


def restarts(run_dir: Path, job: JobKind) -> bool:
    """Whether this run starts over a run of the same restartable job (job=merge) that ``run_dir`` holds unfinished:
    stopped, interrupted, failed, or killed (its manifest says running, but this process holds the lock now)."""
    if not job.restartable:
        return False
    doc = read_manifest(run_dir)
    return doc is not None and doc.get("job") == job.name and doc.get("status") not in FINISHED


def job_kind(cfg: DictConfig) -> JobKind:
    """The job= option as an object that says what it needs."""
    name = str(cfg.job.name)
    if name not in JOBS:
        raise ConfigError(f"unknown job {name!r}; jobs: {', '.join(JOBS)}")
    return JOBS[name]


def build_backend(cfg: DictConfig) -> ModelBackend:
    """Instantiate the backend from its _target_; our own errors come out unwrapped, in one line."""
    try:
        backend = instantiate(cfg.backend, _convert_="object")
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, AdamError):
            raise cause from None
        raise ConfigError(f"cannot build backend {cfg.backend._target_}: {cause or err}") from err
    if not isinstance(backend, ModelBackend):
        raise ConfigError(f"backend._target_ {cfg.backend._target_} is not a ModelBackend")
    if job_kind(cfg).needs_embeddings and not backend.supports_embeddings:
        raise ConfigError(f"the {backend.name} backend cannot embed; pick another backend=")
    return backend


def run(cfg: DictConfig) -> RunSummary:
    """Run the configured job and return its outcome; raises AdamError for config mistakes."""
    run_dir = run_dir_of(cfg)
    kind = job_kind(cfg)
    batch = kind.reads_input
    dry = batch and bool(cfg.job.get("dry_run"))
    # A batch job (and job=merge) catches SIGINT and SIGTERM from here on: one that comes before the first batch
    # ends it as soon as the step under way returns (at once while it reads), with a manifest that says so. A dry
    # run does not: nothing there would check.
    with stop_on_signals() if (batch and not dry) or kind.restartable else contextlib.nullcontext() as signalled:
        resolve_auto(cfg)  # size=auto, quantization=auto, size.long_context: the one place (adam/planning/sizing.py)
        default_threads(cfg)  # a multirun on a parallel launcher: the cores divided among its jobs (launchers.py)
        resuming = batch and wants_resume(cfg.job)
        if resuming:
            with signalled.reading() if signalled is not None else contextlib.nullcontext():  # it hashes the input
                run_dir, _ = choose_run_dir(cfg, run_dir)  # before preflight: that dir already holds results
            log.info("resuming %s", run_dir)
        retry = resuming and bool(cfg.job.get("retry_errors"))
        with RunSession(run_dir, cfg, resuming=resuming, retry_errors=retry) as session:  # the lock, before any write
            preflight(cfg, run_dir, resuming=resuming)
            backend = build_backend(cfg)
            if dry:
                return dry_run(cfg, backend, run_dir, resuming=resuming)
            return _run_owned(cfg, backend, session, signalled=signalled)


def _run_owned(
    cfg: DictConfig, backend: ModelBackend, session: RunSession, *, signalled: StopRequest | None
) -> RunSummary:
    """The run itself, in a run dir this process holds; every way out leaves manifest.json saying how it ended.

    ``signalled`` is set by SIGINT or SIGTERM (a batch or restartable job only).
    """
    job = job_kind(cfg)
    batch, run_dir = job.reads_input, session.run_dir
    session.begin(restart=restarts(run_dir, job))  # a new run is known from here on, killed or not
    if batch and str(cfg.job.input) != "-":  # recorded up front, so a killed or stopped run can be resumed
        try:
            with signalled.reading() if signalled is not None else contextlib.nullcontext():
                sha = job_input_sha256(cfg.job)  # a large input takes a while: a signal ends it at once
        except Interrupted as err:
            return _stopped_unhashed(cfg, session, str(err))
        session.record_input(str(cfg.job.input), sha)
    session.open()
    assert session.writer is not None
    ctx = JobContext(
        job=cfg.job, domain=cfg.domain, share=cfg.share, backend=backend, run_dir=run_dir, writer=session.writer
    )
    ctx.config = cfg
    ctx.session = session
    ctx.done = session.done
    ctx.stats = session.stats
    ctx.stop_request = signalled
    ctx.vector_width = (session.previous or {}).get("dimensions")  # a resumed run's vectors keep the recorded width
    assert session.manifest is not None
    ctx.on_vector_width = lambda width: session.manifest.update(dimensions=width)  # type: ignore[union-attr]
    ctx.update_manifest = session.manifest.update

    def stop(status: str, message: str) -> RunSummary:
        msg = message
        if batch:
            msg = f"{message}; what finished is in {run_dir}"
            resumable = str(cfg.job.input) != "-"
            msg += f"; resume with: {resume_command(run_dir)}" if resumable else " (standard input cannot be resumed)"
        elif job.restartable:
            msg = f"{message}; run it again to finish it (it starts over): {rerun_command(run_dir)}"
        session.end_if_possible(status, ExitCode.STOPPED, error=msg)
        return RunSummary(cfg.job.name, status, ExitCode.STOPPED, run_dir, session.stats, msg)

    try:
        if signalled is not None:
            signalled.check()  # a signal while the run was being set up: nothing has run, stop now
        if job.needs_model:  # job=info describes the model without its weights or server
            backend.check_available()
        ctx.info = backend.info()
        session.start(ctx.info)
        if batch:
            session.use_policy(cfg.job, signal=signalled)  # signals, max_errors, a run of backend failures
        if signalled is not None:
            signalled.check()
        stats = job.run(ctx)
        if cfg.share_with_ollama and not job.shares_model:
            stats.shared = share_model(cfg.share, backend, run_dir)
    except RunStopped as err:
        return stop("stopped", str(err))
    except (JobStopped, KeyboardInterrupt) as err:
        status = err.status if isinstance(err, JobStopped) else "interrupted"
        return stop(status, str(err) or "interrupted")
    except NoRecords as err:
        session.end_if_possible("empty", err.exit_code, error=str(err))
        return RunSummary(cfg.job.name, "empty", err.exit_code, run_dir, session.stats, str(err))
    except OSError as err:
        if not is_disk_full(err):
            session.fail(ExitCode.CONFIG, f"{err}")
            raise
        return stop("stopped", f"disk full writing {err.filename or run_dir} ({err.strerror}): free some space")
    except AdamError as err:
        session.fail(err.exit_code, str(err))
        raise
    finally:
        session.close_writer()
        backend.close()
    status, code, message = session.conclude(stats, input=_input_doc(cfg, ctx), shared=stats.shared)
    where = os.path.relpath(run_dir)
    log.info("%s %s: %d ok, %d failed; results in %s", cfg.job.name, status, stats.ok, stats.failed, where)
    return RunSummary(cfg.job.name, status, code, run_dir, stats, message)


def _stopped_unhashed(cfg: DictConfig, session: RunSession, message: str) -> RunSummary:
    """A signal before the input was hashed, so before anything ran: nothing to resume (no input recorded)."""
    run_dir = session.run_dir
    if session.previous is not None:  # a resume: the run dir and its manifest stay as they were
        msg = f"{message}; {run_dir} is as it was: resume it with: {resume_command(run_dir)}"
    else:
        msg = f"{message}; no record was read: run it again with: {rerun_command(run_dir)}"
        session.end_if_possible("interrupted", ExitCode.STOPPED, error=msg)
    return RunSummary(cfg.job.name, "interrupted", ExitCode.STOPPED, run_dir, JobStats(), msg)


def _input_doc(cfg: DictConfig, ctx: JobContext) -> dict[str, object] | None:
    """Input path and hash for the manifest."""
    if ctx.reader is None:
        return None
    return {"path": str(cfg.job.input), "sha256": ctx.reader.sha256}
