"""manifest.json: what ran, on what, with which outcome; written at start and again at the end."""

from __future__ import annotations

import contextlib
import sys
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from adam import __version__
from adam.io.writers import write_json_atomic

MANIFEST_NAME = "manifest.json"


def _versions() -> dict[str, str]:
    """Versions of the libraries that shape results, read without importing them."""
    out = {"python": sys.version.split()[0]}
    for dist in ("torch", "transformers", "ollama", "hydra-core"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


def resolved_config(cfg: DictConfig) -> dict[str, Any]:
    """The run config with interpolations resolved and Hydra's own node left out."""
    out: dict[str, Any] = {}
    for key in cfg:
        if key == "hydra":
            continue
        node = cfg[key]
        out[str(key)] = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
    return out


def peak_memory_mb() -> dict[str, float]:
    """Peak resident memory of this process (``rss``; in a sweep, of every job so far) and of CUDA, in MiB."""
    out: dict[str, float] = {}
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out["rss"] = round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, 1)  # bytes vs KiB
    except (ImportError, OSError):
        pass
    torch = sys.modules.get("torch")  # only when the job already loaded it
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = round(torch.cuda.max_memory_allocated() / (1024 * 1024), 1)
    return out


def record_failure(run_dir: Path, cfg: DictConfig, message: str, exit_code: int) -> None:
    """Write a failed manifest for a run that stopped before it had one (a config error); keep one that exists."""
    path = run_dir / MANIFEST_NAME
    if path.exists():
        return
    try:
        manifest = Manifest(run_dir, cfg)
    except Exception:  # a config too broken to describe: keep what can be said
        manifest = Manifest.__new__(Manifest)
        manifest.path, manifest._started = path, time.perf_counter()
        manifest.doc = {"adam_version": __version__, "status": "running", "run_dir": str(run_dir)}
    manifest.finish("failed", exit_code, error=message)


class Manifest:
    """Builds and rewrites manifest.json in a run dir."""

    def __init__(self, run_dir: Path, cfg: DictConfig) -> None:
        self.path = run_dir / MANIFEST_NAME
        self._started = time.perf_counter()
        self.doc: dict[str, Any] = {
            "adam_version": __version__,
            "status": "running",
            "job": cfg.job.name,
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": " ".join(sys.argv),
            "run_dir": str(run_dir),
            "config": resolved_config(cfg),
            "versions": _versions(),
        }

    def update(self, **fields: Any) -> None:
        """Set fields and rewrite the file atomically."""
        self.doc.update(fields)
        self.write()

    def finish(self, status: str, exit_code: int, **fields: Any) -> None:
        """Record the outcome and timing."""
        self.update(
            status=status,
            exit_code=exit_code,
            finished=datetime.now(UTC).isoformat(timespec="seconds"),
            wall_time_s=round(time.perf_counter() - self._started, 3),
            peak_memory_mb=peak_memory_mb(),
            **fields,
        )

    def write(self) -> None:
        """Write the manifest (tmp file + rename, so a reader never sees half of it)."""
        write_json_atomic(self.path, self.doc)
