"""Shared test helpers: compose the real config the way the CLI does, read JSONL outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_module
from omegaconf import DictConfig

import adam.schemas  # noqa: F401  (registers the schemas)

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
