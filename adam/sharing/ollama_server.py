"""Managing models on an Ollama server: pull, blob check and upload, create; beside the sharing code that uses it.

Everything goes through the backend's own client and its one error choke point (``_call``), so a
refused connection or a 5xx means here what it means for generation.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

from adam.errors import BackendError, BackendUnavailable, ModelNotFoundError
from adam.hashing import file_sha256

T = TypeVar("T")

log = logging.getLogger(__name__)

DIGEST = re.compile(r"^sha256[:-][0-9a-f]{64}$")


class OllamaConnection(Protocol):
    """What managing models needs of the Ollama backend: its client, its error choke point, its model."""

    host: str
    model: str
    share_store: str | None

    def _client(self) -> Any: ...

    def _call(self, what: str, fn: Callable[[], T]) -> T: ...

    def _open_stream(self, what: str, fn: Callable[[], Iterator[T]]) -> Iterator[T]: ...


class OllamaModels:
    """The models on the server one OllamaBackend talks to."""

    def __init__(self, backend: OllamaConnection) -> None:
        self.backend = backend
        self.host = backend.host

    def pull(self, model: str | None = None) -> None:
        """Put the model on the server: from the shared store when it is there, else from the Ollama registry."""
        backend = self.backend
        model = model or backend.model
        if self.create_from_shared_store(model):
            log.info("created %s on %s from the shared store", model, self.host)
            return
        from tqdm import tqdm

        log.info("pulling %s on the Ollama server at %s", model, self.host)
        client = backend._client()
        layers: dict[str, tuple[int, int]] = {}  # digest -> (completed, total) bytes
        status = ""
        tty = bool(getattr(sys.stderr, "isatty", lambda: False)())
        with tqdm(desc=f"pull {model}", unit="B", unit_scale=True, file=sys.stderr, disable=not tty) as bar:
            try:
                for part in backend._open_stream("pull", lambda: client.pull(model, stream=True)):
                    status = part.status or status
                    if part.digest and part.total:
                        layers[part.digest] = (part.completed or 0, part.total)
                        bar.total = sum(total for _, total in layers.values())
                        bar.n = sum(done for done, _ in layers.values())
                        bar.refresh()
            except BackendError as err:
                if "not exist" in str(err) or "not found" in str(err):
                    raise ModelNotFoundError(
                        f"the Ollama registry has no {model}: {err}; set size.ollama_tag=<name:tag>"
                    ) from err
                raise BackendUnavailable(f"pulling {model} on {self.host} failed: {err}") from err
        if status != "success":
            raise BackendUnavailable(f"pulling {model} on {self.host} ended with {status!r}, not 'success'")
        log.info("pulled %s", model)

    def create_from_shared_store(self, tag: str) -> bool:
        """Create ``tag`` from a GGUF that adam shared from another backend, instead of pulling it."""
        from adam.sharing.publish import publish
        from adam.sharing.store import SharedStore

        entry = SharedStore(self.backend.share_store).find_by_ollama_model(tag)
        if entry is None:
            return False
        publish(entry, self, tag)
        return True

    def has_blob(self, digest: str) -> bool:
        """Whether the server holds the blob ``sha256:<hex>`` (HEAD /api/blobs/<digest>)."""
        if not DIGEST.match(digest):
            raise ValueError(f"not a blob digest: {digest!r} (want sha256:<64 hex digits>)")
        client = self.backend._client()

        def head() -> bool:
            # The official client can only POST blobs, so ask through its own HTTP session.
            reply = client._client.head(f"/api/blobs/{digest}")
            if reply.status_code not in (200, 404):
                import ollama

                raise ollama.ResponseError(reply.text or reply.reason_phrase, reply.status_code)
            return reply.status_code == 200

        return self.backend._call("blob check", head)

    def push_blob(self, path: Path, digest: str | None = None) -> str:
        """Upload a file as a blob unless the server has it already; returns its digest ``sha256:<hex>``."""
        path = Path(path)
        digest = digest or f"sha256:{file_sha256(path)}"
        if self.has_blob(digest):
            log.info("the server already has %s (%s)", path.name, digest)
            return digest
        log.info("uploading %s to %s", path, self.host)
        client = self.backend._client()
        return self.backend._call("blob upload", lambda: client.create_blob(path))

    def create_model(
        self,
        name: str,
        files: dict[str, str],
        *,
        template: str | None = None,
        parameters: dict[str, Any] | None = None,
        system: str | None = None,
    ) -> None:
        """Create model ``name`` on the server from uploaded blobs ({file name: digest})."""
        client = self.backend._client()
        status = ""

        def create() -> Iterator[Any]:
            return client.create(
                model=name, files=files, template=template, parameters=parameters, system=system, stream=True
            )

        for part in self.backend._open_stream("create", create):
            status = part.status or status
            log.debug("create %s: %s", name, status)
        if status != "success":
            raise BackendError(f"creating {name} on {self.host} ended with {status!r}, not 'success'")
