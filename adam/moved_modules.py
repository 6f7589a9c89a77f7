"""Old module paths, from before adam's root was split into packages, still import (as the new modules).

Run dirs and sweeps record class paths: Hydra writes ``hydra.callbacks`` (``adam.sweep.SweepReport``) and the log
handler (``adam.log_file.RunLogHandler``) into ``.hydra/hydra.yaml`` and ``multirun.yaml``, and scripts written
against an older adam import ``adam.runner``. A finder on ``sys.meta_path`` answers those names with the module
that now holds the code, so an old name and its new one are the same module object.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType

MOVED = {
    "adam.catalog": "adam.settings.catalog",
    "adam.config": "adam.settings.config",
    "adam.config_errors": "adam.settings.config_errors",
    "adam.cpu_speed": "adam.planning.cpu_speed",
    "adam.embed_store": "adam.io.embed_store",
    "adam.hardware": "adam.planning.hardware",
    "adam.help_text": "adam.settings.help_text",
    "adam.job_schemas": "adam.settings.job_schemas",
    "adam.launchers": "adam.run.launchers",
    "adam.locks": "adam.run.locks",
    "adam.log_file": "adam.run.log_file",
    "adam.manifest": "adam.run.manifest",
    "adam.memory_estimates": "adam.planning.memory_estimates",
    "adam.memory_plan": "adam.planning.memory_plan",
    "adam.registry": "adam.backends.loaded_models",
    "adam.resume": "adam.run.resume",
    "adam.run_control": "adam.run.run_control",
    "adam.run_session": "adam.run.run_session",
    "adam.runner": "adam.run.runner",
    "adam.schemas": "adam.backends.schemas",
    "adam.shard_runs": "adam.run.shard_runs",
    "adam.sharding": "adam.io.sharding",
    "adam.signals": "adam.run.signals",
    "adam.size_catalog": "adam.planning.size_catalog",
    "adam.sizing": "adam.planning.sizing",
    "adam.summary": "adam.run.summary",
    "adam.sweep": "adam.run.sweep",
    "adam.tiers": "adam.planning.tiers",
}


class _Alias(importlib.abc.Loader):
    """Loads an old name as the module its code moved to (imported once, under its new name)."""

    def __init__(self, new: str) -> None:
        self.new = new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(self.new)

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the new module ran when it was imported."""


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Finds the modules in ``MOVED`` by their old names."""

    def find_spec(
        self, fullname: str, path: object = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        """A spec whose loader hands back the moved module; None for every other name."""
        new = MOVED.get(fullname)
        return None if new is None else importlib.util.spec_from_loader(fullname, _Alias(new))


def install() -> None:
    """Put the finder on ``sys.meta_path`` once (adam/__init__.py calls this)."""
    if not any(isinstance(f, MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, MovedModuleFinder())  # before an editable install's finder, which knows old paths
