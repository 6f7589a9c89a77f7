"""The sweep report: at the end of a multirun, one row per job in report.csv, report.md and report.png.

A Hydra callback (conf/hydra/callbacks/sweep_report.yaml) builds it from the jobs' manifest.json files,
never from in-process state, so it also works for jobs that failed: ``python -m adam`` records every
job's outcome in its manifest and returns normally (Hydra 1.3 skips ``on_multirun_end`` when a job
raises), and exits with the worst job's status after the report is written.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from adam.manifest import MANIFEST_NAME

log = logging.getLogger(__name__)

COLUMNS = (
    "job",
    "overrides",
    "model",
    "status",
    "exit_code",
    "records_ok",
    "records_failed",
    "records_per_s",
    "tokens_per_s",
    "peak_memory_mb",
    "wall_time_s",
    "error",
)


def _overrides(job_dir: Path) -> str:
    """The job's command-line overrides, as Hydra recorded them."""
    path = job_dir / ".hydra" / "overrides.yaml"
    if not path.exists():
        return ""
    from omegaconf import OmegaConf

    return " ".join(str(o) for o in OmegaConf.load(path))


def job_row(job_dir: Path) -> dict[str, Any]:
    """One report row from a job dir's manifest (a job without one is reported as such)."""
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update(job=job_dir.name, overrides=_overrides(job_dir))
    try:
        doc = json.loads((job_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        row.update(status="unknown", error=f"no readable {MANIFEST_NAME}: {type(err).__name__}")
        return row
    counts = doc.get("counts") or {}
    backend = doc.get("backend") or {}
    size = (doc.get("config") or {}).get("size") or {}
    row.update(
        model=backend.get("model") or size.get("hf_id") or size.get("name"),
        status=doc.get("status"),
        exit_code=doc.get("exit_code"),
        records_ok=counts.get("ok"),
        records_failed=counts.get("failed"),
        records_per_s=counts.get("records_per_s"),
        tokens_per_s=counts.get("tokens_per_s"),
        peak_memory_mb=(doc.get("peak_memory_mb") or {}).get("cuda") or (doc.get("peak_memory_mb") or {}).get("rss"),
        wall_time_s=doc.get("wall_time_s"),
        error=doc.get("error"),
    )
    return row


def _job_dirs(sweep_dir: Path) -> list[Path]:
    dirs = [p for p in sweep_dir.iterdir() if p.is_dir() and ((p / ".hydra").is_dir() or (p / MANIFEST_NAME).exists())]
    return sorted(dirs, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name))


def build_report(sweep_dir: Path) -> list[dict[str, Any]]:
    """Write report.csv, report.md and report.png in ``sweep_dir``; returns the rows."""
    rows = [job_row(d) for d in _job_dirs(sweep_dir)]
    with (sweep_dir / "report.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    (sweep_dir / "report.md").write_text(markdown_table(rows), encoding="utf-8")
    try:
        write_chart(rows, sweep_dir / "report.png")
    except ImportError:
        log.warning("matplotlib is not installed: no report.png (pip install matplotlib)")
    return rows


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(row[c]) for c in COLUMNS) + " |" for row in rows]
    return "# Sweep report\n\n" + "\n".join(lines) + "\n"


def write_chart(rows: list[dict[str, Any]], path: Path) -> None:
    """Records/s, tokens/s and peak memory per job, as bar charts in one PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display in batch jobs
    import matplotlib.pyplot as plt

    labels = [f"{r['job']}: {r['overrides'] or '-'}"[:40] for r in rows]
    series = (
        ("records_per_s", "records/s"),
        ("tokens_per_s", "tokens/s"),
        ("peak_memory_mb", "peak memory (MiB)"),
    )
    fig, axes = plt.subplots(len(series), 1, figsize=(max(6, len(rows) * 1.2), 9), squeeze=False)
    for ax, (key, title) in zip(axes[:, 0], series, strict=True):
        values = [float(r[key] or 0) for r in rows]
        colors = ["tab:blue" if r["status"] == "completed" else "tab:red" for r in rows]
        ax.bar(range(len(rows)), values, color=colors)
        ax.set_title(title)
        ax.set_xticks(range(len(rows)), labels, rotation=20, ha="right", fontsize=7)
    fig.suptitle("adam sweep (red: not completed)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


class SweepReport(Callback):
    """Hydra callback: writes the sweep report when a multirun ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Build the report in the sweep dir."""
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        rows = build_report(sweep_dir)
        failed = sum(1 for r in rows if r["status"] not in ("completed",))
        log.info("sweep report: %d jobs (%d not completed) in %s", len(rows), failed, sweep_dir / "report.md")
