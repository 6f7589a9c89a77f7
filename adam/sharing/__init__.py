"""Model sharing between backends: weights one backend has on disk are reused by the other.

The HuggingFace side exports its safetensors to GGUF (``gguf_export``) into a shared store
(``store``) that the Ollama backend looks in before it pulls; the Ollama side's pulled blobs are
found on disk (``ollama_models``) and loaded by transformers without a download.
"""

from __future__ import annotations

from typing import Any

from adam.errors import AdamError


class SharedStoreError(AdamError):
    """A shared model, its metadata or an Ollama model on disk is missing, corrupt or foreign."""


_LAZY = {
    "GgufExport": "adam.sharing.gguf_export",
    "export_gguf": "adam.sharing.gguf_export",
    "SharedModel": "adam.sharing.store",
    "SharedStore": "adam.sharing.store",
    "find_shared_gguf": "adam.sharing.store",
    "OllamaBlob": "adam.sharing.ollama_models",
    "find_ollama_gguf": "adam.sharing.ollama_models",
    "ollama_template": "adam.sharing.templates",
}

__all__ = ["SharedStoreError", *_LAZY]


def __getattr__(name: str) -> Any:
    """Import the public names on first use, so ``import adam.sharing`` stays cheap (no torch, no gguf)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
