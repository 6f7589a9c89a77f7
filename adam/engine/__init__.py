"""The engine layer: the per-request rules every face of adam (jobs, ModelManager, the server) goes through."""

from adam.engine.core import Engine, Outcome
from adam.engine.settings import Settings

__all__ = ["Engine", "Outcome", "Settings"]
