"""The shard runs job=merge combines: found in a sweep dir or a list of run dirs, checked to add up to one input.

Shards add up when each of 0..n-1 is there exactly once, all read the same input (its sha256), ran
the same model with the same settings and the same job.num_shards, each one finished (completed,
partial: some records failed, all_failed: every one did, or empty: the input held none), and together
they hold one line per record. Anything else is refused in one line that says what to do.
"""

from __future__ import annotations

import contextlib
import json
import shlex
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adam.errors import ConfigError, RunDirLocked
from adam.run.locks import RunDirLock
from adam.run.manifest import MANIFEST_NAME
from adam.run.resume import RESUMABLE_KEYS, config_changes, json_lines

FINISHED = ("completed", "partial", "all_failed", "empty")  # statuses whose run dir holds every record of its shard
MERGEABLE_JOBS = ("generate", "embed")
_MODEL_KEYS = ("backend", "model", "revision", "sha256", "digest")
_PER_SHARD = ("job.shard:", "job.store:")  # settings each shard has its own of (job.store=x-${job.shard}.db)
# what a resume may change but the shards of one run must share: an answer's length limit
_SHARDS_MAY_DIFFER = RESUMABLE_KEYS - {"job.max_tokens"}


@dataclass
class ShardRun:
    """One shard's run dir and its manifest."""

    run_dir: Path
    doc: dict[str, Any]

    @property
    def job(self) -> dict[str, Any]:
        """The job config the shard ran with."""
        return dict((self.doc.get("config") or {}).get("job") or {})

    @property
    def index(self) -> int:
        """job.shard."""
        return int(self.job.get("shard") or 0)

    @property
    def num_shards(self) -> int:
        """job.num_shards."""
        return int(self.job.get("num_shards") or 1)

    @property
    def input_sha256(self) -> str | None:
        """The sha256 of the input it read."""
        return (self.doc.get("input") or {}).get("sha256")

    @property
    def model(self) -> dict[str, Any]:
        """What identifies its model: backend, model id, revision, weights hash."""
        backend = self.doc.get("backend") or {}
        return {k: backend.get(k) for k in _MODEL_KEYS if backend.get(k) is not None}

    def label(self) -> str:
        """``shard 2 (outputs/multirun/x/2)``."""
        return f"shard {self.index} ({self.run_dir})"


def find_shard_runs(runs: Any, *, exclude: Path | None = None) -> tuple[list[ShardRun], list[Path]]:
    """(the runs under job.runs, job dirs there without a manifest); a sweep dir stands for its job dirs."""
    paths = [runs] if isinstance(runs, str | Path) else list(runs or [])
    if not paths:
        raise ConfigError(
            "job=merge needs job.runs=<sweep dir> (or job.runs=[<run dir>,<run dir>]): the shard runs to merge"
        )
    found: list[ShardRun] = []
    bare: list[Path] = []
    for raw in paths:
        path = Path(str(raw))
        if not path.is_dir():
            raise ConfigError(f"job.runs: {path} is not a directory: name a sweep dir or shard run dirs")
        if (path / MANIFEST_NAME).exists():
            found.append(_read(path))
            continue
        children = sorted((c for c in path.iterdir() if c.is_dir()), key=_job_order)
        for child in children:
            if exclude is not None and child.resolve() == exclude.resolve():
                continue
            if (child / MANIFEST_NAME).exists():
                run = _read(child)
                if run.doc.get("job") != "merge":  # an earlier merge written into the sweep dir
                    found.append(run)
            elif (child / ".hydra").is_dir():
                bare.append(child)
    if not found:
        raise ConfigError(f"job.runs={runs} holds no adam run dirs (none has a {MANIFEST_NAME})")
    unique = {run.run_dir.resolve(): run for run in reversed(found)}  # a dir named twice is one run
    return [run for run in found if unique.get(run.run_dir.resolve()) is run], bare


def _job_order(path: Path) -> tuple[bool, int, str]:
    return (not path.name.isdigit(), int(path.name) if path.name.isdigit() else 0, path.name)


def _read(run_dir: Path) -> ShardRun:
    try:
        doc = json.loads((run_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read {run_dir / MANIFEST_NAME}: {err}") from err
    if not isinstance(doc, dict):
        raise ConfigError(f"{run_dir / MANIFEST_NAME} is not an adam manifest")
    return ShardRun(run_dir, doc)


def check_alike(runs: list[ShardRun]) -> None:
    """Refuse runs of different jobs, inputs, models, settings or shard counts."""
    first = runs[0]
    for run in runs:
        if run.doc.get("job") not in MERGEABLE_JOBS:
            raise ConfigError(f"{run.run_dir} ran job={run.doc.get('job')}: job=merge merges job=generate or job=embed")
        if run.doc.get("job") != first.doc.get("job"):
            raise ConfigError(_differ("jobs", first, run, first.doc.get("job"), run.doc.get("job")))
        if run.num_shards != first.num_shards:
            raise ConfigError(_differ("shard counts", first, run, first.num_shards, run.num_shards, "job.num_shards="))
        if run.input_sha256 != first.input_sha256:
            raise ConfigError(_differ("inputs", first, run, first.input_sha256, run.input_sha256, "sha256 "))
        if run.model != first.model:
            raise ConfigError(_differ("models", first, run, _model_text(first), _model_text(run)))
        changed = config_changes(first.doc.get("config") or {}, run.doc.get("config") or {}, _SHARDS_MAY_DIFFER)
        changed = [c for c in changed if not c.startswith(_PER_SHARD)]
        if changed:
            raise ConfigError(f"settings differ between {first.label()} and {run.label()}: " + "; ".join(changed[:3]))


def _differ(what: str, a: ShardRun, b: ShardRun, va: Any, vb: Any, prefix: str = "") -> str:
    return f"{what} differ: {a.label()} has {prefix}{va}, {b.label()} has {prefix}{vb}; merge shards of one sharded run"


def _model_text(run: ShardRun) -> str:
    return " ".join(f"{k}={v}" for k, v in run.model.items()) or "no recorded model"


def check_complete(runs: list[ShardRun], bare: list[Path]) -> list[ShardRun]:
    """The runs ordered by shard; refuses a duplicated or a missing shard."""
    by_index: dict[int, ShardRun] = {}
    for run in runs:
        if run.index in by_index:
            other = by_index[run.index]
            raise ConfigError(
                f"shard {run.index} is there twice: {other.run_dir} and {run.run_dir}; name one run dir per shard "
                "in job.runs=[...]"
            )
        by_index[run.index] = run
    n = runs[0].num_shards
    missing = [i for i in range(n) if i not in by_index]
    if missing:
        what = ", ".join(map(str, missing))
        hint = f"; job dirs without a {MANIFEST_NAME}: {', '.join(map(str, bare))}" if bare else ""
        raise ConfigError(
            f"shard {what} of {n} is missing: run it (job.shard={missing[0]} job.num_shards={n}) and merge again{hint}"
        )
    return [by_index[i] for i in range(n)]


def check_once(runs: list[ShardRun], *, between: Callable[[], None] = lambda: None) -> None:
    """Refuse shards that do not hold one line per record: an id twice in a shard's results.jsonl and errors.jsonl
    (lines added by hand, two files joined), or in two shards. Merging them would count a record twice, and which
    of its lines is right cannot be told. ``between`` runs after each file (it raises to stop the merge)."""
    seen: dict[tuple[str, str], tuple[ShardRun, str]] = {}  # (kind, key) -> where it was first seen
    for run in runs:
        for name in ("results.jsonl", "errors.jsonl"):
            for number, key in _record_keys(run.run_dir / name):
                where = f"{name} line {number}"
                first = seen.setdefault(key, (run, where))
                if first != (run, where):
                    what = f"input line {key[1]}" if key[0] == "line" else f"id {key[1]!r}"
                    if first[0] is run:
                        twice = f"{run.label()} holds {what} twice ({first[1]} and {where})"
                    else:
                        twice = f"{what} is in two shards ({first[0].label()} {first[1]}, {run.label()} {where})"
                    raise ConfigError(
                        f"{twice}: a shard holds one line per record; remove the extra line, or run the shard again "
                        "into a new run dir, then merge"
                    )
            between()


def _record_keys(path: Path) -> Iterator[tuple[int, tuple[str, str]]]:
    """(line number, the record's key) for each complete line: ("id", id) for a result or a failed record,
    ("line", n) for an input line refused as invalid (it may have no usable id)."""
    for number, obj in json_lines(path):
        error = obj.get("error") or (((obj.get("response") or {}).get("body") or {}).get("error"))
        if isinstance(error, dict) and error.get("code") == "invalid_input" and "line" in obj:
            yield number, ("line", str(obj["line"]))
            continue
        key = obj.get("custom_id") if "custom_id" in obj else obj.get("id")  # OpenAI-format lines: custom_id
        if key is not None:
            yield number, ("id", str(key))


def lock_finished(runs: Iterable[ShardRun], stack: contextlib.ExitStack) -> None:
    """Hold every shard's run-dir lock while it is merged; refuses one still running, stopped, killed or failed."""
    for run in runs:
        try:
            stack.enter_context(RunDirLock(run.run_dir))
        except RunDirLocked as err:
            held = str(err).split(": wait", 1)[0]
            raise ConfigError(f"{run.label()} is still running: {held}; merge when it has ended") from None
        status = run.doc.get("status")
        if status in FINISHED:
            continue
        if status == "running":  # the manifest says running, yet nobody holds its lock: the process died
            why = "was killed while running"
        elif status == "failed":
            why = f"failed ({run.doc.get('error') or 'see its adam.log'})"
        else:
            why = f"ended {status}"
        raise ConfigError(f"{run.label()} {why}: resume it first: {resume_command(run)}")


def resume_command(run: ShardRun) -> str:
    """The command that finishes a shard: the overrides it ran with, plus job.resume=<its run dir>."""
    path = run.run_dir / ".hydra" / "overrides.yaml"
    overrides: list[str] = []
    if path.exists():
        from omegaconf import OmegaConf

        overrides = [str(o) for o in OmegaConf.load(path)]
    overrides = [o for o in overrides if not o.startswith(("job.resume=", "job.retry_errors=", "hydra.", "hydra/"))]
    if not any(o.startswith("job.shard=") for o in overrides):
        overrides += [f"job.shard={run.index}", f"job.num_shards={run.num_shards}"]
    return " ".join(["python -m adam", *map(shlex.quote, [*overrides, f"job.resume={run.run_dir}"])])
