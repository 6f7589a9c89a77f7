"""Ctrl-C and SIGTERM stop a batch job without losing finished work, and without waiting for nothing.

A signal that arrives while a batch is in flight (or anything else that writes, or a model load) is
noted, and the job stops once that step returns, so what it finished stays whole. A signal that
arrives while the job only reads (its input, a silent standard input) or waits for its first batch
ends it at once: ``Interrupted`` is raised where it is, since nothing is half done there.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterable, Iterator
from types import FrameType
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class Interrupted(KeyboardInterrupt):
    """A signal ended the job while nothing was in flight (a KeyboardInterrupt, so no ``except Exception`` eats it)."""


class StopRequest:
    """Set by SIGINT or SIGTERM; a second signal interrupts at once (KeyboardInterrupt)."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self.batches = 0  # batches the job has run, for the messages
        self._busy: str | None = None  # what must finish before the job stops ("the batch in flight")
        self._reading = False  # inside ``reading()``: a signal raises Interrupted at once

    def __bool__(self) -> bool:
        return self.signal_name is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signal_name is not None:
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name
        if self._reading:
            log.warning("%s received: stopping now (no batch was in flight)", self.signal_name)
            raise Interrupted(self.stopped_message())
        if self._busy is not None:
            log.warning("%s received: stopping after %s (again to stop at once)", self.signal_name, self._busy)
        else:
            when = "the next batch" if self.batches else "the first batch"
            log.warning("%s received: stopping before %s (again to stop at once)", self.signal_name, when)

    def stopped_message(self) -> str:
        """Why the job stopped, for the manifest and the log."""
        plural = "es" if self.batches > 1 else ""
        when = f"after {self.batches} batch{plural}" if self.batches else "before its first batch"
        return f"stopped by {self.signal_name} {when}"

    def check(self) -> None:
        """Raise Interrupted if a signal came while something had to finish first."""
        if self.signal_name is not None:
            raise Interrupted(self.stopped_message())

    @contextlib.contextmanager
    def busy(self, what: str) -> Iterator[None]:
        """While the block runs, a signal waits for it to finish ("the batch in flight", "the model load")."""
        self._busy = what
        try:
            yield
        finally:
            self._busy = None

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """While the block runs, a signal raises Interrupted where the main thread is (a blocked read included)."""
        self.check()
        self._reading = True
        try:
            yield
        finally:
            self._reading = False

    def read(self, items: Iterable[T]) -> Iterator[T]:
        """``items``, each one fetched inside ``reading()``: reading the input never delays a stop."""
        it = iter(items)
        while True:
            with self.reading():
                try:
                    item = next(it)
                except StopIteration:
                    return
            yield item


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Catch SIGINT and SIGTERM while the block runs (main thread only; elsewhere nothing is caught)."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {sig: signal.signal(sig, request._handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield request
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
