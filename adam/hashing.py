"""sha256 of files, and an on-disk memory of them so a large file is hashed once."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from adam.atomic import write_atomic

log = logging.getLogger(__name__)

_CHUNK = 1 << 22


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def cached_file_sha256(path: Path, index: Path) -> str:
    """The hex sha256 of ``path``, remembered in the JSON file ``index`` by (resolved path, size, mtime)."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    try:
        known = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    entry = known.get(str(resolved))
    if isinstance(entry, dict) and entry.get("size") == stat.st_size and entry.get("mtime_ns") == stat.st_mtime_ns:
        return str(entry["sha256"])
    sha = file_sha256(resolved)
    known[str(resolved)] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha}
    try:
        write_atomic(index, json.dumps(known), durable=False)
    except OSError as err:  # the memory only saves time; a read-only cache means hashing again next time
        log.debug("cannot remember the hash of %s in %s: %s", path, index, err)
    return sha
