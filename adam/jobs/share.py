"""job=share (and share_with_ollama=true): a backend's weights into the shared store and into Ollama."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from hydra.utils import instantiate

from adam.backends.base import ModelBackend
from adam.errors import ConfigError
from adam.jobs.batching import JobStats
from adam.jobs.context import JobContext

log = logging.getLogger(__name__)

SHARED_METADATA_NAME = "shared_model.json"


def share_model(share: Any, backend: ModelBackend, run_dir: Path | None = None) -> dict[str, Any]:
    """Export ``backend``'s weights to the store (once per source) and register them with Ollama.

    The store's metadata document is copied into ``run_dir`` when there is one.
    """
    from adam.sharing.gguf_export import check_architecture
    from adam.sharing.metadata import write_metadata
    from adam.sharing.ollama_server import OllamaModels
    from adam.sharing.publish import publish
    from adam.sharing.store import SharedStore

    name = share.ollama_model or backend.size.ollama_tag
    if share.register and not name:
        raise ConfigError(f"size={backend.size.name} has no Ollama name: set share.ollama_model=<name:tag>")
    if backend.size.architecture:  # what the GGUF writer cannot write is refused before any download
        check_architecture(backend.size.architecture)
    target = None
    if share.register:  # a server that does not answer is found before a long export, not after it
        # The Ollama backend serves one size; hand it this one under the name it is shared as.
        target = instantiate(share.ollama, size=dataclasses.replace(backend.size, ollama_tag=name), _convert_="object")
    try:
        if target is not None:
            target.reach()
        weights = backend.export_weights()
        entry = SharedStore(share.store).export(weights, dtype=_value(share.dtype), ollama_model=name)
        doc: dict[str, Any] = {
            "gguf": str(entry.gguf_path),
            "sha256": entry.sha256,
            "metadata": str(entry.metadata_path),
        }
        if run_dir is not None:
            # The run's copy names the store's files by absolute path, so it still points at them from here.
            copy = json.loads(json.dumps(entry.metadata))
            for item in copy["files"]:
                item["path"] = str((entry.metadata_path.parent / item["path"]).resolve())
            write_metadata(run_dir / SHARED_METADATA_NAME, copy)
            doc["metadata"] = SHARED_METADATA_NAME
        if target is not None:
            doc.update(publish(entry, OllamaModels(target), name))
    finally:
        if target is not None:
            target.close()
    log.info("shared %s as %s", backend.size.name, entry.gguf_path)
    return doc


def _value(option: Any) -> str:
    return str(getattr(option, "value", option))


def run_share(ctx: JobContext) -> JobStats:
    """Share the configured size with Ollama; the outcome goes to the manifest."""
    return JobStats(ok=1, shared=share_model(ctx.share, ctx.backend, ctx.run_dir))
