"""python -m adam: compose the config with Hydra, run the job, exit with its status.

Hydra and the schemas are imported inside main(), so a Ctrl-C while they load (a second or more on a
busy machine) ends in one line and exit 4, like any other stop before the first batch.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from adam.errors import AdamError, ExitCode, RunDirLocked, worst

if TYPE_CHECKING:
    from omegaconf import DictConfig

log = logging.getLogger("adam")
_run_status: int = ExitCode.OK  # a single run's status; a multirun's is read from its jobs' manifests (run/sweep.py)


def _task(cfg: DictConfig) -> int:
    """Run one job; in a multirun, record its status in its manifest and return so the sweep goes on."""
    global _run_status
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from adam.run.runner import run

    try:
        summary = run(cfg)
        code, message = summary.exit_code, summary.message
    except RunDirLocked as err:  # another process owns the run dir: write nothing at all
        code, message = err.exit_code, str(err)
    except AdamError as err:
        code, message = err.exit_code, str(err)
        _record_failure(cfg, message, code)
    if message:
        log.error("%s", message)
    if HydraConfig.get().mode == RunMode.RUN:  # a multirun's jobs may run in other processes (joblib, SLURM, Ray)
        _run_status = worst(_run_status, code)
        _drop_scratch(Path(HydraConfig.get().runtime.output_dir))
    return int(code)


def _drop_scratch(run_dir: Path) -> None:
    """Remove the scratch run dir of a job that leaves no results (job=info, search, serve; adam/paths.py)."""
    import shutil

    from adam.paths import is_scratch

    if is_scratch(run_dir):
        shutil.rmtree(run_dir, ignore_errors=True)


def _record_failure(cfg: DictConfig, message: str, code: int) -> None:
    """Leave a failed manifest in the job's dir, so a sweep report lists the job with its error."""
    from hydra.core.hydra_config import HydraConfig

    from adam.run.manifest import record_failure

    try:
        run_dir = Path(HydraConfig.get().runtime.output_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        record_failure(run_dir, cfg, message, code)
    except Exception as err:  # the job's outcome is already known; never fail over its record
        log.debug("could not record the failure in a manifest: %s", err)


def _hydra_task() -> Callable[[], object]:
    """_task as Hydra's entry point: it reads the command line and composes the config."""
    import hydra

    import adam.backends.schemas  # noqa: F401  (registers the config schemas, backends included)
    from adam.settings.help_text import defer_group_listing

    defer_group_listing()  # --help: one config load, not one per config group

    return hydra.main(version_base="1.3", config_path="pkg://adam.conf", config_name="config")(_task)


def main() -> None:
    """Entry point of `python -m adam` and the `adam` script."""
    try:
        from adam.run.sweep import ended_sweeps_status
        from adam.settings.config_errors import one_line_config_errors

        task = _hydra_task()
        with one_line_config_errors():
            task()
    except KeyboardInterrupt:  # before a run caught signals (while Python and Hydra start), or a second Ctrl-C
        log.error("interrupted: stopped at once")
        sys.exit(int(ExitCode.STOPPED))
    sys.exit(worst(_run_status, ended_sweeps_status()))


if __name__ == "__main__":
    main()
