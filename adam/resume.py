"""Resume: pick the run dir to finish, refuse when its input or model changed, and skip what is already done.

A run dir is the unit of work. results.jsonl and errors.jsonl are appended and fsynced batch by
batch, so after any crash they hold every finished batch (a torn last line is cut off when the
writer reopens them). Resuming reads which records they hold and runs only the others, so every
input record ends up exactly once in one of the two files.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from adam.errors import ConfigError
from adam.io.readers import RecordReader
from adam.io.records import InvalidRecord, Record
from adam.io.writers import ERRORS_NAME, RESULTS_NAME, dumps_line
from adam.manifest import MANIFEST_NAME

log = logging.getLogger(__name__)

_MODEL_KEYS = ("hf_id", "revision", "path", "package", "source", "dimensions", "name")  # size keys that pick weights


@dataclass
class Done:
    """What a run dir already holds: ids with a result or a failure, input lines rejected as invalid."""

    result_ids: set[str] = field(default_factory=set)
    failed_ids: set[str] = field(default_factory=set)  # valid records that failed (backend, context overflow)
    error_lines: set[int] = field(default_factory=set)  # input lines rejected before they had a usable record
    results: int = 0
    errors: int = 0
    retried: int = 0  # backend errors removed so their records run again
    skipped: int = 0  # records the filter held back (set while iterating)

    def filter(self, records: Iterable[Record | InvalidRecord]) -> Iterator[Record | InvalidRecord]:
        """The records that still need to run."""
        for record in records:
            if isinstance(record, Record):
                key = str(record.id)
                if key in self.result_ids or key in self.failed_ids:  # by id: chunks of one line have their own
                    self.skipped += 1
                    continue
            elif record.line in self.error_lines:
                self.skipped += 1
                continue
            yield record


def wants_resume(job: Any) -> bool:
    """Whether job.resume is set."""
    value = job.get("resume") if isinstance(job, DictConfig) else getattr(job, "resume", None)
    return value is not None and str(value).lower() not in ("", "false", "none", "null")


def input_sha256(source: str) -> str:
    """sha256 of an input exactly as RecordReader computes it while reading."""
    return RecordReader(source, "embed").source_sha256()


def model_identity(config: dict[str, Any]) -> dict[str, Any]:
    """The config values that decide which model answers: backend class and the size's weights."""
    size = config.get("size") or {}
    backend = config.get("backend") or {}
    return {"backend": backend.get("_target_"), **{k: size.get(k) for k in _MODEL_KEYS}}


def _read_manifest(run_dir: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads((run_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _mismatch(doc: dict[str, Any], job: str, sha: str, identity: dict[str, Any]) -> str | None:
    """Why a run dir cannot be resumed with this config; None when it can."""
    if doc.get("job") != job:
        return f"it ran job={doc.get('job')}, not job={job}"
    recorded = (doc.get("input") or {}).get("sha256")
    if recorded is None:
        return "its manifest records no input (it stopped before its first batch): start a new run"
    if recorded != sha:
        return "the input file changed since (its sha256 differs)"
    before = model_identity(doc.get("config") or {})
    changed = [k for k in identity if before.get(k) != identity[k]]
    if changed:
        return "the model changed since (" + ", ".join(f"{k}: {before.get(k)} -> {identity[k]}" for k in changed) + ")"
    return None


def choose_run_dir(cfg: DictConfig, fresh_dir: Path) -> tuple[Path, str]:
    """(the run dir to finish, the input's sha256) for job.resume; a ConfigError in one line when it cannot be."""
    source = str(cfg.job.input)
    if source == "-":
        raise ConfigError("job.resume needs job.input to be a file: standard input cannot be read again")
    if not Path(source).exists():
        raise ConfigError(f"input {source} does not exist: set job.input=<file>")
    sha = input_sha256(source)
    config = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("backend", "size")}
    identity = model_identity(config)
    value = str(cfg.job.resume)
    if value.lower() != "true":
        run_dir = Path(value)
        doc = _read_manifest(run_dir)
        if doc is None:
            raise ConfigError(f"cannot resume {run_dir}: it holds no manifest.json from an adam run")
        why = _mismatch(doc, str(cfg.job.name), sha, identity)
        if why:
            raise ConfigError(f"cannot resume {run_dir}: {why}; start a new run without job.resume")
        return run_dir, sha
    parent = fresh_dir.parent
    candidates = []
    for child in parent.iterdir() if parent.is_dir() else ():
        if child == fresh_dir or not child.is_dir():
            continue
        doc = _read_manifest(child)
        if doc is not None and _mismatch(doc, str(cfg.job.name), sha, identity) is None:
            candidates.append((str(doc.get("first_started") or doc.get("started") or ""), child.name, child))
    if not candidates:
        raise ConfigError(
            f"job.resume=true found no run of job={cfg.job.name} in {parent} with this input and model; "
            "name the run dir (job.resume=<dir>) or start a new run"
        )
    return max(candidates)[2], sha


def load_done(run_dir: Path, *, retry_errors: bool) -> Done:
    """Read what a run dir holds; with retry_errors, first drop its backend_error lines (atomically)."""
    done = Done()
    for obj in _lines(run_dir / RESULTS_NAME):
        key = _key(obj)
        if key is not None:
            done.result_ids.add(str(key))
            done.results += 1
    errors_path = run_dir / ERRORS_NAME
    kept: list[dict[str, Any]] = []
    for obj in _lines(errors_path):
        if retry_errors and _error_code(obj) == "backend_error":
            done.retried += 1
            continue
        kept.append(obj)
        if _error_code(obj) == "invalid_input":
            if isinstance(obj.get("line"), int):
                done.error_lines.add(obj["line"])
        elif (key := _key(obj)) is not None:
            done.failed_ids.add(str(key))
    done.errors = len(kept)
    if done.retried:
        _rewrite(errors_path, kept)
        log.info("retrying %d records that failed at the backend", done.retried)
    return done


def _key(obj: dict[str, Any]) -> Any:
    """The record id a result or error line belongs to (custom_id for OpenAI-format lines)."""
    return obj.get("custom_id") if "custom_id" in obj else obj.get("id")


def _error_code(obj: dict[str, Any]) -> str | None:
    error = obj.get("error")
    if isinstance(error, dict):
        return error.get("code")
    body = ((obj.get("response") or {}).get("body") or {}).get("error")  # OpenAI-format error lines
    return body.get("code") if isinstance(body, dict) else None


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    """Complete JSON object lines of a JSONL file; a torn last line is ignored (the writer cuts it off)."""
    if not path.exists():
        return
    with open(path, "rb") as fh:
        for raw in fh:
            if not raw.endswith(b"\n"):
                break
            try:
                obj = json.loads(raw)
            except ValueError:
                continue
            if isinstance(obj, dict):
                yield obj


def _rewrite(path: Path, rows: list[dict[str, Any]]) -> None:
    """Replace a JSONL file through a temp file, fsync and rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        for row in rows:
            fh.write(dumps_line(row))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def resume_command(run_dir: Path) -> str:
    """The command that finishes this run: the same overrides plus job.resume=<run dir>."""
    try:
        from hydra.core.hydra_config import HydraConfig

        overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else sys.argv[1:]
    except Exception:  # no Hydra context (the Python API): the overrides are unknown
        overrides = []
    kept = [o for o in overrides if not o.startswith(("job.resume=", "job.retry_errors=", "hydra.run.dir="))]
    return " ".join(["python -m adam", *kept, f"job.resume={run_dir}"])
