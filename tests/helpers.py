"""Shared test helpers: compose the real config the way the CLI does, read JSONL outputs."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_module
from omegaconf import DictConfig

import adam.backends.schemas  # noqa: F401  (registers the schemas)

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "jobs" / "examples"


def compose_cfg(*overrides: str, run_dir: Path | None = None) -> DictConfig:
    """The run config for these overrides, with Hydra's node so run() finds its run dir."""
    extra = [f"hydra.run.dir={run_dir}"] if run_dir is not None else []
    with initialize_config_module("adam.conf", version_base="1.3"):
        return compose("config", overrides=[*overrides, *extra], return_hydra_config=True)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every line of a JSONL file, parsed; a torn or blank line fails the test."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    """Write rows (dicts, or raw strings kept as they are) one per line."""
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# The Ray launcher pins cloudpickle below 3, which joblib 1.6 (the joblib launcher's) refuses, so it cannot share
# .venv: `make test` builds .venv-ray once, Ray and its launcher over .venv's packages (see the Makefile).
RAY_VENV_PYTHON = REPO / ".venv-ray" / "bin" / "python"


def installed(module: str) -> bool:
    """Whether ``module`` can be imported here (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


@cache
def ray_python() -> str | None:
    """A Python that has hydra-ray-launcher: this one, else the overlay .venv-ray, else None."""
    if installed("hydra_plugins.hydra_ray_launcher"):
        return sys.executable
    if RAY_VENV_PYTHON.exists():
        probe = [str(RAY_VENV_PYTHON), "-c", "import adam, hydra_plugins.hydra_ray_launcher"]
        if subprocess.run(probe, capture_output=True, timeout=120, check=False).returncode == 0:
            return str(RAY_VENV_PYTHON)
    return None
