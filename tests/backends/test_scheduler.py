"""The scheduler's rules on a stepper that makes one token per request per step (the real one needs llama.cpp:
tests/backends/test_llamacpp.py runs these rules on the demo model)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import pytest

from adam.backends.scheduler import Scheduler
from adam.backends.types import Priority
from adam.errors import BackendError, BackendUnavailable


@dataclass
class Event:
    index: int
    text: str
    tokens: int
    finish_reason: str | None = None


class CountingStepper:
    """Each request's prompt is how many tokens it makes ("a", "b", ...); every step makes one for each request."""

    def __init__(self, slots: int, step_s: float = 0.002) -> None:
        self.slots = slots
        self.step_s = step_s
        self.running: dict[int, list[int]] = {}  # index -> [made, wanted]
        self.admitted: list[int] = []
        self.sizes: list[int] = []  # requests per step
        self.fail_next = False
        self.gate = threading.Event()
        self.gate.set()

    @property
    def free_slots(self) -> int:
        return self.slots - len(self.running)

    def admit(self, index: int, prompt: int, *, urgent: bool = False) -> None:
        if prompt < 1:
            raise BackendError("nothing to make")
        self.running[index] = [0, prompt]
        self.admitted.append(index)

    def step(self) -> list[Event]:
        self.gate.wait()
        time.sleep(self.step_s)
        if self.fail_next:
            self.fail_next = False
            raise BackendError("decode failed")
        events = []
        self.sizes.append(len(self.running))
        for index, state in list(self.running.items()):
            state[0] += 1
            done = state[0] == state[1]
            events.append(Event(index, chr(ord("a") + state[0] - 1), state[0], "length" if done else None))
            if done:
                del self.running[index]
        return events

    def cancel(self, index: int) -> None:
        self.running.pop(index, None)

    def reset(self) -> None:
        self.running.clear()


def _until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


@pytest.fixture
def scheduler():
    stepper = CountingStepper(slots=3)
    sched = Scheduler(stepper, batch_slots=2)
    yield sched
    sched.close()


def test_each_request_streams_its_own_tokens_while_sharing_steps(scheduler) -> None:
    tickets = [scheduler.submit(n) for n in (5, 3, 4)]
    texts = ["".join(e.text for e in t) for t in tickets]
    assert texts == ["abcde", "abc", "abcd"]
    assert max(scheduler.stepper.sizes) == 2  # batch work never takes the slot kept for interactive requests


def test_an_interactive_request_overtakes_queued_batch_work(scheduler) -> None:
    stepper = scheduler.stepper
    stepper.gate.clear()  # hold the first step until everything is queued
    batch = [scheduler.submit(6) for _ in range(2)]
    _until(lambda: len(stepper.admitted) == 2)
    batch += [scheduler.submit(6) for _ in range(4)]
    chat = scheduler.submit(2, Priority.interactive)
    assert scheduler.waiting == 5  # the first step is held: nothing else was admitted yet
    stepper.gate.set()
    assert "".join(e.text for e in chat) == "ab"
    assert ["".join(e.text for e in t) for t in batch] == ["abcdef"] * 6
    # it started in the kept slot at once, ahead of the four batch requests queued before it
    assert stepper.admitted == [batch[0].key, batch[1].key, chat.key] + [t.key for t in batch[2:]]
    assert scheduler.waiting == 0
    assert max(stepper.sizes) == 3


def test_interactive_requests_take_free_slots_before_batch_work_without_kept_slots() -> None:
    stepper = CountingStepper(slots=2)
    sched = Scheduler(stepper, batch_slots=2)
    try:
        stepper.gate.clear()
        batch = [sched.submit(3) for _ in range(2)]
        _until(lambda: len(stepper.admitted) == 2)  # both slots held, the first step waiting
        batch += [sched.submit(3) for _ in range(2)]
        chats = [sched.submit(1, Priority.interactive) for _ in range(2)]
        stepper.gate.set()
        for ticket in [*chats, *batch]:
            list(ticket)
        order = stepper.admitted
        # the two first batch requests held both slots; the chats took the next two, before batch 3 and 4
        assert order[2:4] == [chats[0].key, chats[1].key]
    finally:
        sched.close()


def test_a_cancelled_request_gives_its_slot_back(scheduler) -> None:
    long = scheduler.submit(1000)
    first = next(iter(long))
    assert first.text == "a"
    long.cancel()
    assert "".join(e.text for e in scheduler.submit(2)) == "ab"
    time.sleep(0.05)
    assert long.key not in scheduler.stepper.running


def test_a_failed_step_fails_the_requests_it_carried_and_the_loop_goes_on(scheduler) -> None:
    scheduler.stepper.fail_next = True
    with pytest.raises(BackendError, match="decode failed"):
        list(scheduler.submit(3))
    with pytest.raises(BackendError, match="nothing to make"):  # a request's own problem fails it alone
        list(scheduler.submit(0))
    assert "".join(e.text for e in scheduler.submit(2)) == "ab"


def test_closing_fails_what_has_not_finished() -> None:
    stepper = CountingStepper(slots=1)
    sched = Scheduler(stepper, batch_slots=1)
    ticket = sched.submit(10_000)
    next(iter(ticket))
    sched.close()
    with pytest.raises(BackendUnavailable):
        list(ticket)
    with pytest.raises(BackendUnavailable):
        sched.submit(1)
