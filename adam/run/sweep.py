"""The sweep report: at the end of a multirun, one row per job in report.csv, report.md and report.png.

A Hydra callback (conf/hydra/callbacks/sweep_report.yaml) builds it from the jobs' manifest.json files,
never from in-process state, so it also works for jobs that failed: ``python -m adam`` records every
job's outcome in its manifest and returns normally (Hydra 1.3 skips ``on_multirun_end`` when a job
raises). A second callback, SweepStatus, reads the worst status those manifests record, and
``python -m adam`` exits with it. Both hold under every launcher: joblib, submitit and Ray run the
jobs in other processes, and ``on_multirun_end`` runs in the one that launched them.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from adam.errors import ExitCode, worst
from adam.run.manifest import MANIFEST_NAME

if TYPE_CHECKING:
    from matplotlib.figure import Figure

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
SERIES = (("records_per_s", "records/s"), ("tokens_per_s", "tokens/s"), ("peak_memory_mb", "peak memory (MiB)"))
LOG_RATIO = 100.0  # a panel whose largest value is this many times its smallest gets a log scale
LABEL_WIDTH = 26  # characters per line of a bar's label


def _overrides(job_dir: Path) -> list[str]:
    """The job's command-line overrides, as Hydra recorded them."""
    path = job_dir / ".hydra" / "overrides.yaml"
    if not path.exists():
        return []
    from omegaconf import OmegaConf

    return [str(o) for o in OmegaConf.load(path)]


def job_row(job_dir: Path) -> dict[str, Any]:
    """One report row from a job dir's manifest (a job without one is reported as such)."""
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    overrides = _overrides(job_dir)
    row.update(job=job_dir.name, overrides=" ".join(overrides), override_list=overrides)
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


def sweep_rows(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per job dir of the sweep, from its manifest."""
    return [job_row(d) for d in _job_dirs(sweep_dir)]


def worst_exit_code(rows: list[dict[str, Any]]) -> int:
    """The worst status the jobs' manifests record (by errors.SEVERITY); a job without one failed, one still
    "running" was killed."""
    return worst(*(_exit_code(row) for row in rows))


def _exit_code(row: dict[str, Any]) -> int:
    if isinstance(row.get("exit_code"), int):
        return int(row["exit_code"])
    return int(ExitCode.STOPPED if row.get("status") == "running" else ExitCode.CONFIG)


_ended: list[int] = []  # the statuses of the multiruns that ended in this process, read from their manifests


def ended_sweeps_status() -> int:
    """The worst status of the multiruns this process launched (0 when it launched none)."""
    return worst(*_ended)


def build_report(sweep_dir: Path) -> list[dict[str, Any]]:
    """Write report.csv, report.md and report.png in ``sweep_dir``; returns the rows."""
    rows = sweep_rows(sweep_dir)
    with (sweep_dir / "report.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, extrasaction="ignore")
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


@dataclass
class Panel:
    """One bar chart of the report: a value per job (None where the manifest has none) and its y scale."""

    key: str
    title: str
    values: list[float | None]
    log: bool


def chart_panels(rows: list[dict[str, Any]]) -> list[Panel]:
    """Records/s, tokens/s and peak memory per job; log scale where values span orders of magnitude."""
    panels = []
    for key, title in SERIES:
        values = [None if r.get(key) in (None, "") else float(r[key]) for r in rows]
        positive = [v for v in values if v is not None and v > 0]
        log = len(positive) > 1 and max(positive) >= LOG_RATIO * min(positive)
        panels.append(Panel(key, title + (" (log scale)" if log else ""), values, log))
    return panels


def chart_labels(rows: list[dict[str, Any]]) -> list[str]:
    """Each job's number and the overrides that tell it apart (those every job shares are left out), wrapped."""
    lists = [r.get("override_list") or str(r.get("overrides") or "").split() for r in rows]
    shared = set.intersection(*(set(o) for o in lists)) if len(lists) > 1 else set()
    labels = []
    for row, overrides in zip(rows, lists, strict=True):
        own = " ".join(o for o in overrides if o not in shared) or "-"
        labels.append(f"{row['job']}: " + "\n".join(textwrap.wrap(own, LABEL_WIDTH, break_on_hyphens=False)))
    return labels


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def draw_chart(rows: list[dict[str, Any]]) -> Figure:
    """The report's figure: one panel per series, values on the bars, jobs that did not complete in red."""
    import matplotlib

    matplotlib.use("Agg")  # no display in batch jobs
    import matplotlib.pyplot as plt

    panels = chart_panels(rows)
    labels = chart_labels(rows)
    lines = max(label.count("\n") + 1 for label in labels)
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(max(6.0, len(rows) * 1.6), 2.6 * len(panels) + 0.2 * lines), sharex=True, squeeze=False
    )
    colors = ["tab:blue" if r["status"] == "completed" else "tab:red" for r in rows]
    for ax, panel in zip(axes[:, 0], panels, strict=True):
        heights = [math.nan if v is None or (panel.log and v <= 0) else v for v in panel.values]
        bars = ax.bar(range(len(rows)), heights, color=colors)
        ax.bar_label(bars, labels=["" if v is None else _number(v) for v in panel.values], fontsize=8, padding=2)
        for x, value in enumerate(panel.values):
            if value is None:  # no bar: say so instead of drawing a zero
                ax.text(x, 0.02, "n/a", ha="center", va="bottom", fontsize=8, transform=ax.get_xaxis_transform())
        if panel.log:
            ax.set_yscale("log")
        ax.margins(y=0.2)  # room for the values above the tallest bar
        ax.set_title(panel.title, fontsize=10)
    axes[-1, 0].set_xticks(range(len(rows)), labels, fontsize=8)
    fig.suptitle("adam sweep (red: not completed)")
    fig.tight_layout()
    return fig


def write_chart(rows: list[dict[str, Any]], path: Path) -> None:
    """Write the chart as a PNG; bbox_inches="tight" keeps long labels inside the image."""
    import matplotlib.pyplot as plt

    fig = draw_chart(rows)
    fig.savefig(path, dpi=100, bbox_inches="tight")
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


class SweepStatus(Callback):
    """Hydra callback: keeps the worst status the sweep's manifests record, for ``python -m adam`` to exit with.

    Apart from SweepReport, so a sweep run without the report (``~hydra.callbacks.sweep_report``) keeps it.
    """

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        """Read the jobs' statuses from their manifests."""
        sweep_dir = Path(config.hydra.sweep.dir)
        _ended.append(worst_exit_code(sweep_rows(sweep_dir)) if sweep_dir.is_dir() else int(ExitCode.OK))
