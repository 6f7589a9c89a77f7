"""The Batch API's uploaded files, kept under job.state_dir/files across restarts.

Each file is ``<id>.jsonl`` (the bytes as uploaded) beside ``<id>.json`` (its OpenAI file object).
Ids are generated here: no path ever comes from request data. A file object that cannot be read
back (written by hand, or cut short) is skipped with a warning, never a listing's 500.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from adam.atomic import write_atomic
from adam.io.record_parser import text_problem
from adam.io.writers import write_json_atomic

log = logging.getLogger(__name__)

PURPOSES = ("batch", "batch_output")
_ID = re.compile(r"^file-[0-9a-f]{32}$")
_FIELDS = {"id": str, "object": str, "bytes": int, "created_at": int, "filename": str, "purpose": str}


class FileStore:
    """Uploaded and produced files: create, read, list, delete; thread-safe, persisted as it goes."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._warned: set[str] = set()

    def create(self, data: bytes, *, filename: str, purpose: str) -> dict[str, Any]:
        """Store ``data`` under a new id; returns its file object. On a full disk it raises and keeps nothing."""
        file_id = f"file-{uuid.uuid4().hex}"
        meta: dict[str, Any] = {
            "id": file_id,
            "object": "file",
            "bytes": len(data),
            "created_at": int(time.time()),
            "filename": Path(filename).name or "upload.jsonl",  # shown back, never used as a path
            "purpose": purpose,
            "status": "processed",
            "status_details": None,
        }
        with self._lock:
            write_atomic(self._data(file_id), data)
            try:
                write_json_atomic(self._meta(file_id), meta)  # UTF-8: what it cannot carry fails here
            except BaseException:
                self._data(file_id).unlink(missing_ok=True)  # no bytes without their file object
                raise
        return meta

    def adopt(self, file_id: str, path: Path, *, filename: str, purpose: str = "batch_output") -> dict[str, Any]:
        """Register a file written elsewhere (a batch's results) under ``file_id``; its bytes are read when asked."""
        meta = {
            "id": file_id,
            "object": "file",
            "bytes": path.stat().st_size if path.exists() else 0,
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
            "status_details": None,
            "adam_path": str(path),
        }
        with self._lock:
            write_json_atomic(self._meta(file_id), meta)  # UTF-8: what it cannot carry fails here
        return meta

    def get(self, file_id: str) -> dict[str, Any] | None:
        """The file object, or None when there is no such file."""
        if not _ID.match(file_id):
            return None
        path = self._meta(file_id)
        try:
            meta = json.loads(path.read_bytes().decode("utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:  # not UTF-8 or not JSON
            return self._unreadable(path, f"it cannot be read ({err})")
        problem = _meta_problem(meta, file_id)
        return meta if problem is None else self._unreadable(path, problem)  # type: ignore[no-any-return]

    def path(self, file_id: str) -> Path | None:
        """Where the file's bytes are, or None."""
        meta = self.get(file_id)
        if meta is None:
            return None
        return Path(meta["adam_path"]) if "adam_path" in meta else self._data(file_id)

    def content(self, file_id: str) -> bytes | None:
        """The file's bytes, or None."""
        path = self.path(file_id)
        if path is None:
            return None
        return path.read_bytes() if path.exists() else b""

    def delete(self, file_id: str) -> bool:
        """Remove a file; False when there was none."""
        with self._lock:
            if self.get(file_id) is None:
                return False
            self._data(file_id).unlink(missing_ok=True)
            self._meta(file_id).unlink(missing_ok=True)
        return True

    def list(self, purpose: str | None = None) -> list[dict[str, Any]]:
        """Every file object, newest first."""
        files = [self.get(p.stem) for p in self.root.glob("file-*.json")]
        found = [f for f in files if f is not None and (purpose is None or f["purpose"] == purpose)]
        return sorted(found, key=lambda f: (f["created_at"], f["id"]), reverse=True)

    def _unreadable(self, path: Path, why: str) -> None:
        if path.name not in self._warned:  # once per file: listings read every file object
            self._warned.add(path.name)
            log.warning("skipping the stored file object %s: %s", path, why)

    def _data(self, file_id: str) -> Path:
        return self.root / f"{file_id}.jsonl"

    def _meta(self, file_id: str) -> Path:
        return self.root / f"{file_id}.json"


def _meta_problem(meta: Any, file_id: str) -> str | None:
    """Why a stored file object cannot be served as one, or None."""
    if not isinstance(meta, dict):
        return "it is not a JSON object"
    if meta.get("id") != file_id:
        return f"its id is {meta.get('id')!r}, not {file_id!r}"
    wrong = [key for key, kind in _FIELDS.items() if not isinstance(meta.get(key), kind)]
    if wrong:
        return f"{', '.join(wrong)} missing or of the wrong type"
    return text_problem(meta)
