"""Running the app with uvicorn: in the foreground for job=serve, or on a background thread (tests, benchmarks).

On SIGTERM or Ctrl-C uvicorn stops accepting connections and finishes the requests in flight (up to
``GRACE_S``); the app's lifespan then lets each model's worker finish its queue. uvicorn itself
would re-raise the signal once it is done, killing the process with it; adam's server returns
instead, so the run ends with its manifest written and exit status 0. Connections speak HTTP/1.1
through uvicorn's h11 protocol with read timeouts (adam/server/read_timeouts.py): a client that
stalls before its request is in is dropped.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

import uvicorn

from adam.server.read_timeouts import ReadTimeouts, protocol_for

GRACE_S = 30  # seconds requests in flight get to finish after SIGTERM


class _Server(uvicorn.Server):
    """uvicorn's server, which remembers the stopping signal instead of re-raising it."""

    stopped_by: str | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.stopped_by = signal.Signals(sig).name
        super().handle_exit(sig, frame)


def make_server(
    app: Any, host: str, port: int, *, access_log: bool = True, timeouts: ReadTimeouts | None = None
) -> _Server:
    """A uvicorn server for ``app`` that logs through adam's logging, drops stalled clients, stops gracefully."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol_for(timeouts or ReadTimeouts()),  # never "auto": httptools, if installed, has no timeouts
        log_config=None,  # adam's logging (Hydra's job_logging) stays as it is
        access_log=access_log,
        server_header=False,
        timeout_graceful_shutdown=GRACE_S,
        lifespan="on",
    )
    return _Server(config)


def serve(app: Any, host: str, port: int, timeouts: ReadTimeouts | None = None) -> str | None:
    """Serve until SIGTERM or Ctrl-C; returns the signal's name (None when stopped otherwise)."""
    server = make_server(app, host, port, timeouts=timeouts)
    server.run()
    return server.stopped_by


class BackgroundServer:
    """``app`` served on a thread of this process; ``url`` is its root (port 0: a free port)."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, timeouts: ReadTimeouts | None = None) -> None:
        self.server = make_server(app, host, port, access_log=False, timeouts=timeouts)
        self.thread = threading.Thread(target=self.server.run, name="adam-serve", daemon=True)
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        """http://host:port of the running server."""
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> BackgroundServer:
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the server did not start (is the port taken?)")
            self.thread.join(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(GRACE_S + 5)
