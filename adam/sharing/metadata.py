"""metadata.json of a shared model: validated against the JSON Schema when written and when read.

A file that is not JSON or does not match the schema is reported as a SharedStoreError, never trusted.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from adam.atomic import write_atomic
from adam.sharing import SharedStoreError

SCHEMA_VERSION = 1
SCHEMA_FILE = "shared_model.schema.json"

SourceBackend = Literal["huggingface", "ollama"]


@cache
def schema() -> dict[str, Any]:
    """The shared-model JSON Schema shipped in adam/sharing/schemas."""
    text = resources.files("adam.sharing").joinpath("schemas", SCHEMA_FILE).read_text(encoding="utf-8")
    return json.loads(text)


@cache
def _validator() -> Any:
    import jsonschema

    cls = jsonschema.validators.validator_for(schema())
    cls.check_schema(schema())
    return cls(schema())


def adam_version() -> str:
    """adam's version: ``adam.__version__``, else the installed distribution's, else 0+unknown."""
    import adam

    version = getattr(adam, "__version__", None)
    if isinstance(version, str) and version:
        return version
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    from adam.errors import DISTRIBUTION

    try:
        return dist_version(DISTRIBUTION)
    except PackageNotFoundError:
        return "0+unknown"


def utc_now() -> str:
    """The current time as ISO-8601 UTC with a Z suffix, to the second."""
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def build_metadata(
    *,
    source_backend: SourceBackend,
    model_id: str | None,
    revision: str | None,
    files: list[dict[str, Any]],
    architecture: str,
    quantization: str,
    ollama_model: str | None = None,
    source_hash: str | None = None,
    chat_template: str | None = None,
) -> dict[str, Any]:
    """A complete metadata document, stamped with the schema version, the time and adam's version."""
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "source_backend": source_backend,
        "model_id": model_id,
        "revision": revision,
        "files": files,
        "architecture": architecture,
        "quantization": quantization,
        "ollama_model": ollama_model,
        "created": utc_now(),
        "adam_version": adam_version(),
    }
    if source_hash is not None:
        doc["source_hash"] = source_hash
    if chat_template is not None:
        doc["chat_template"] = chat_template
    return doc


def validate_metadata(doc: Any, *, source: str | Path = "metadata") -> None:
    """Raise SharedStoreError naming ``source`` and the first problem if ``doc`` breaks the schema."""
    error = next(iter(sorted(_validator().iter_errors(doc), key=lambda e: list(e.path))), None)
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "top level"
        raise SharedStoreError(f"{source} is not an adam shared-model file: {error.message} (at {where})")


def write_metadata(path: Path, doc: dict[str, Any]) -> Path:
    """Validate ``doc`` and write it to ``path`` atomically (temp file + rename)."""
    path = Path(path)
    validate_metadata(doc, source=path)
    write_atomic(path, json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    return path


def read_metadata(path: Path) -> dict[str, Any]:
    """Read and validate a metadata file; a missing, corrupt or foreign file raises SharedStoreError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise SharedStoreError(f"{path} does not exist") from e
    except (OSError, UnicodeDecodeError) as e:
        raise SharedStoreError(f"{path} cannot be read: {e}") from e
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise SharedStoreError(f"{path} is corrupt: not valid JSON ({e.msg} at line {e.lineno})") from e
    validate_metadata(doc, source=path)
    return doc
