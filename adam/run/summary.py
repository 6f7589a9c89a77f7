"""RunSummary: what run(cfg) returns, in a module of its own so the runner's helpers can make one too."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from adam.errors import ExitCode
from adam.jobs.batching import JobStats


@dataclass
class RunSummary:
    """The outcome of one run."""

    job: str
    status: str  # completed | partial | stopped | interrupted | failed | dry_run | dry_run_invalid
    exit_code: ExitCode
    run_dir: Path
    stats: JobStats
    message: str = ""
