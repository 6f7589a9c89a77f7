"""Find the GGUF of a model Ollama has already pulled, so transformers can load it without a download.

Ollama keeps ``manifests/<host>/<namespace>/<model>/<tag>`` (a Docker-style JSON manifest) and
``blobs/sha256-<hex>`` (content-addressed layers) under its models directory. The layer whose media
type is ``application/vnd.ollama.image.model`` is a plain GGUF file.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adam.errors import ModelNotFoundError
from adam.sharing import SharedStoreError

logger = logging.getLogger(__name__)

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"
SERVICE_MODELS_DIR = Path("/usr/share/ollama/.ollama/models")  # the Linux install script's service user

MODEL_MEDIA_TYPE = "application/vnd.ollama.image.model"
TEMPLATE_MEDIA_TYPE = "application/vnd.ollama.image.template"
PARAMS_MEDIA_TYPE = "application/vnd.ollama.image.params"
SYSTEM_MEDIA_TYPE = "application/vnd.ollama.image.system"
PROJECTOR_MEDIA_TYPE = "application/vnd.ollama.image.projector"

_DIGEST = re.compile(r"^sha256[:-]([0-9a-f]{64})$")
_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_HOST = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*(:[0-9]+)?$")


class OllamaModelNotFoundError(SharedStoreError, ModelNotFoundError):
    """The model is not (completely) on disk in Ollama's models directory."""


@dataclass(frozen=True)
class OllamaName:
    """A parsed Ollama model name: host/namespace/model:tag."""

    host: str
    namespace: str
    model: str
    tag: str

    def __str__(self) -> str:
        """The shortest spelling Ollama itself shows (``qwen3:8b``, ``user/model:tag``)."""
        if self.host == DEFAULT_HOST and self.namespace == DEFAULT_NAMESPACE:
            return f"{self.model}:{self.tag}"
        if self.host == DEFAULT_HOST:
            return f"{self.namespace}/{self.model}:{self.tag}"
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"

    @property
    def parts(self) -> tuple[str, str, str, str]:
        """The manifest path components under ``manifests/``."""
        return (self.host, self.namespace, self.model, self.tag)


@dataclass(frozen=True)
class OllamaBlob:
    """A pulled model's GGUF blob and the settings its manifest carries."""

    name: str  # normalized, e.g. qwen3:latest
    path: Path  # blobs/sha256-<hex>, a GGUF file
    digest: str  # the hex sha256 of the blob (its name, which Ollama verified when pulling)
    size: int
    manifest_path: Path
    template: str | None = None  # Ollama's Go chat template
    system: str | None = None
    params: dict[str, Any] = field(default_factory=dict)  # e.g. {"stop": [...], "temperature": 0.6}
    projector: Path | None = None  # vision projector GGUF, for multimodal models


def parse_model_name(name: str) -> OllamaName:
    """Split ``[host/][namespace/]model[:tag]`` into its parts, filling Ollama's defaults."""
    text = name.strip()
    path, tag = text, DEFAULT_TAG
    colon = text.rfind(":")
    if colon > text.rfind("/"):  # a colon before the last slash belongs to a host:port
        path, tag = text[:colon], text[colon + 1 :]
    parts = path.split("/")
    if len(parts) == 1:
        parts = [DEFAULT_HOST, DEFAULT_NAMESPACE, *parts]
    elif len(parts) == 2:
        parts = [DEFAULT_HOST, *parts]
    valid = len(parts) == 3 and _HOST.match(parts[0]) and all(_PART.match(p) for p in (*parts[1:], tag))
    if not valid:
        raise SharedStoreError(f"invalid Ollama model name {name!r}: expected [host/][namespace/]model[:tag]")
    return OllamaName(host=parts[0], namespace=parts[1], model=parts[2], tag=tag)


def normalize_model_name(name: str) -> str:
    """The canonical short spelling of an Ollama name (``qwen3`` -> ``qwen3:latest``)."""
    return str(parse_model_name(name))


def models_dirs(models_dir: Path | None = None) -> list[Path]:
    """Where Ollama keeps models: the argument, else $OLLAMA_MODELS, else the user's and the service's dirs."""
    if models_dir is not None:
        return [Path(models_dir).expanduser()]
    env = os.environ.get("OLLAMA_MODELS")
    if env:
        return [Path(env).expanduser()]
    return [Path.home() / ".ollama" / "models", SERVICE_MODELS_DIR]


def find_ollama_gguf(tag: str, models_dir: Path | None = None) -> OllamaBlob:
    """The GGUF blob of the pulled model ``tag``, with its template and parameters; raises if it is not on disk."""
    parsed = parse_model_name(tag)
    candidates = models_dirs(models_dir)
    existing = [d for d in candidates if d.is_dir()]
    if not existing:
        looked = ", ".join(str(d) for d in candidates)
        raise OllamaModelNotFoundError(
            f"no Ollama models directory (looked in {looked}); set OLLAMA_MODELS or run `ollama pull {parsed}`"
        )
    for root in existing:
        manifest = _find_case_insensitive(root / "manifests", parsed.parts)
        if manifest is not None:
            return _read_blob(root, manifest, parsed)
    raise OllamaModelNotFoundError(
        f"Ollama has no model {parsed} in {', '.join(str(d) for d in existing)}: run `ollama pull {parsed}` first"
    )


def _find_case_insensitive(base: Path, parts: tuple[str, ...]) -> Path | None:
    """``base/part/...`` matching each part exactly, else ignoring case (Ollama treats names case-insensitively)."""
    current = base
    for part in parts:
        exact = current / part
        if exact.exists():
            current = exact
            continue
        if not current.is_dir():
            return None
        matches = [child for child in current.iterdir() if child.name.lower() == part.lower()]
        if not matches:
            return None
        current = sorted(matches)[0]
    return current if current.is_file() else None


def _read_blob(root: Path, manifest_path: Path, name: OllamaName) -> OllamaBlob:
    """Resolve a manifest's layers to blob paths and read the small ones (template, params, system)."""
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        layers = manifest["layers"]
        if not isinstance(layers, list):
            raise TypeError("layers is not a list")
        by_type = {layer["mediaType"]: layer for layer in layers}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise SharedStoreError(f"Ollama manifest {manifest_path} is corrupt ({e}); run `ollama pull {name}`") from e
    model_layer = by_type.get(MODEL_MEDIA_TYPE)
    if model_layer is None:
        raise SharedStoreError(f"Ollama manifest {manifest_path} has no model layer ({MODEL_MEDIA_TYPE})")
    blob = _blob_path(root, model_layer, manifest_path)
    if not blob.is_file():
        raise OllamaModelNotFoundError(f"the model blob {blob} of {name} is missing; run `ollama pull {name}` again")
    with open(blob, "rb") as f:
        if f.read(4) != b"GGUF":
            raise SharedStoreError(f"the model blob {blob} of {name} is not a GGUF file")
    params: dict[str, Any] = {}
    params_text = _layer_text(root, by_type.get(PARAMS_MEDIA_TYPE), manifest_path)
    if params_text:
        try:
            loaded = json.loads(params_text)
            params = loaded if isinstance(loaded, dict) else {}
        except json.JSONDecodeError:
            logger.warning("ignoring unreadable parameters layer of %s", name)
    projector = by_type.get(PROJECTOR_MEDIA_TYPE)
    return OllamaBlob(
        name=str(name),
        path=blob,
        digest=blob.name.removeprefix("sha256-"),
        size=blob.stat().st_size,
        manifest_path=manifest_path,
        template=_layer_text(root, by_type.get(TEMPLATE_MEDIA_TYPE), manifest_path),
        system=_layer_text(root, by_type.get(SYSTEM_MEDIA_TYPE), manifest_path),
        params=params,
        projector=_blob_path(root, projector, manifest_path) if projector else None,
    )


def _blob_path(root: Path, layer: dict[str, Any], manifest_path: Path) -> Path:
    """``blobs/sha256-<hex>`` for a layer's ``sha256:<hex>`` digest."""
    match = _DIGEST.match(str(layer.get("digest", "")))
    if match is None:
        raise SharedStoreError(f"Ollama manifest {manifest_path} has a layer with a bad digest {layer.get('digest')!r}")
    return root / "blobs" / f"sha256-{match.group(1)}"


def _layer_text(root: Path, layer: dict[str, Any] | None, manifest_path: Path) -> str | None:
    """A small text layer's content, or None when the layer or its blob is absent."""
    if layer is None:
        return None
    path = _blob_path(root, layer, manifest_path)
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        logger.warning("cannot read layer %s of %s", path, manifest_path)
        return None
