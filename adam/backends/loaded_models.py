"""The models loaded in this process, so nothing loads twice (the config options are in adam.settings.catalog)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")


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
