"""Hydra's launchers as a job sees them: how many threads it gets when several jobs run at once.

A sweep on a parallel launcher (conf/hydra/launcher/adam_*.yaml) runs several jobs on one machine,
and torch's default of one thread per core in each of them oversubscribes it. So under a multirun,
``hardware.threads=null`` becomes what the launcher gives each job: submitit's ``cpus_per_task``,
Ray's ``ray.remote.num_cpus``, or the cores divided by joblib's ``n_jobs``. A number set on the
command line always wins.
"""

from __future__ import annotations

import logging
from typing import Any

from omegaconf import DictConfig

log = logging.getLogger(__name__)


def _get(node: Any, dotted: str) -> Any:
    """``node.a.b`` or None where any part is missing."""
    for part in dotted.split("."):
        getter = getattr(node, "get", None)
        if getter is None:
            return None
        node = getter(part)
    return node


def launcher_threads(launcher: Any, cores: int) -> int | None:
    """Threads per job under this launcher config; None for a launcher that says nothing (the basic one)."""
    for per_job in ("cpus_per_task", "ray.remote.num_cpus"):  # submitit (SLURM, local); Ray
        value = _get(launcher, per_job)
        if value:
            return max(1, int(value))
    n_jobs = _get(launcher, "n_jobs")  # joblib: jobs at once on this machine; -1 every core, -2 all but one
    if n_jobs:
        workers = int(n_jobs) if int(n_jobs) > 0 else cores + 1 + int(n_jobs)
        return max(1, cores // max(1, workers))
    return None


def default_threads(cfg: DictConfig) -> int | None:
    """In a multirun, fill hardware.threads=null from the launcher's config; returns the threads it set."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if cfg.hardware.get("threads") is not None or not HydraConfig.initialized():
        return None
    hydra = HydraConfig.get()
    if hydra.mode != RunMode.MULTIRUN:
        return None
    from adam.planning.hardware import current_probe

    cores = current_probe().cpu_count()
    threads = launcher_threads(hydra.launcher, cores)
    if threads is not None:
        cfg.hardware.threads = threads
        log.info("hardware.threads=%d: %d cores shared by the launcher's parallel jobs", threads, cores)
    return threads
