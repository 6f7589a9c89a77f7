"""adam's one cache root, and the folders under it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path


def cache_root(override: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Path:
    """``override``, else $ADAM_CACHE_DIR, else the user cache dir (~/.cache/adam on Linux)."""
    env = os.environ if env is None else env
    if override:
        return Path(override).expanduser()
    if env.get("ADAM_CACHE_DIR"):
        return Path(env["ADAM_CACHE_DIR"]).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("adam"))


def share_root(env: Mapping[str, str] | None = None) -> Path:
    """The shared-model store: $ADAM_SHARE_DIR, else ``shared`` under the cache root."""
    env = os.environ if env is None else env
    if env.get("ADAM_SHARE_DIR"):
        return Path(env["ADAM_SHARE_DIR"]).expanduser()
    return cache_root(env=env) / "shared"


def scratch_runs_root() -> Path:
    """Where a job that leaves no results (job=info, search, serve: they print them, or keep a state dir) has its
    run dir while it runs, instead of outputs/; removed when it ends, so outputs/ holds only runs with results."""
    user = f"adam-{os.getuid()}" if hasattr(os, "getuid") else "adam"
    return Path(tempfile.gettempdir()) / user / "scratch"


def is_scratch(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a run dir under scratch_runs_root()."""
    root = os.path.realpath(scratch_runs_root())
    return os.path.realpath(path).startswith(root + os.sep)
