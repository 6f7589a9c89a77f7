"""Retries with exponential backoff and jitter for calls to a model server.

A call signals a failure worth retrying (HTTP 429, 5xx, a timeout) by raising ``TransientError``;
every other error goes straight through. The sleep and random functions are attributes so tests can
replace them instead of waiting.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from adam.errors import BackendError

log = logging.getLogger(__name__)

T = TypeVar("T")


class TransientError(BackendError):
    """A failure that may go away when the same call is made again (overload, restart, timeout)."""


@dataclass
class Backoff:
    """How often and how long to wait between attempts of one call."""

    retries: int  # attempts after the first (a server backend's retries=)
    base: float  # seconds before the first retry (backoff=)
    maximum: float  # no single wait is longer (max_backoff=)
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    random: Callable[[], float] = field(default=random.random, repr=False)

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError("retries must be 0 or more")
        if self.base < 0 or self.maximum < 0:
            raise ValueError("backoff and max_backoff must be 0 or more")

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1-based): doubling, capped, half of it random.

        "Equal jitter": clients that failed together do not all come back at the same instant, and
        no wait is shorter than half the nominal one.
        """
        nominal = min(self.maximum, self.base * 2 ** (retry - 1))
        return nominal / 2 + self.random() * nominal / 2

    def call(self, fn: Callable[[], T], what: str = "call") -> T:
        """``fn()``, retried on TransientError; after the last retry a BackendError says how many attempts failed."""
        for attempt in range(self.retries + 1):
            try:
                return fn()
            except TransientError as err:
                if attempt >= self.retries:
                    attempts = "1 attempt" if attempt == 0 else f"{attempt + 1} attempts"
                    raise BackendError(f"{err} (gave up after {attempts})") from err
                wait = self.delay(attempt + 1)
                log.warning("%s: %s; retry %d of %d in %.2fs", what, err, attempt + 1, self.retries, wait)
                self.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover
