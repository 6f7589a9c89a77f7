"""Safe by default: loopback unless a key is set, the key on every endpoint but /health, Host checked, other
sites' requests refused, bodies capped.

A server bound to 127.0.0.1 is still reachable from a web page through DNS rebinding (a name the
attacker controls resolves to 127.0.0.1), so the Host header must name the bound host. No CORS
headers are sent at all: browsers keep other origins from reading the answers. But a page on any
site can still *send* a form or a "simple" fetch (no preflight) to the server, and without a key
it would be obeyed: a state-changing request whose Origin is not the server's own is refused.
Browsers send Origin with every such request; curl and the SDKs send none and are not affected.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import re
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from adam.errors import ConfigError
from adam.server.errors import error_body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
OPEN_PATHS = frozenset({"/health", "/ui", "/ui/"})  # without a key: probes carry none, nor does opening the page
# the page's script and styles: no data, and a browser sends no key for them; one plain file name, no "/" or ".."
OPEN_STATIC = re.compile(r"/ui/static/[A-Za-z0-9_-]+\.(?:js|css|html|svg)")
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})  # a page on another site may not send these
DEFAULT_PORTS = {"http": 80, "https": 443}


def read_key(env: str) -> str | None:
    """The API key from the environment variable ``env`` (None when unset or blank)."""
    key = os.environ.get(env, "").strip() if env else ""
    return key or None


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or address to bind) is reachable from this machine only."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_wildcard(host: str) -> bool:
    """Whether binding ``host`` listens on every interface (0.0.0.0, ::)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False


def check_bind(host: str, *, key: str | None, insecure: bool, key_env: str) -> None:
    """Refuse to listen beyond this machine without a key, unless told to (job.insecure=true)."""
    if is_loopback(host) or key or insecure:
        return
    raise ConfigError(
        f"job.host={host} would serve every machine that can reach this one, without a key: set ${key_env} to a "
        "secret (clients send it as 'Authorization: Bearer <key>'), keep job.host=127.0.0.1, "
        "or set job.insecure=true"
    )


def allowed_hosts(host: str, extra: Iterable[str] = ()) -> frozenset[str] | None:
    """Host header names to accept (lower case, no port); None: any (a wildcard bind, guarded by its key)."""
    if is_wildcard(host):
        return None
    names = {host.lower().strip("[]"), *(h.lower().strip("[]") for h in extra)}
    if is_loopback(host):
        names |= LOOPBACK_NAMES
    return frozenset(names)


def host_name(header: str) -> str:
    """The name in a Host header, without its port ("[::1]:8000" -> "::1")."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def same_origin(origin: str, scheme: str, host: str, proxied: Iterable[str] = ()) -> bool:
    """Whether an Origin header names this server: ``scheme`` and the Host header's name and port ("null": no).

    ``proxied``: names a reverse proxy serves this server under (job.allowed_hosts); an Origin with one of
    them counts as the server's own whatever its scheme and port, since the proxy's differ from the server's.
    """
    try:
        theirs, ours = urlsplit(origin.strip()), urlsplit(f"//{host.strip()}")
        their_port = theirs.port or DEFAULT_PORTS.get(theirs.scheme.lower())
        our_port = ours.port or DEFAULT_PORTS.get(scheme)
    except ValueError:  # a port that is not a number
        return False
    if not theirs.hostname or theirs.path.strip("/") or theirs.scheme.lower() not in DEFAULT_PORTS:
        return False
    if theirs.hostname in {name.lower().strip("[]") for name in proxied}:
        return True
    return theirs.scheme.lower() == scheme and theirs.hostname == ours.hostname and their_port == our_port


def is_open(path: str) -> bool:
    """Whether ``path`` is answered without the key."""
    return path in OPEN_PATHS or OPEN_STATIC.fullmatch(path) is not None


class Guard:
    """ASGI middleware in front of every route: Host check, other sites refused, bearer key, body size limit."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        key: str | None,
        hosts: frozenset[str] | None,
        max_body: int,
        proxied: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.proxied = tuple(proxied)  # job.allowed_hosts: a reverse proxy's names, for the Origin check
        self.key = key.encode() if key else None
        self.hosts = hosts
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if self.hosts is not None and host_name(headers.get("host", "")) not in self.hosts:
            await _reject(send, path, 400, "invalid Host header: this server answers to its own host name only")
            return
        origin = headers.get("origin")
        if origin is not None and scope.get("method") in STATE_CHANGING:
            scheme, host = scope.get("scheme", "http"), headers.get("host", "")
            if not same_origin(origin, scheme, host, self.proxied):
                message = (
                    f"cross-origin request refused: Origin {origin[:200]!r} is not this server ({scheme}://{host[:200]});"
                    " a web page on another site may not change anything here (clients that send no Origin may)"
                )
                await _reject(send, path, 403, message, "cross_origin")
                return
        if self.key is not None and not is_open(path) and not self._authorized(headers):
            await _reject(
                send, path, 401, "missing or wrong API key: send 'Authorization: Bearer <key>'", "invalid_api_key"
            )
            return
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body:
            await _reject(send, path, 413, self._too_large())  # unread: uvicorn closes the connection after it
            return
        await self.app(scope, self._counting(receive), _nosniff(send))

    def _authorized(self, headers: dict[str, str]) -> bool:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        assert self.key is not None
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.key)

    def _too_large(self) -> str:
        return f"request body larger than {self.max_body / 2**20:g} MB (job.max_body_mb)"

    def _counting(self, receive: Receive) -> Receive:
        """``receive`` that fails with 413 once a body without Content-Length grows past the limit."""
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message.get("type") == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    from starlette.exceptions import HTTPException

                    raise HTTPException(413, self._too_large())  # FastAPI passes HTTPExceptions through
            return message

        return counted


def _nosniff(send: Send) -> Send:
    """``send`` with X-Content-Type-Options: nosniff on every response, so a browser never reads a stored file
    (a batch's input or output, served as application/jsonl) as a page or a script."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            if not any(k.lower() == b"x-content-type-options" for k, _ in headers):
                headers.append((b"x-content-type-options", b"nosniff"))
            message = {**message, "headers": headers}
        await send(message)

    return sending


async def _reject(send: Send, path: str, status: int, message: str, code: str | None = None) -> None:
    body = json.dumps(error_body(path, status, message, code)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
