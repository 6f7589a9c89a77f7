"""run(cfg) -> RunSummary: check the config, build the backend, run the job, record the outcome.

No model code lives here. Config mistakes fail in ``preflight`` before any model loads; a
BackendError is a record's problem (an error line), a BackendUnavailable or an interrupt stops
the run with exit status 4 and a manifest that says so.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from adam.backends.base import ModelBackend
from adam.config import ModelKind
from adam.errors import AdamError, BackendUnavailable, ConfigError, ExitCode
from adam.io.writers import RunWriter
from adam.jobs.batching import JobStats, JobStopped
from adam.jobs.context import JobContext
from adam.jobs.embed import run_embed
from adam.jobs.generate import run_generate
from adam.jobs.info import run_info
from adam.jobs.search import run_search
from adam.jobs.share import run_share, share_model
from adam.manifest import Manifest
from adam.resume import choose_run_dir, input_sha256, load_done, resume_command, wants_resume
from adam.run_control import between_batches, check_same_model, dry_run, previous_manifest, resume_doc, totals
from adam.signals import stop_on_signals
from adam.sizing import resolve_auto

log = logging.getLogger(__name__)

JOBS: dict[str, Callable[[JobContext], JobStats]] = {
    "generate": run_generate,
    "embed": run_embed,
    "info": run_info,
    "share": run_share,
    "search": run_search,
}
BATCH_JOBS = {"generate": ModelKind.generate, "embed": ModelKind.embed}  # jobs that read job.input


@dataclass
class RunSummary:
    """The outcome of one run."""

    job: str
    status: str  # completed | partial | stopped | interrupted
    exit_code: ExitCode
    run_dir: Path
    stats: JobStats
    message: str = ""


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
    if not (cfg.size.path or cfg.size.package or cfg.size.hf_id):
        raise ConfigError(
            f"size={cfg.size.name} names no model: set size.path=/path/to/model (an HF directory or a .gguf file)"
        )
    name = cfg.job.name
    if name not in JOBS:
        raise ConfigError(f"unknown job {name!r}; jobs: {', '.join(JOBS)}")
    if name in BATCH_JOBS:
        wanted = BATCH_JOBS[name]
        if wanted is ModelKind.generate and cfg.size.kind == ModelKind.embed:
            raise ConfigError(f"size={cfg.size.name} is an embedding model; use job=embed, or a generation size")
        source = str(cfg.job.input)
        if source != "-" and not Path(source).exists():
            raise ConfigError(f"input {source} does not exist: set job.input=<file>, or job.input=- for standard input")
    if name == "search":
        if cfg.job.store is None:
            raise ConfigError("job=search needs job.store=<file.db>, a store filled by job=embed job.store=...")
        if not Path(cfg.job.store).is_file():
            raise ConfigError(f"store {cfg.job.store} does not exist: fill it with job=embed job.store=...")
        if cfg.job.query is None and (cfg.job.queries is None or not Path(cfg.job.queries).is_file()):
            raise ConfigError('job=search needs job.query="..." or job.queries=<file of queries>')
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".adam-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"cannot write to the output dir {run_dir}: {err.strerror}; set hydra.run.dir=") from err
    if not resuming and (run_dir / "results.jsonl").exists():
        raise ConfigError(
            f"{run_dir} already holds results: pick another hydra.run.dir, or finish it with job.resume={run_dir}"
        )
    if name in BATCH_JOBS and cfg.job.get("retry_errors") and not resuming:
        raise ConfigError("job.retry_errors=true needs job.resume=<run dir> (or job.resume=true): it retries that run")
    if name in BATCH_JOBS and cfg.job.get("store") and str(cfg.job.input) == "-" and cfg.job.get("prune"):
        raise ConfigError("job.prune=true needs job.input to be a file or directory: stdin cannot be read twice")


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
    if cfg.job.name in ("embed", "search") and not backend.supports_embeddings:
        raise ConfigError(f"the {backend.name} backend cannot embed; pick another backend=")
    return backend


def run(cfg: DictConfig) -> RunSummary:
    """Run the configured job and return its outcome; raises AdamError for config mistakes."""
    run_dir = run_dir_of(cfg)
    resolve_auto(cfg)  # size=auto, quantization=auto, size.long_context: the one place (adam/sizing.py)
    batch = cfg.job.name in BATCH_JOBS
    resuming = batch and wants_resume(cfg.job)
    if resuming:
        run_dir, _ = choose_run_dir(cfg, run_dir)  # before preflight: that dir already holds results
        log.info("resuming %s", run_dir)
    preflight(cfg, run_dir, resuming=resuming)
    backend = build_backend(cfg)
    if batch and cfg.job.get("dry_run"):
        return dry_run(cfg, backend, run_dir, resuming=resuming)
    previous = previous_manifest(run_dir) if resuming else None
    done = load_done(run_dir, retry_errors=bool(cfg.job.get("retry_errors"))) if resuming else None
    manifest = Manifest(run_dir, cfg)
    writer = RunWriter(run_dir)
    ctx = JobContext(job=cfg.job, domain=cfg.domain, share=cfg.share, backend=backend, run_dir=run_dir, writer=writer)
    ctx.done = done
    if batch and str(cfg.job.input) != "-":  # recorded up front, so a killed or stopped run can be resumed
        manifest.doc["input"] = {"path": str(cfg.job.input), "sha256": input_sha256(str(cfg.job.input))}
    if previous is not None:
        manifest.doc.update(resume_doc(previous, done))
    with stop_on_signals() if batch else contextlib.nullcontext() as stop:
        try:
            backend.check_available()
            ctx.info = backend.info()
            if previous is not None:
                check_same_model(previous, ctx.info, run_dir)
            manifest.update(backend=ctx.info)
            if batch:
                ctx.after_batch = between_batches(cfg, stop, manifest, done)
            stats = JOBS[cfg.job.name](ctx)
            if cfg.share_with_ollama and cfg.job.name != "share":
                stats.shared = share_model(cfg.share, backend, run_dir)
        except ConfigError as err:
            if previous is None:  # a refused resume leaves the run it refused untouched
                manifest.finish("failed", ExitCode.CONFIG, error=str(err))
            raise
        except BackendUnavailable as err:
            msg = f"{err}; resume with: {resume_command(run_dir)}" if batch else str(err)
            manifest.finish("stopped", ExitCode.STOPPED, error=msg, counts=ctx.stats.as_dict())
            return RunSummary(cfg.job.name, "stopped", ExitCode.STOPPED, run_dir, ctx.stats, msg)
        except (JobStopped, KeyboardInterrupt) as err:
            status = err.status if isinstance(err, JobStopped) else "interrupted"
            msg = f"{str(err) or 'interrupted'}; what finished is in {run_dir}; resume with: {resume_command(run_dir)}"
            manifest.finish(status, ExitCode.STOPPED, error=msg, counts=ctx.stats.as_dict())
            return RunSummary(cfg.job.name, status, ExitCode.STOPPED, run_dir, ctx.stats, msg)
        finally:
            writer.close()
            backend.close()
    failed = stats.failed + (done.errors if done is not None else 0)
    status, code = ("partial", ExitCode.PARTIAL) if failed else ("completed", ExitCode.OK)
    extra = {"totals": totals(done, stats)} if done is not None else {}
    manifest.finish(status, code, counts=stats.as_dict(), input=_input_doc(cfg, ctx), shared=stats.shared, **extra)
    where = os.path.relpath(run_dir)
    log.info("%s %s: %d ok, %d failed; results in %s", cfg.job.name, status, stats.ok, stats.failed, where)
    return RunSummary(cfg.job.name, status, code, run_dir, stats)


def _input_doc(cfg: DictConfig, ctx: JobContext) -> dict[str, object] | None:
    """Input path and hash for the manifest."""
    if ctx.reader is None:
        return None
    return {"path": str(cfg.job.input), "sha256": ctx.reader.sha256}
