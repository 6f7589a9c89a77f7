"""The server's edges: clients that stall are dropped, and one server per state dir."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers import REPO
from serving import CHAT_ID, engine_for, serving

from adam.errors import RunDirLocked
from adam.server.app import create_app
from adam.server.listen import BackgroundServer
from adam.server.read_timeouts import ReadTimeouts
from adam.server.state import ServeOptions

TIMEOUTS = ReadTimeouts(header_s=1.0, body_s=1.0)
SLACK_S = 4.0  # how long past its timeout a stalled connection may still be open (a loaded CI machine)
STALLED = 150  # of each kind
HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n"


@pytest.fixture(scope="module")
def server() -> Iterator[BackgroundServer]:
    """Small read timeouts; every answer takes 1.5 s, longer than either of them."""
    with serving(engine_for("backend.delay=1.5"), timeouts=TIMEOUTS) as running:
        yield running


def connect(server: BackgroundServer, first: bytes = b"") -> socket.socket:
    sock = socket.create_connection((server.host, server.port), timeout=10)
    if first:
        sock.sendall(first)
    return sock


def until_closed(sock: socket.socket, deadline: float) -> bytes:
    """Everything the server sends until it closes the connection; fails if it is still open at ``deadline``."""
    got = b""
    while True:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            raise AssertionError(f"still open past the read timeout, after {got[:80]!r}") from None
        except ConnectionResetError:
            return got
        if not chunk:
            return got
        got += chunk


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def chat(text: str) -> bytes:
    return json.dumps({"model": CHAT_ID, "messages": [{"role": "user", "content": text}]}).encode()


def test_stalled_connections_are_dropped_and_do_not_block_others(server: BackgroundServer) -> None:
    body = chat("never finished")
    started = time.monotonic()
    silent = [connect(server) for _ in range(STALLED)]  # connect and send nothing
    half_head = [connect(server, HEAD[: 20 + i % 40]) for i in range(STALLED)]
    half_body = [connect(server, HEAD + b"content-length: %d\r\n\r\n" % len(body) + body[:10]) for _ in range(STALLED)]
    trickle = connect(server)

    def drip() -> None:  # a header a byte at a time, never finished: more bytes must not extend the deadline
        with_host = HEAD + b"x-slow: "
        for byte in with_host + b"a" * 100:
            try:
                trickle.send(bytes([byte]))
            except OSError:
                return
            time.sleep(0.05)

    dripping = threading.Thread(target=drip, daemon=True)
    dripping.start()
    # meanwhile the server answers everyone else, and an answer slower than both timeouts is not cut
    assert httpx.get(f"{server.url}/health", timeout=5).json()["status"] == "ok"
    answer = httpx.post(f"{server.url}/v1/chat/completions", content=chat("still served"), timeout=30)
    assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"] == "still served"
    deadline = started + TIMEOUTS.header_s + SLACK_S
    for sock in silent + half_head:
        assert until_closed(sock, deadline).startswith(b"HTTP/1.1 408 "), "a stalled head gets 408, then the close"
    assert until_closed(trickle, deadline).startswith(b"HTTP/1.1 408 ")
    for sock in half_body:
        assert b"200 OK" not in until_closed(sock, started + TIMEOUTS.body_s + SLACK_S)
    for sock in [*silent, *half_head, *half_body, trickle]:
        sock.close()
    dripping.join(10)


def test_a_slow_but_steady_body_and_a_kept_alive_connection(server: BackgroundServer) -> None:
    """The body timeout is the longest pause between two reads, not a deadline for the whole body; a kept-alive
    connection gets the header deadline again from the first byte of its next request."""
    body = chat("slow upload")
    sock = connect(server, HEAD + b"content-length: %d\r\n\r\n" % len(body))
    pieces = [body[i : i + 30] for i in range(0, len(body), 30)]
    for piece in pieces:  # 0.4 s apart: longer than body_s in all, shorter between reads
        time.sleep(0.4)
        sock.sendall(piece)
    assert len(pieces) * 0.4 > TIMEOUTS.body_s
    reply = b""
    while b"slow upload" not in reply:
        chunk = sock.recv(4096)
        assert chunk, reply
        reply += chunk
    assert reply.startswith(b"HTTP/1.1 200 ")
    started = time.monotonic()
    sock.sendall(b"GET /health HTTP/1.1\r\nHo")  # the next request on the same connection stalls in its head
    assert until_closed(sock, started + TIMEOUTS.header_s + SLACK_S).startswith(b"HTTP/1.1 408 ")
    sock.close()


def test_the_read_timeouts_are_job_serve_keys_with_their_defaults_in_the_schema() -> None:
    from helpers import compose_cfg
    from omegaconf import OmegaConf

    from adam.errors import ConfigError
    from adam.run.runner import preflight
    from adam.settings.job_schemas import ServeJob

    job = compose_cfg("job=serve").job
    assert (job.header_timeout_s, job.body_timeout_s) == (ServeJob.header_timeout_s, ServeJob.body_timeout_s)
    assert ReadTimeouts() == ReadTimeouts(ServeJob.header_timeout_s, ServeJob.body_timeout_s)
    written = OmegaConf.load(REPO / "conf" / "job" / "serve.yaml")
    assert "header_timeout_s" not in written and "body_timeout_s" not in written  # defaults once: in the schema
    with pytest.raises(ConfigError, match=r"job\.body_timeout_s"):
        preflight(compose_cfg("backend=echo", "job=serve", "job.body_timeout_s=0"), REPO / "outputs")


def test_a_second_server_on_the_same_state_dir_refuses_to_start_naming_the_first(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with serving(engine_for(), state_dir=str(state)) as first:
        with pytest.raises(RunDirLocked, match=rf"in use by another server \(host .*, pid {os.getpid()}\)"):
            create_app([engine_for()], ServeOptions.of(state_dir=str(state)))
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        env.pop("ADAM_API_KEY", None)
        command = [sys.executable, "-m", "adam", "job=serve", "backend=echo", f"job.port={free_port()}",
                   f"job.state_dir={state}", f"hydra.run.dir={tmp_path / 'second'}"]  # fmt: skip
        second = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        assert second.returncode == 1, second.stderr[-3000:]
        said = [line for line in (second.stdout + second.stderr).splitlines() if line.strip()]
        assert len(said) == 1, said
        holder = f"(host {socket.gethostname()}, pid {os.getpid()})"
        assert f"job.state_dir={state} is in use by another server {holder}" in said[0]
        assert not (tmp_path / "second" / "manifest.json").exists()  # refused before anything was written
        assert httpx.get(f"{first.url}/v1/batches").json()["data"] == []  # the first one is still serving
    with serving(engine_for(), state_dir=str(state)):  # once the first has stopped, the state dir is free
        pass
