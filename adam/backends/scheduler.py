"""One loop owns an in-process model: requests join at any decode step, leave when done, and stream their own tokens.

A ``Scheduler`` drives a ``Stepper`` (llamacpp_native.BatchDecoder) on a thread of its own. Callers on any
thread submit a request with a priority and read its events (the text each token made, then the finish) from
its ``Ticket`` as the steps make them, whether it shares its steps with others or not. Interactive requests
(HTTP chat and completions) are admitted before batch work (jobs, Batch API lines), and ``batch_slots`` caps
the slots batch work may hold, so the slots above it are kept for interactive requests: a chat arriving while a
long batch runs starts at the next step, and its prompt is read before the batch's next step.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from adam.backends.types import Priority
from adam.errors import BackendUnavailable

log = logging.getLogger(__name__)


class Event(Protocol):
    """What a step produced for one request (llamacpp_native.Progress)."""

    index: int
    text: str
    tokens: int
    finish_reason: str | None


class Stepper(Protocol):
    """A decode loop run one forward pass at a time, with slots for the requests it decodes together."""

    @property
    def free_slots(self) -> int: ...

    def admit(self, index: int, prompt: Any, *, urgent: bool = False) -> None: ...

    def step(self) -> list[Any]: ...

    def cancel(self, index: int) -> None: ...

    def reset(self) -> None: ...


class Ticket:
    """One submitted request: iterate it for its events as they are made; the last one has a finish_reason."""

    def __init__(self, scheduler: Scheduler, key: int, prompt: Any, priority: Priority) -> None:
        self.key = key
        self.prompt = prompt
        self.priority = priority
        self._scheduler = scheduler
        self._events: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.done = False

    def __iter__(self) -> Iterator[Any]:
        while not self.done:
            item = self._events.get()
            if isinstance(item, BaseException):
                self.done = True
                raise item
            self.done = item.finish_reason is not None
            yield item

    def cancel(self) -> None:
        """Give the slot back: the request stops at the next step (nothing once it has finished)."""
        if not self.done:
            self.done = True
            self._scheduler._cancel(self)

    def _put(self, item: Any) -> None:
        self._events.put(item)


class Scheduler:
    """The one thread that runs a model's decode steps for every caller, interactive requests first."""

    def __init__(self, stepper: Stepper, *, batch_slots: int, name: str = "adam-scheduler") -> None:
        self.stepper = stepper
        self.batch_slots = batch_slots  # slots batch work may hold; those above it wait for interactive requests
        self._keys = itertools.count()
        self._cond = threading.Condition()
        self._waiting: dict[Priority, deque[Ticket]] = {p: deque() for p in Priority}
        self._running: dict[int, Ticket] = {}
        self._cancelled: list[Ticket] = []
        self._closed = False
        self.steps = 0  # decode calls made, and the requests they carried (for benchmarks and metrics)
        self.stepped = 0
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    @property
    def waiting(self) -> int:
        """Requests submitted and not started yet."""
        with self._cond:
            return sum(len(q) for q in self._waiting.values())

    def submit(self, prompt: Any, priority: Priority = Priority.batch) -> Ticket:
        """Queue a request; it starts at the first step with a slot for it (interactive ones first)."""
        with self._cond:
            if self._closed:
                raise BackendUnavailable("the model is closed")
            ticket = Ticket(self, next(self._keys), prompt, priority)
            self._waiting[priority].append(ticket)
            self._cond.notify()
        return ticket

    def close(self, timeout: float | None = 30) -> None:
        """Stop after the step in flight; requests not finished get BackendUnavailable."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    # ----------------------------------------------------------------- the thread
    def _cancel(self, ticket: Ticket) -> None:
        with self._cond:
            waiting = self._waiting[ticket.priority]
            if ticket in waiting:
                waiting.remove(ticket)
            elif ticket.key in self._running:
                self._cancelled.append(ticket)  # the stepper is the loop's: it lets go before its next step

    def _admit(self) -> None:
        """Fill free slots: interactive requests first, batch work up to batch_slots (with the lock held)."""
        batch_running = sum(t.priority is Priority.batch for t in self._running.values())
        while self.stepper.free_slots:
            if self._waiting[Priority.interactive]:
                ticket = self._waiting[Priority.interactive].popleft()
            elif self._waiting[Priority.batch] and batch_running < self.batch_slots:
                ticket = self._waiting[Priority.batch].popleft()
                batch_running += 1
            else:
                return
            try:
                self.stepper.admit(ticket.key, ticket.prompt, urgent=ticket.priority is Priority.interactive)
            except Exception as err:  # this request's own problem (an empty prompt): it fails alone
                ticket._put(err)
                continue
            self._running[ticket.key] = ticket

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    for ticket in self._cancelled:
                        self._running.pop(ticket.key, None)
                        self.stepper.cancel(ticket.key)
                    self._cancelled.clear()
                    self._admit()
                    if self._running:
                        break
                    self._cond.wait()
                if self._closed:
                    self._fail_all(BackendUnavailable("the model was closed before this request finished"))
                    return
            try:
                events = self.stepper.step()
            except Exception as err:  # a failed decode fails the requests it carried; the loop goes on
                log.warning("a decode step of %d requests failed: %s", len(self._running), err)
                with self._cond:
                    for ticket in self._running.values():
                        ticket._put(err)
                    self._running.clear()
                    self.stepper.reset()
                continue
            self.steps += 1
            self.stepped += len(events)
            with self._cond:
                for event in events:
                    ticket = self._running.get(event.index)
                    if ticket is None:
                        continue  # cancelled while the step ran
                    ticket._put(event)
                    if event.finish_reason is not None:
                        del self._running[event.index]

    def _fail_all(self, err: BaseException) -> None:
        for ticket in [*self._running.values(), *(t for q in self._waiting.values() for t in q)]:
            ticket._put(err)
        self._running.clear()
        for waiting in self._waiting.values():
            waiting.clear()
        self.stepper.reset()


def answers(scheduler: Scheduler, prompts: Sequence[Any], priority: Priority) -> list[list[Any]]:
    """Submit every prompt at once and wait for them all: each one's events, in order (the last has its finish).

    An error (a failed step, a closed model) is raised; the requests not finished then give their slots back.
    """
    tickets = [scheduler.submit(prompt, priority) for prompt in prompts]
    try:
        return [list(ticket) for ticket in tickets]
    finally:
        for ticket in tickets:
            ticket.cancel()


def events(scheduler: Scheduler, prompt: Any, priority: Priority) -> Iterator[Any]:
    """One request's events as they are made; closing the iterator early gives its slot back at the next step."""
    ticket = scheduler.submit(prompt, priority)
    try:
        yield from ticket
    finally:
        ticket.cancel()
