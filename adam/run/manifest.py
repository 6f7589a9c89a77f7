"""manifest.json: what ran, on what, with which outcome; written at start and again at the end."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from adam import __version__
from adam.errors import is_disk_full
from adam.io.writers import write_json_atomic

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
RESERVE_NAME = ".adam.reserve"  # disk space set aside so a full disk cannot keep the run's outcome from its manifest
RESERVE_BYTES = 256 * 1024  # several manifests (a new one is written beside the old) and the last log lines


def _versions() -> dict[str, str]:
    """Versions of the libraries that shape results, read without importing them."""
    out = {"python": sys.version.split()[0]}
    for dist in ("torch", "transformers", "onnxruntime", "ollama", "hydra-core"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


def resolved_config(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
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
        manifest.path, manifest._started, manifest._reserve = path, time.perf_counter(), None
        manifest.doc = {"adam_version": __version__, "status": "running", "run_dir": str(run_dir)}
    manifest.finish("failed", exit_code, error=message)


class Manifest:
    """Builds and rewrites manifest.json in a run dir."""

    def __init__(self, run_dir: Path, cfg: DictConfig | Mapping[str, Any]) -> None:
        """``cfg``: a composed config, or a plain one with the same nodes (a Batch API batch's job and settings)."""
        self.path = run_dir / MANIFEST_NAME
        self._reserve: Path | None = None
        self._started = time.perf_counter()
        self.doc: dict[str, Any] = {
            "adam_version": __version__,
            "status": "running",
            "job": cfg["job"]["name"],
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
        """Record the outcome and timing; on a full disk the space reserved at the start (``reserve``) is given
        up for it. When even that fails the file keeps its last complete version, which a resume reads as well."""
        self.doc.update(
            status=status,
            exit_code=exit_code,
            finished=datetime.now(UTC).isoformat(timespec="seconds"),
            wall_time_s=round(time.perf_counter() - self._started, 3),
            peak_memory_mb=peak_memory_mb(),
            **fields,
        )
        try:
            self.write()
        except OSError as err:
            if not is_disk_full(err) or self._reserve is None:
                raise
            self.release()
            self.write()
        finally:
            self.release()  # the run is over: the space goes back, for its last log lines first

    def write(self) -> None:
        """Write the manifest (tmp file + rename, so a reader never sees half of it)."""
        write_json_atomic(self.path, self.doc)

    def reserve(self) -> None:
        """Set disk space aside in the run dir for the last write of the manifest (``finish``)."""
        path = self.path.with_name(RESERVE_NAME)
        try:
            with open(path, "wb") as fh:
                if hasattr(os, "posix_fallocate"):
                    os.posix_fallocate(fh.fileno(), 0, RESERVE_BYTES)
                else:  # macOS: written blocks are held as well
                    fh.write(bytes(RESERVE_BYTES))
        except OSError as err:  # a disk this full fails the run's first write anyway, in its own words
            log.debug("no space reserved in %s: %s", path.parent, err)
            path.unlink(missing_ok=True)
            return
        self._reserve = path

    def release(self) -> None:
        """Give the reserved space back (done by ``finish``; releasing twice is fine)."""
        if self._reserve is not None:
            self._reserve.unlink(missing_ok=True)
            self._reserve = None
