"""Resume: pick the run dir to finish, refuse when its input or model changed, and skip what is already done.

A run dir is the unit of work. results.jsonl and errors.jsonl are appended and fsynced batch by
batch, so after any crash they hold every finished batch (a torn last line is cut off when the
writer reopens them). Resuming reads which records they hold and runs only the others, so every
input record ends up exactly once in one of the two files.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import shlex
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from adam.atomic import write_atomic
from adam.errors import ConfigError
from adam.io.readers import RecordReader, input_exists
from adam.io.records import InvalidRecord, Record
from adam.io.writers import ERRORS_NAME, RESULTS_NAME, dumps_line
from adam.run.manifest import MANIFEST_NAME
from adam.settings.config import SizeSpec

log = logging.getLogger(__name__)

# Keys a resumed run may change: how fast or where from it runs, never what it writes. Every other
# key of the run config must keep its value, or the finished and the new lines would disagree.
RESUMABLE_KEYS = frozenset(
    {
        "job.input",  # the same bytes under another path: the input's sha256 is checked instead
        "job.batch_size",
        "job.window",
        "job.progress",
        "job.max_errors",
        "job.max_consecutive_failures",
        "job.resume",
        "job.retry_errors",
        "job.max_tokens",  # room for a retry of answers cut short (schema_mismatch); a finished line keeps its own
        "job.dry_run",
        "job.prune_max_fraction",  # a prune refused as too large is allowed by resuming with a higher one
        "backend.concurrency",
        "backend.timeout",
        "backend.retries",
        "backend.backoff",
        "backend.max_backoff",
        "backend.host",
        "backend.base_url",
        "backend.keep_alive",
        "backend.pull",
        "backend.token_budget",
        "backend.progress",  # transformers' loading bars, which follow job.progress
        "backend.delay",  # the echo backend's simulated latency and faults: the server's health, not the output
        "backend.failure_rate",
        "backend.unavailable",
        "hardware.threads",
        "backend.weight_type",  # compared as the type it resolves to (the manifest's backend.weight_type)
        "backend.runtime",  # compared with the runtime the manifest's backend records, in one line of its own
        "backend.quantization",
    }
)
_RUN_KEYS = ("backend", "size", "domain", "hardware", "job")  # the groups compared on resume


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


def input_sha256(source: str, *, follow_symlinks: bool = False) -> str:
    """sha256 of an input exactly as RecordReader computes it while reading (job.follow_symlinks picks the files)."""
    return RecordReader(source, "embed", follow_symlinks=follow_symlinks).source_sha256()


def job_input_sha256(job: Any) -> str:
    """sha256 of job.input as its RecordReader computes it (a dataset's job.split and job.subset count)."""
    return RecordReader.for_job(job, "embed").source_sha256()


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """{"job.batch_size": 8, ...} from a nested config dict; lists stay values."""
    if not isinstance(node, dict):
        return {prefix: node}
    out: dict[str, Any] = {}
    for key, value in node.items():
        out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def run_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved groups that decide what a run writes, as manifest.json records them."""
    return {k: OmegaConf.to_container(cfg[k], resolve=True) for k in _RUN_KEYS if k in cfg}


def config_changes(
    before: dict[str, Any], now: dict[str, Any], may_change: frozenset[str] = RESUMABLE_KEYS
) -> list[str]:
    """'key: old -> new' for every key that changed and may not (``may_change``: on resume, RESUMABLE_KEYS).

    A key only one side has is a key another adam version added or dropped, not a change.
    """
    old, new = _flatten(_own(before)), _flatten(_own(now))
    keys = [k for k in old.keys() & new.keys() if k not in may_change and old[k] != new[k]]
    keys.sort(key=lambda k: (not k.endswith(".name"), k))  # size.name first: it says the most
    return [f"{key}: {_short(old[key])} -> {_short(new[key])}" for key in keys]


def _own(config: dict[str, Any]) -> dict[str, Any]:
    """The compared groups, without the backend's copies of size and hardware (compared as themselves)."""
    out = {k: config.get(k) for k in _RUN_KEYS}
    if isinstance(out["backend"], dict):
        out["backend"] = {k: v for k, v in out["backend"].items() if k not in ("size", "hardware")}
    return out


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def read_manifest(run_dir: Path) -> dict[str, Any] | None:
    """The manifest.json of ``run_dir``, or None when there is none that reads as one."""
    try:
        doc = json.loads((run_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _mismatch(doc: dict[str, Any], job: str, sha: str, config: dict[str, Any]) -> str | None:
    """Why a run dir cannot be resumed with this config; None when it can."""
    if doc.get("job") != job:
        return f"it ran job={doc.get('job')}, not job={job}"
    recorded = (doc.get("input") or {}).get("sha256")
    if recorded is None:
        return "its manifest records no input (it stopped before its first batch): start a new run"
    if recorded != sha:
        return "the input file changed since (its sha256 differs)"
    changed = config_changes(doc.get("config") or {}, config)
    if changed:
        more = f"; and {len(changed) - 3} more" if len(changed) > 3 else ""
        return "settings that change the output differ from that run's: " + "; ".join(changed[:3]) + more
    return None


def choose_run_dir(cfg: DictConfig, fresh_dir: Path) -> tuple[Path, str]:
    """(the run dir to finish, the input's sha256) for job.resume; a ConfigError in one line when it cannot be."""
    source = str(cfg.job.input)
    if source == "-":
        raise ConfigError("job.resume needs job.input to be a file: standard input cannot be read again")
    if not input_exists(source):
        raise ConfigError(f"input {source} does not exist: set job.input=<file>")
    sha = job_input_sha256(cfg.job)
    config = run_config(cfg)
    own_size = not size_on_command_line(cfg)  # a job's default size is for new runs: a resumed one keeps its own
    job = str(cfg.job.name)

    def fits(doc: dict[str, Any]) -> tuple[str | None, bool]:
        """(why it cannot be resumed, whether it can with the size it ran with)."""
        why = _mismatch(doc, job, sha, config)
        if why and own_size and _mismatch(doc, job, sha, _with_recorded_size(config, doc)) is None:
            return None, True
        return why, False

    value = str(cfg.job.resume)
    if value.lower() != "true":
        run_dir = Path(value)
        doc = read_manifest(run_dir)
        if doc is None:
            raise ConfigError(f"cannot resume {run_dir}: it holds no manifest.json from an adam run")
        why, adopt = fits(doc)
        if why:
            raise ConfigError(f"cannot resume {run_dir}: {why}; start a new run without job.resume")
        if adopt:
            _adopt_recorded_size(cfg, doc)
        return run_dir, sha
    parent = fresh_dir.parent
    candidates = []
    for child in parent.iterdir() if parent.is_dir() else ():
        if not child.is_dir():  # the fresh dir too: a sweep run again into its sweep dir gets each job's old dir
            continue
        doc = read_manifest(child)
        if doc is not None and (found := fits(doc))[0] is None:
            started = str(doc.get("first_started") or doc.get("started") or "")
            candidates.append((started, child.name, child, doc if found[1] else None))
    if not candidates:
        raise ConfigError(
            f"job.resume=true found no run of job={cfg.job.name} in {parent} with this input and model; "
            "name the run dir (job.resume=<dir>) or start a new run"
        )
    _, _, run_dir, adopted = max(candidates, key=lambda c: (c[0], c[1]))
    if adopted is not None:
        _adopt_recorded_size(cfg, adopted)
    return run_dir, sha


def size_on_command_line(cfg: DictConfig) -> bool:
    """Whether size= (or a size.* key) was set on the command line, rather than left to the job's default."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        overrides = list(HydraConfig.get().overrides.task)
    elif "hydra" in cfg:  # composed with return_hydra_config=True (tests, the Python API)
        overrides = list(cfg.hydra.overrides.task)
    else:
        return True  # unknown: keep the size as given
    keys = (str(o).split("=", 1)[0].lstrip("+~") for o in overrides)
    return any(key == "size" or key.startswith("size.") for key in keys)


def _with_recorded_size(config: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    """``config`` with the size a recorded run ran with, and what quantization=auto made of it there."""
    recorded = doc.get("config") or {}
    out = dict(config)
    if isinstance(recorded.get("size"), dict):
        out["size"] = recorded["size"]
    now, then = config.get("hardware"), recorded.get("hardware")
    if isinstance(now, dict) and isinstance(then, dict) and now.get("selected_by") and then.get("selected_by"):
        out["hardware"] = {**now, "quantization": then.get("quantization"), "selected_by": then["selected_by"]}
    return out


def _adopt_recorded_size(cfg: DictConfig, doc: dict[str, Any]) -> None:
    """Run on with the size (and resolved quantization) a resumed run started with."""
    recorded = doc["config"]
    known = {f.name for f in dataclasses.fields(SizeSpec)}
    cfg.size = OmegaConf.merge(
        OmegaConf.structured(SizeSpec), {k: v for k, v in recorded["size"].items() if k in known}
    )
    then = recorded.get("hardware") or {}
    if cfg.hardware.get("selected_by") and then.get("selected_by"):
        cfg.hardware.quantization = then.get("quantization")
        cfg.hardware.selected_by = then["selected_by"]
    log.info(
        "resuming with size=%s, the size that run started with (size= on the command line picks another)", cfg.size.name
    )


RETRIED = frozenset({"backend_error", "schema_mismatch"})  # error codes job.retry_errors runs again


def load_done(run_dir: Path, *, retry_errors: bool) -> Done:
    """Read what a run dir holds; with retry_errors, first drop its backend_error and schema_mismatch lines
    (atomically)."""
    done = Done()
    for _, obj in json_lines(run_dir / RESULTS_NAME):
        key = _key(obj)
        if key is not None:
            done.result_ids.add(str(key))
            done.results += 1
    errors_path = run_dir / ERRORS_NAME
    kept: list[dict[str, Any]] = []
    for _, obj in json_lines(errors_path):
        if retry_errors and _error_code(obj) in RETRIED:
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


def json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) of each complete JSON object line of a run's JSONL file; a torn last line is ignored
    (the writer cuts it off), and so is a line that is not a JSON object."""
    if not path.exists():
        return
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.endswith(b"\n"):
                break
            try:
                obj = json.loads(raw)
            except ValueError:
                continue
            if isinstance(obj, dict):
                yield number, obj


def _rewrite(path: Path, rows: list[dict[str, Any]]) -> None:
    """Replace a JSONL file atomically."""
    write_atomic(path, b"".join(map(dumps_line, rows)))


def resume_command(run_dir: Path) -> str:
    """The command that finishes this run: the same overrides plus job.resume=<run dir>."""
    kept = [o for o in _overrides() if not o.startswith(("job.resume=", "job.retry_errors=", "hydra.run.dir="))]
    return " ".join(["python -m adam", *map(shlex.quote, [*kept, f"job.resume={run_dir}"])])


def _overrides() -> list[str]:
    """This run's command-line overrides (none known outside Hydra: the Python API)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else sys.argv[1:]
    except Exception:  # no Hydra context (the Python API): the overrides are unknown
        return []


def rerun_command(run_dir: Path) -> str:
    """The same command again, into the same run dir (a job that starts over there: job=merge)."""
    kept = [o for o in _overrides() if not o.startswith("hydra.run.dir=")]
    return " ".join(["python -m adam", *map(shlex.quote, [*kept, f"hydra.run.dir={run_dir}"])])


_TEMP_FILE = re.compile(r"^\..+\.\d+\.tmp$")  # what write_json_atomic and the Parquet writer leave when killed


def remove_stale_temp_files(run_dir: Path) -> list[str]:
    """Delete the temp files a killed run left in its run dir; call only while holding the run-dir lock."""
    removed = []
    for path in run_dir.iterdir():
        if _TEMP_FILE.match(path.name) and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path.name)
    if removed:
        log.info("removed %d temp files a stopped run left in %s", len(removed), run_dir)
    return removed
