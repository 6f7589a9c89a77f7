"""The shared-model store: GGUF files both backends can use, keyed by a hash of their source.

Layout: ``<root>/<key>/model.gguf`` and ``<root>/<key>/metadata.json``, where ``key`` is the first
16 hex digits of the source hash plus the quantization (``3f2a...-f16``). Converting a model that is
already there does nothing; an entry whose metadata is corrupt or foreign is reported and skipped.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adam.backends.types import WeightsLocation
from adam.hashing import cached_file_sha256
from adam.paths import share_root
from adam.sharing import SharedStoreError
from adam.sharing.metadata import build_metadata, read_metadata, write_metadata

logger = logging.getLogger(__name__)

ENV_SHARE_DIR = "ADAM_SHARE_DIR"
GGUF_NAME = "model.gguf"
METADATA_NAME = "metadata.json"
HASH_CACHE_NAME = ".file-hashes.json"

# what identifies a transformers model directory: weights, configs and tokenizer files
_SOURCE_SUFFIXES = (".safetensors", ".json", ".jinja", ".txt", ".model", ".tiktoken")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_OLLAMA_BLOB = re.compile(r"^sha256-([0-9a-f]{64})$")


@dataclass(frozen=True)
class SharedModel:
    """One store entry: its validated metadata, its GGUF and the metadata file."""

    metadata: dict[str, Any]
    gguf_path: Path
    metadata_path: Path

    @property
    def key(self) -> str:
        """The entry's directory name."""
        return self.gguf_path.parent.name

    @property
    def architecture(self) -> str:
        """GGUF architecture, e.g. qwen3."""
        return str(self.metadata["architecture"])

    @property
    def ollama_model(self) -> str | None:
        """The Ollama name:tag this model is shared as, if any."""
        return self.metadata.get("ollama_model")

    @property
    def sha256(self) -> str:
        """The GGUF's sha256 as recorded when it was written (Ollama's blob digest)."""
        return next(f["sha256"] for f in self.metadata["files"] if f["role"] == "gguf")

    def ollama_template(self) -> tuple[str, dict[str, Any]]:
        """The Go template and stop parameters for ``ollama create`` from this GGUF."""
        from adam.sharing.templates import ollama_template

        return ollama_template(self.metadata.get("chat_template"), self.architecture)


def default_root() -> Path:
    """$ADAM_SHARE_DIR, else ``shared`` under adam's cache root."""
    return share_root()


class SharedStore:
    """GGUF files shared between the HuggingFace and Ollama backends, with their provenance."""

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_root()

    def __repr__(self) -> str:
        return f"SharedStore({str(self.root)!r})"

    def export(self, weights: WeightsLocation, *, dtype: str = "f16", ollama_model: str | None = None) -> SharedModel:
        """Put ``weights`` in the store as GGUF (HF converted once per source and dtype, GGUF linked); return it."""
        # A GGUF is shared as it is, dtype aside: an Ollama blob, or the file an HF directory was converted from.
        original = weights.extra.get("gguf") if weights.format == "hf" else None
        if original and Path(original).is_file():
            # an HF directory converted from a GGUF (the demo model): share that file itself, no conversion
            gguf_weights = WeightsLocation(
                path=str(original),
                format="gguf",
                model_id=weights.model_id,
                revision=weights.revision,
                extra={"source_backend": "huggingface", "sha256": weights.extra.get("sha256")},
            )
            return self._link_gguf(gguf_weights, ollama_model)
        if weights.format == "hf":
            return self._export_hf(weights, dtype, ollama_model)
        if weights.format == "gguf":
            return self._link_gguf(weights, ollama_model)
        raise SharedStoreError(
            f"cannot share weights of format {weights.format!r} from {weights.path}: expected hf or gguf"
        )

    def entries(self) -> list[SharedModel]:
        """Every readable entry; corrupt or incomplete ones are logged and skipped."""
        if not self.root.is_dir():
            return []
        found = []
        for entry_dir in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            try:
                found.append(self._load(entry_dir))
            except SharedStoreError as e:
                logger.warning("skipping shared model %s: %s", entry_dir.name, e)
        return found

    def find_by_ollama_model(self, name: str) -> SharedModel | None:
        """The newest entry shared as Ollama model ``name`` (``qwen3`` means ``qwen3:latest``), or None."""
        from adam.sharing.ollama_models import normalize_model_name

        wanted = normalize_model_name(name)
        matches = [
            entry for entry in self.entries() if entry.ollama_model and _same_ollama_name(entry.ollama_model, wanted)
        ]
        return max(matches, key=lambda e: e.metadata["created"], default=None)

    def get(self, key: str) -> SharedModel | None:
        """The entry with this key, None if absent; raises SharedStoreError if it is corrupt."""
        entry_dir = self.root / key
        return self._load(entry_dir) if (entry_dir / METADATA_NAME).exists() else None

    def source_hash(self, weights: WeightsLocation) -> str:
        """sha256 over the source's file names and contents (file hashes cached by size and mtime)."""
        path = Path(weights.path)
        if weights.format == "gguf":
            known = weights.extra.get("sha256")
            return known if isinstance(known, str) and _HEX64.match(known) else self._file_hash(path)
        lines = [f"{rel}\0{self._file_hash(path / rel)}\n" for rel in _source_files(path)]
        return hashlib.sha256("".join(lines).encode()).hexdigest()

    def _export_hf(self, weights: WeightsLocation, dtype: str, ollama_model: str | None) -> SharedModel:
        from adam.sharing.gguf_export import DTYPES, export_gguf
        from adam.sharing.gguf_vocab import read_chat_template

        if dtype not in DTYPES:
            from adam.errors import UnsupportedError

            raise UnsupportedError(f"unsupported GGUF dtype {dtype!r}: adam can export {', '.join(DTYPES)}")
        hf_dir = Path(weights.path)
        if not (hf_dir / "config.json").is_file():
            raise SharedStoreError(f"{hf_dir} is not a transformers model directory: config.json is missing")
        source_hash = self.source_hash(weights)
        entry_dir = self.root / f"{source_hash[:16]}-{dtype}"
        existing = self._reuse(entry_dir, ollama_model)
        if existing is not None:
            return existing
        logger.info("converting %s to GGUF %s for sharing (once per model and dtype)", hf_dir, dtype)
        result = export_gguf(hf_dir, entry_dir / GGUF_NAME, dtype=dtype, name=weights.model_id or hf_dir.name)
        files = [{"path": GGUF_NAME, "sha256": result.sha256, "size": result.size, "role": "gguf"}]
        for rel in _source_files(hf_dir):
            source = hf_dir / rel
            files.append(
                {
                    "path": str(source.absolute()),
                    "sha256": self._file_hash(source),
                    "size": source.stat().st_size,
                    "role": "hf",
                }
            )
        template = read_chat_template(hf_dir)
        doc = build_metadata(
            source_backend="huggingface",
            model_id=weights.model_id or str(hf_dir),
            revision=weights.revision,
            files=files,
            architecture=result.architecture,
            quantization=dtype,
            ollama_model=_normalized(ollama_model),
            source_hash=source_hash,
            chat_template=template if isinstance(template, str) else None,
        )
        write_metadata(entry_dir / METADATA_NAME, doc)
        return SharedModel(doc, entry_dir / GGUF_NAME, entry_dir / METADATA_NAME)

    def _link_gguf(self, weights: WeightsLocation, ollama_model: str | None) -> SharedModel:
        """Register an existing GGUF (e.g. an Ollama blob) by linking it into the store: no copy, no conversion."""
        source = Path(weights.path)
        if not source.is_file():
            raise SharedStoreError(f"cannot share {source}: no such GGUF file")
        info = _gguf_info(source)
        source_hash = self.source_hash(weights)
        entry_dir = self.root / f"{source_hash[:16]}-{info['quantization']}"
        existing = self._reuse(entry_dir, ollama_model)
        if existing is not None:
            return existing
        entry_dir.mkdir(parents=True, exist_ok=True)
        target = entry_dir / GGUF_NAME
        target.unlink(missing_ok=True)
        try:
            os.link(source, target)  # same file, no extra space; survives the source being removed
        except OSError:
            target.symlink_to(source.resolve())  # another file system: point at it instead
            logger.info("linked %s into the store with a symlink (different file system)", source)
        backend = weights.extra.get("source_backend") or (
            "ollama" if _OLLAMA_BLOB.match(source.name) else "huggingface"
        )
        doc = build_metadata(
            source_backend=backend,
            model_id=weights.model_id or str(source),
            revision=weights.revision,
            files=[{"path": GGUF_NAME, "sha256": source_hash, "size": source.stat().st_size, "role": "gguf"}],
            architecture=info["architecture"],
            quantization=info["quantization"],
            ollama_model=_normalized(ollama_model),
            source_hash=source_hash,
            chat_template=info["chat_template"],
        )
        write_metadata(entry_dir / METADATA_NAME, doc)
        return SharedModel(doc, target, entry_dir / METADATA_NAME)

    def _reuse(self, entry_dir: Path, ollama_model: str | None) -> SharedModel | None:
        """The complete entry already in ``entry_dir`` (recording a new Ollama name if given), else None."""
        if not (entry_dir / METADATA_NAME).exists():
            return None
        try:
            entry = self._load(entry_dir)
        except SharedStoreError as e:
            logger.warning("replacing broken shared model %s: %s", entry_dir.name, e)
            return None
        name = _normalized(ollama_model)
        if name and entry.ollama_model != name:
            doc = {**entry.metadata, "ollama_model": name}
            write_metadata(entry.metadata_path, doc)
            entry = SharedModel(doc, entry.gguf_path, entry.metadata_path)
        logger.info("reusing shared model %s", entry_dir)
        return entry

    def _load(self, entry_dir: Path) -> SharedModel:
        """Read and check one entry: valid metadata and a GGUF of the recorded size."""
        doc = read_metadata(entry_dir / METADATA_NAME)
        gguf_path = entry_dir / GGUF_NAME
        recorded = next((f for f in doc["files"] if f["role"] == "gguf"), None)
        if recorded is None:
            raise SharedStoreError(f"{entry_dir / METADATA_NAME} lists no GGUF file")
        if not gguf_path.is_file():
            raise SharedStoreError(f"{gguf_path} is missing")
        if gguf_path.stat().st_size != recorded["size"]:
            raise SharedStoreError(
                f"{gguf_path} has {gguf_path.stat().st_size} bytes, the metadata says {recorded['size']}"
            )
        return SharedModel(doc, gguf_path, entry_dir / METADATA_NAME)

    def _file_hash(self, path: Path) -> str:
        """A file's sha256: from its content-addressed name where it has one, else cached by (size, mtime)."""
        resolved = path.resolve()
        if _HEX64.match(resolved.name):  # Hugging Face hub blobs of LFS files are named by their sha256
            return resolved.name
        if match := _OLLAMA_BLOB.match(resolved.name):  # Ollama blobs too, verified when pulled
            return match.group(1)
        return cached_file_sha256(resolved, self.root / HASH_CACHE_NAME)


def find_shared_gguf(tag: str, root: Path | str | None = None) -> Path | None:
    """The GGUF shared as Ollama model ``tag`` in the store at ``root`` (default store if None), or None."""
    entry = SharedStore(root).find_by_ollama_model(tag)
    return entry.gguf_path if entry is not None else None


def _source_files(hf_dir: Path) -> list[str]:
    """The files that make up a transformers model directory, relative and sorted."""
    return sorted(
        p.name for p in hf_dir.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix in _SOURCE_SUFFIXES
    )


def _normalized(name: str | None) -> str | None:
    from adam.sharing.ollama_models import normalize_model_name

    return normalize_model_name(name) if name else None


def _same_ollama_name(recorded: str, wanted: str) -> bool:
    from adam.sharing.ollama_models import normalize_model_name

    try:
        return normalize_model_name(recorded).lower() == wanted.lower()
    except SharedStoreError:
        return False


def _gguf_info(path: Path) -> dict[str, Any]:
    """Architecture, quantization and chat template from a GGUF's header."""
    import gguf

    try:
        reader = gguf.GGUFReader(path)
    except Exception as e:  # gguf raises ValueError, struct.error, ... on anything not GGUF
        raise SharedStoreError(f"{path} is not a readable GGUF file: {e}") from e

    def field(key: str) -> Any:
        value = reader.fields.get(key)
        return value.contents() if value is not None else None

    file_type = field("general.file_type")
    if file_type is None:
        quantization = "unknown"
    elif file_type in {t.value for t in gguf.LlamaFileType}:
        quantization = gguf.LlamaFileType(file_type).name.removeprefix("MOSTLY_").removeprefix("ALL_").lower()
    else:
        quantization = f"type{file_type}"
    template = field("tokenizer.chat_template")
    return {
        "architecture": field("general.architecture") or "unknown",
        "quantization": quantization,
        "chat_template": template if isinstance(template, str) else None,
    }
