"""Sweep reports: a real multirun over the tiny Qwen3 with one job failing on purpose, and the report builder."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

from helpers import EXAMPLES, REPO

from adam.run.sweep import COLUMNS, build_report, chart_labels, chart_panels, draw_chart, write_chart

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_multirun_writes_a_report_with_the_failed_job(tmp_path: Path, tiny_qwen3_dir: Path) -> None:
    sweep = tmp_path / "sweep"
    missing = tmp_path / "no-such-model"
    args = [
        "-m",
        "size=local",
        f"size.path={tiny_qwen3_dir},{missing}",
        "hardware=cpu",
        "job.max_tokens=4",
        "job.batch_size=4",
        f"job.input={EXAMPLES / 'prompts.jsonl'}",
        f"hydra.sweep.dir={sweep}",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "adam", *args], capture_output=True, text=True, cwd=REPO, env=env)
    assert done.returncode == 1, done.stderr  # the worst job: a config error; the sweep still finished
    with (sweep / "report.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["job"] for r in rows] == ["0", "1"] and list(rows[0]) == list(COLUMNS)
    ok, failed = rows
    lines = sum(1 for _ in (EXAMPLES / "prompts.jsonl").open())
    assert (ok["status"], ok["exit_code"], ok["records_failed"]) == ("completed", "0", "0")
    assert int(ok["records_ok"]) == lines and ok["model"] == str(tiny_qwen3_dir)
    assert float(ok["records_per_s"]) > 0 and float(ok["tokens_per_s"]) > 0
    assert float(ok["peak_memory_mb"]) > 0 and float(ok["wall_time_s"]) > 0
    assert f"size.path={tiny_qwen3_dir}" in ok["overrides"]
    assert (failed["status"], failed["exit_code"]) == ("failed", "1")
    assert "does not exist" in failed["error"] and str(missing) in failed["overrides"]
    table = (sweep / "report.md").read_text(encoding="utf-8").splitlines()
    assert table[2].startswith("| job | overrides | model | status |") and len(table) == 6
    assert "| completed |" in table[4] and "| failed |" in table[5]
    assert (sweep / "report.png").read_bytes()[:8] == PNG_MAGIC


def test_report_lists_a_job_without_a_manifest(tmp_path: Path) -> None:
    (tmp_path / "0" / ".hydra").mkdir(parents=True)
    (tmp_path / "0" / ".hydra" / "overrides.yaml").write_text("- size=qwen3_small\n")
    (tmp_path / "1" / ".hydra").mkdir(parents=True)
    manifest = {
        "status": "partial",
        "exit_code": 3,
        "backend": {"model": "m"},
        "counts": {"ok": 5, "failed": 2, "records_per_s": 2.5, "tokens_per_s": 40.0},
        "peak_memory_mb": {"rss": 100.0, "cuda": 900.0},
        "wall_time_s": 3.0,
    }
    (tmp_path / "1" / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "notajob").mkdir()
    rows = build_report(tmp_path)
    assert [(r["job"], r["status"]) for r in rows] == [("0", "unknown"), ("1", "partial")]
    assert rows[0]["overrides"] == "size=qwen3_small" and "manifest.json" in rows[0]["error"]
    assert (rows[1]["records_ok"], rows[1]["records_failed"], rows[1]["peak_memory_mb"]) == (5, 2, 900.0)
    assert (tmp_path / "report.png").read_bytes()[:8] == PNG_MAGIC


def _row(job: str, overrides: list[str], status: str = "completed", **values: float | None) -> dict:
    row = dict.fromkeys(COLUMNS)
    row.update(job=job, overrides=" ".join(overrides), override_list=overrides, status=status, **values)
    return row


def test_chart_scales_labels_and_values() -> None:
    """Rates 2,000x apart got a linear axis (the slow job's bar invisible), no values, and every override."""
    shared = ["job.input=/data/prompts.jsonl", "hardware=cpu"]
    rows = [
        _row("0", [*shared, "backend=echo"], records_per_s=26000.0, tokens_per_s=None, peak_memory_mb=300.0),
        _row("1", [*shared, "size=qwen3_small"], records_per_s=12.5, tokens_per_s=180.0, peak_memory_mb=900.0),
        _row("2", [*shared, "size=qwen3_medium"], "failed", records_per_s=None, tokens_per_s=None, peak_memory_mb=250),
    ]
    records, tokens, memory = chart_panels(rows)
    assert records.log and "log scale" in records.title  # 26,000 / 12.5 spans three orders of magnitude
    assert not tokens.log and not memory.log
    assert records.values == [26000.0, 12.5, None]  # a missing rate stays missing, not 0
    labels = chart_labels(rows)
    assert labels == ["0: backend=echo", "1: size=qwen3_small", "2: size=qwen3_medium"]  # shared ones left out

    fig = draw_chart(rows)
    try:
        axes = fig.axes
        assert [ax.get_yscale() for ax in axes] == ["log", "linear", "linear"]
        printed = {t.get_text() for ax in axes for t in ax.texts}
        assert {"26,000", "12.5", "180", "900", "n/a"} <= printed  # values on the bars, n/a where none
        assert [t.get_text() for t in axes[-1].get_xticklabels()] == labels
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


def test_chart_labels_wrap_instead_of_clipping(tmp_path: Path) -> None:
    long_path = "size.path=/models/" + "a-very-long-directory-name/" * 3 + "model"
    rows = [_row("0", [long_path], records_per_s=1.0), _row("1", ["size=qwen3_small"], records_per_s=2.0)]
    label = chart_labels(rows)[0]
    assert "\n" in label and label.replace("\n", "") == f"0: {long_path}"  # all of it, over several lines
    write_chart(rows, tmp_path / "report.png")
    assert (tmp_path / "report.png").read_bytes()[:8] == PNG_MAGIC
