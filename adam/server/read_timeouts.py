"""Stalled clients are dropped: uvicorn's h11 protocol with a header deadline and a body read timeout.

uvicorn has neither (its issue #157, open since 2018): ``timeout_keep_alive`` starts only after a
response and any byte resets it, so a client that opens a connection and sends nothing, or a header a
byte at a time, or half a body, holds its connection (and a file descriptor) for as long as it likes;
a few hundred such clients exhaust a server. The rules here are nginx's ``client_header_timeout`` and
``client_body_timeout``:

- **header**: the request line and headers must be complete within ``header_s`` of the connection
  opening (or of the first byte of the next request on a kept-alive connection). More bytes do not
  extend it. Past it the client gets a 408 and the connection is closed.
- **body**: while a request body is being received, ``body_s`` at most between two reads; a slow but
  steady upload is fine. Past it the connection is closed (the route sees the client gone). The timer
  waits while the server, not the client, holds the body back (flow control, ``Expect: 100-continue``).

Once a request has arrived nothing here limits how long its answer takes: a long generation or stream
is never cut. Between requests uvicorn's own keep-alive timeout applies.

Why a subclass and not another server: hypercorn's ``read_timeout`` is per read (a client trickling a
byte every few seconds is never dropped) and granian runs the app in worker processes of its own, which
would change how job=serve stops on SIGTERM and how the tests run a server on a thread. This class
hooks four methods of ``uvicorn.protocols.http.h11_impl.H11Protocol`` and reads h11's own connection
state, so pyproject.toml pins uvicorn's minor version; tests/server/test_serve_edges.py checks the
behaviour against the installed uvicorn.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import ClassVar, Literal

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from adam.settings.job_schemas import ServeJob

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


@dataclass(frozen=True)
class ReadTimeouts:
    """How long a client may take to send a request (job.header_timeout_s, job.body_timeout_s)."""

    header_s: float = ServeJob.header_timeout_s
    body_s: float = ServeJob.body_timeout_s


class TimedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing connections whose client stalls before its request is in."""

    timeouts: ClassVar[ReadTimeouts] = ReadTimeouts()

    _timer: asyncio.TimerHandle | None = None
    _waiting_for: Literal["header", "body"] | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm("header")  # a connection that never sends a byte is dropped too

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow()  # a pipelined request may have been read, or the next one's head be waiting

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _follow(self) -> None:
        """Arm the timer that what the client still owes calls for."""
        if self.transport.is_closing():
            self._disarm()
        elif self.conn.their_state is h11.IDLE and self.conn.trailing_data[0]:  # part of a request's head
            if self._waiting_for != "header":  # a deadline from the first byte: more bytes do not extend it
                self._arm("header")
        elif self.conn.their_state is h11.SEND_BODY:
            self._arm("body")  # between two reads: each read starts it again
        else:  # idle between requests (uvicorn's keep-alive timer), or the whole request is in
            self._disarm()

    def _arm(self, what: Literal["header", "body"]) -> None:
        self._disarm()
        seconds = self.timeouts.header_s if what == "header" else self.timeouts.body_s
        self._waiting_for = what
        self._timer = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._waiting_for = None, None

    def _expired(self) -> None:
        what, self._timer = self._waiting_for, None
        if self.transport.is_closing():
            return
        held_back = self.flow.read_paused or (self.cycle is not None and self.cycle.waiting_for_100_continue)
        if what == "body" and held_back:  # the server is not reading yet: not the client's fault
            self._arm("body")
            return
        log.debug("closing a connection from %s: its request %s did not arrive in time", self.client, what)
        if what == "header":
            self.transport.write(REQUEST_TIMEOUT)
        self.transport.close()


def protocol_for(timeouts: ReadTimeouts) -> type[TimedH11Protocol]:
    """The protocol class uvicorn instantiates per connection, with these timeouts."""
    return type("TimedH11Protocol", (TimedH11Protocol,), {"timeouts": timeouts})
