"""What adam knows about: the backends and sizes in conf/, and the models loaded in this process."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from importlib import resources
from typing import Any, TypeVar

from adam.config import CONFIG_MODULE

T = TypeVar("T")

GROUPS = ("backend", "size", "domain", "hardware", "job")


def options(group: str) -> list[str]:
    """The choices of a config group, from the YAML files shipped in conf/."""
    if group not in GROUPS:
        raise ValueError(f"unknown config group {group!r}; groups: {', '.join(GROUPS)}")
    folder = resources.files(CONFIG_MODULE).joinpath(group)
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def backends() -> list[str]:
    """Backend names usable as backend=NAME."""
    return options("backend")


def sizes() -> list[str]:
    """Size names usable as size=NAME."""
    return options("size")


class LoadedModels:
    """Models loaded in this process, keyed by what identifies the weights, so nothing loads twice."""

    def __init__(self) -> None:
        self._models: dict[Hashable, Any] = {}
        self._lock = threading.Lock()  # guards the dicts only; loads run under their key's lock
        self._key_locks: dict[Hashable, threading.Lock] = {}

    def get_or_load(self, key: Hashable, load: Callable[[], T]) -> T:
        """The model stored under ``key``, loading it with ``load()`` the first time (once, even across threads)."""
        with self._lock:
            if key in self._models:
                return self._models[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:  # another thread may be loading this key; other keys load in parallel
            if key not in self._models:
                model = load()
                with self._lock:
                    self._models[key] = model
            return self._models[key]

    def __contains__(self, key: Hashable) -> bool:
        return key in self._models

    def __len__(self) -> int:
        return len(self._models)

    def clear(self) -> None:
        """Forget every loaded model (tests, long-lived programs switching models)."""
        with self._lock:
            self._models.clear()
            self._key_locks.clear()


loaded_models = LoadedModels()
