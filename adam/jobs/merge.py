"""job=merge: shard run dirs (a sweep over job.shard) combined into one run dir of their own.

results.jsonl and errors.jsonl get the shards' lines, shard 0's first; embeddings.parquet their
vectors; with job.store, their embedding stores become one store. The manifest lists each shard
(status, counts, tokens, wall time) and names the slowest. Every shard's run dir is locked while it
is read, so none can be resumed halfway through a merge; the checks (adam/run/shard_runs.py) run before
anything is written. Ctrl-C or SIGTERM stops a merge between lines, batches or stores (status
``interrupted``); the same command into the same run dir starts it over and finishes it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from adam.errors import ConfigError
from adam.io.result_tables import remove_tables, table_formats, write_tables
from adam.io.writers import ERRORS_NAME, PARQUET_NAME, RESULTS_NAME, VectorParquetWriter
from adam.jobs.batching import JobStats
from adam.jobs.context import JobContext
from adam.run.shard_runs import ShardRun, check_alike, check_complete, check_once, find_shard_runs, lock_finished

log = logging.getLogger(__name__)

CHECK_EVERY = 10_000  # lines copied between two looks at Ctrl-C/SIGTERM


def check_merge(cfg: DictConfig) -> None:
    """job.runs is required."""
    if not cfg.job.get("runs"):
        raise ConfigError(
            "job=merge needs job.runs=<sweep dir> (or job.runs=[<run dir>,<run dir>]): the shard runs to merge"
        )


def run_merge(ctx: JobContext) -> JobStats:
    """Merge the shard runs named by job.runs into this run dir."""
    runs_value = ctx.job.runs
    runs_arg = OmegaConf.to_container(runs_value) if OmegaConf.is_config(runs_value) else runs_value
    found, bare = find_shard_runs(runs_arg, exclude=ctx.run_dir)
    stats = ctx.stats
    with contextlib.ExitStack() as locks:
        lock_finished(found, locks)  # first: a running shard's manifest is not complete yet
        check_alike(found)
        shards = check_complete(found, bare)
        check_once(shards, between=ctx.stop_if_asked)  # before anything is written: one line per record
        parquets = _parquet_inputs(ctx, shards)
        stores = _store_inputs(ctx, shards)
        ctx.writer.close()  # the merged files are written here directly, shard after shard
        for path in (ctx.writer.results_path, ctx.writer.errors_path):
            path.write_bytes(b"")  # empty, or what a stopped merge had written here: this one starts over
        table = [_shard_row(s) for s in shards]
        for row, shard in zip(table, shards, strict=True):
            row["results"] = _append_lines(shard.run_dir / RESULTS_NAME, ctx.writer.results_path, ctx.stop_if_asked)
            invalid, other = _append_errors(shard.run_dir / ERRORS_NAME, ctx.writer.errors_path, ctx.stop_if_asked)
            row["errors"] = invalid + other
            stats.ok += row["results"]
            stats.invalid += invalid
            stats.backend_errors += other
            stats.tokens += int(row.get("tokens") or 0)
            ctx.stop_if_asked()
        _tables(ctx, first_job=_dict(shards[0].doc.get("config")).get("job"), stats=stats)
        if parquets:
            stats.extra["parquet_rows"] = _merge_parquet(parquets, ctx.run_dir / PARQUET_NAME, ctx.stop_if_asked)
        if stores:
            stats.extra["store"] = _merge_stores(stores, str(ctx.job.store), ctx.stop_if_asked)
    slowest = max(table, key=lambda r: r.get("wall_time_s") or 0.0)
    first = shards[0]
    merged = {
        "runs": [str(s.run_dir) for s in shards],
        "job": first.doc.get("job"),
        "num_shards": first.num_shards,
        "input": first.doc.get("input"),
        "shards": table,
        "slowest_shard": {k: slowest[k] for k in ("shard", "run_dir", "wall_time_s")},
    }
    if ctx.update_manifest is not None:
        fields: dict[str, Any] = {"merge": merged, "backend": first.doc.get("backend")}
        if first.doc.get("dimensions") is not None:
            fields["dimensions"] = first.doc["dimensions"]
        ctx.update_manifest(**fields)
    log.info(
        "merged %d shards: %d results, %d errors; slowest: shard %s (%s s)",
        len(shards),
        stats.ok,
        stats.failed,
        slowest["shard"],
        slowest.get("wall_time_s"),
    )
    return stats


def _tables(ctx: JobContext, *, first_job: Any, stats: JobStats) -> None:
    """The tables the shards wrote (job.results_format), rebuilt from the merged results.jsonl; stale ones dropped."""
    remove_tables(ctx.run_dir)
    job = first_job if isinstance(first_job, dict) else {}
    formats = table_formats(job.get("results_format") or ())
    if formats:
        text_name = job.get("text_field") or "prompt"
        stats.extra["tables"] = write_tables(ctx.writer.results_path, formats, text_name=text_name)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _shard_row(shard: ShardRun) -> dict[str, Any]:
    """The manifest's line for one shard (its counts are filled in as it is merged)."""
    counts = shard.doc.get("counts") or {}
    return {
        "shard": shard.index,
        "run_dir": str(shard.run_dir),
        "status": shard.doc.get("status"),
        "tokens": counts.get("tokens"),  # of its last session, when it was resumed
        "records_per_s": counts.get("records_per_s"),
        "wall_time_s": shard.doc.get("wall_time_s"),
        "resumes": int(shard.doc.get("resumes") or 0),
    }


def _append_lines(source: Path, target: Path, between: Callable[[], None]) -> int:
    """Append the complete lines of ``source`` to ``target`` and make them durable; returns how many.

    ``between`` runs every CHECK_EVERY lines (it raises to stop the merge)."""
    count = 0
    if not source.exists():
        return 0
    with open(source, "rb") as src, open(target, "ab") as out:
        for raw in src:
            if raw.endswith(b"\n"):  # a finished shard has no torn line; never copy half of one
                out.write(raw)
                count += 1
                if count % CHECK_EVERY == 0:
                    between()
        out.flush()
        os.fsync(out.fileno())
    return count


def _append_errors(source: Path, target: Path, between: Callable[[], None]) -> tuple[int, int]:
    """Append a shard's error lines; returns (invalid input lines, other failures)."""
    invalid = other = 0
    if not source.exists():
        return 0, 0
    with open(source, "rb") as src, open(target, "ab") as out:
        for raw in src:
            if not raw.endswith(b"\n"):
                continue
            out.write(raw)
            if _error_code(raw) == "invalid_input":
                invalid += 1
            else:
                other += 1
            if (invalid + other) % CHECK_EVERY == 0:
                between()
        out.flush()
        os.fsync(out.fileno())
    return invalid, other


def _error_code(raw: bytes) -> str | None:
    try:
        obj = json.loads(raw)
    except ValueError:
        return None
    error = obj.get("error") if isinstance(obj, dict) else None
    if isinstance(error, dict):
        return error.get("code")
    body = ((obj.get("response") or {}).get("body") or {}).get("error") if isinstance(obj, dict) else None
    return body.get("code") if isinstance(body, dict) else None


def _parquet_inputs(ctx: JobContext, shards: list[ShardRun]) -> list[Path]:
    """The shards' embeddings.parquet files to merge: all of them, or none (job=generate, job.parquet=false)."""
    if not ctx.job.get("parquet", True) or shards[0].doc.get("job") != "embed":
        return []
    paths = [s.run_dir / PARQUET_NAME for s in shards]
    have = [p.exists() for p in paths]
    if not any(have):
        return []
    if not all(have):
        lacking = next(s for s, h in zip(shards, have, strict=True) if not h)
        raise ConfigError(f"{lacking.label()} has no {PARQUET_NAME}: merge with job.parquet=false, or rerun it")
    return paths


def _merge_parquet(paths: list[Path], target: Path, between: Callable[[], None]) -> int:
    """One Parquet file with every shard's rows (id, vector, metadata and any extra columns); returns the rows."""
    import numpy as np
    import pyarrow.parquet as pq

    names = pq.read_schema(paths[0]).names
    extra = names[3:]
    with VectorParquetWriter(target, extra=extra) as out:
        for path in paths:
            source = pq.ParquetFile(path)
            if source.schema_arrow.names != names:
                raise ConfigError(f"{path} has columns {source.schema_arrow.names}, not {names} as {paths[0]}")
            for batch in source.iter_batches():
                between()  # raising here leaves no Parquet file: the writer removes its temp file
                ids = batch.column(0).to_pylist()
                vectors = batch.column(1)
                offsets = np.asarray(vectors.offsets)
                flat = np.asarray(vectors.values, dtype=np.float32)
                others = [batch.column(i).to_pylist() for i in range(2, len(names))]
                for row, id_ in enumerate(ids):
                    out.add(id_, flat[offsets[row] : offsets[row + 1]], *(column[row] for column in others))
    log.info("wrote %d vectors to %s", out.rows, target)
    return out.rows


def _store_inputs(ctx: JobContext, shards: list[ShardRun]) -> list[tuple[str, str]]:
    """(path, model) of each shard's embedding store, for job.store; refuses shards that used none."""
    if not ctx.job.get("store"):
        return []
    target = Path(str(ctx.job.store)).resolve()
    out: list[tuple[str, str]] = []
    for shard in shards:
        store = (shard.doc.get("counts") or {}).get("store") or {}
        if not store.get("path"):
            raise ConfigError(f"{shard.label()} used no embedding store (job.store): there is no store to merge")
        if Path(store["path"]).resolve() == target:
            raise ConfigError(f"job.store={ctx.job.store} is {shard.label()}'s own store: merge into a new file")
        if not Path(store["path"]).exists():
            raise ConfigError(f"{shard.label()}'s store {store['path']} does not exist (run job=merge where it ran)")
        if (store["path"], store.get("model")) not in out:
            out.append((store["path"], str(store.get("model"))))
    return out


def _merge_stores(stores: list[tuple[str, str]], target: str, between: Callable[[], None]) -> dict[str, Any]:
    """Copy every shard store's records and vectors into ``target``; SQLite has one writer, so one at a time.

    Each store is copied in one transaction, and copying one again changes nothing, so a merge stopped
    between two stores is finished by running it again."""
    from adam.io.embed_store import EmbeddingStore
    from adam.run.locks import StoreLock

    models = {model for _, model in stores}
    if len(models) > 1:
        raise ConfigError(f"the shards' stores hold different models: {', '.join(sorted(models))}")
    model = models.pop()
    lock = StoreLock(target).share()
    try:
        with EmbeddingStore(target, model) as store:
            for path, _ in stores:
                between()
                store.merge_from(path)
            records = store.count()
    finally:
        lock.release()
    log.info("merged %d shard stores into %s: %d records", len(stores), target, records)
    return {"path": target, "model": model, "records": records, "merged_from": [p for p, _ in stores]}
