"""adam: declarative LLM batch jobs on your own models."""

from __future__ import annotations

from importlib import metadata
from typing import TYPE_CHECKING, Any

from adam import moved_modules
from adam.errors import DISTRIBUTION

moved_modules.install()  # old module paths (recorded in run dirs made before the move) still import

try:
    __version__ = metadata.version(DISTRIBUTION)
except metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["ModelManager", "__version__"]

if TYPE_CHECKING:
    from adam.manager import ModelManager


def __getattr__(name: str) -> Any:
    # ModelManager pulls in Hydra's compose machinery; import it only when asked for.
    if name == "ModelManager":
        from adam.manager import ModelManager

        return ModelManager
    raise AttributeError(f"module 'adam' has no attribute {name!r}")
