"""Which GGUF file the llamacpp backend runs for a size, and that file's sha256.

A size names its GGUF through the same resolvers as the HuggingFace backend (``size.source=ollama``,
``size.path``, ``size.package``); a size that names a Hugging Face model runs the GGUF adam already
wrote for it in the shared store (job=share). Nothing here downloads.
"""

from __future__ import annotations

import re
from pathlib import Path

from adam.backends import gguf_import, hf_loading
from adam.errors import ModelNotFoundError
from adam.paths import cache_root
from adam.settings.config import SizeSpec, WeightsSource

_OLLAMA_BLOB = re.compile(r"^sha256-([0-9a-f]{64})$")


def resolve_gguf(size: SizeSpec, share_store: str | None) -> hf_loading.ModelSource:
    """A GGUF the size names (size.source=ollama, size.path, size.package), else one adam shared as GGUF."""
    if size.source == WeightsSource.ollama or size.path or size.package:
        named = hf_loading.resolve_source(size, download=False)  # its errors say what is missing
        if named.is_gguf:
            return named
        what = f"the model directory {named.path}"
    else:
        what = f"the Hugging Face model {size.hf_id}" if size.hf_id else "no weights"
    shared = shared_gguf(size, share_store)
    if shared is not None:
        return shared
    raise ModelNotFoundError(
        f"llama.cpp runs GGUF files and size={size.name} names {what}: write it as GGUF once with "
        f"`python -m adam job=share share.register=false size={size.name}`, or set size.path=<file.gguf>"
    )


def shared_gguf(size: SizeSpec, share_store: str | None) -> hf_loading.ModelSource | None:
    """The store's GGUF shared under the size's Ollama name, else the newest one made from its hub id."""
    from adam.sharing.store import SharedStore

    store = SharedStore(share_store)
    entry = store.find_by_ollama_model(size.ollama_tag) if size.ollama_tag else None
    if entry is None and size.hf_id:
        made = [
            e
            for e in store.entries()
            if e.metadata.get("model_id") == size.hf_id and e.metadata.get("revision") == size.revision
        ]
        entry = max(made, key=lambda e: e.metadata["created"], default=None)
    if entry is None:
        return None
    return hf_loading.ModelSource("gguf", f"shared:{entry.key}", entry.gguf_path, size.revision)


def gguf_sha256(path: Path) -> str:
    """A GGUF's sha256: from an Ollama blob's name, else hashed once and remembered by size and mtime."""
    match = _OLLAMA_BLOB.match(path.name)
    return match.group(1) if match else gguf_import.file_sha256(path, cache_root())
