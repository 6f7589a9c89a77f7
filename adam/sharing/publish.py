"""Register a shared GGUF with an Ollama server: blob upload (HEAD first), then create."""

from __future__ import annotations

import logging
from typing import Any, Protocol

from adam.sharing.store import SharedModel

log = logging.getLogger(__name__)


class OllamaTarget(Protocol):
    """What publishing needs of an Ollama server (adam.sharing.ollama_server.OllamaModels)."""

    host: str

    def push_blob(self, path: Any, digest: str | None = None) -> str: ...

    def create_model(
        self, name: str, files: dict[str, str], *, template: str | None, parameters: dict | None, system: str | None
    ) -> None: ...


def publish(entry: SharedModel, target: OllamaTarget, name: str) -> dict[str, Any]:
    """Upload ``entry``'s GGUF unless the server has it, and create Ollama model ``name`` from it."""
    template, parameters = entry.ollama_template()
    digest = target.push_blob(entry.gguf_path, f"sha256:{entry.sha256}")
    target.create_model(name, {entry.gguf_path.name: digest}, template=template, parameters=parameters, system=None)
    log.info("created Ollama model %s on %s from %s", name, target.host, entry.gguf_path)
    return {"ollama_model": name, "host": target.host, "digest": digest}
