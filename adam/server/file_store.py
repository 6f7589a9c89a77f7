"""The Batch API's uploaded files, kept under job.state_dir/files across restarts.

Each file is ``<id>.jsonl`` (the bytes as uploaded) beside ``<id>.json`` (its OpenAI file object and
the problems validation found). Ids are generated here: no path ever comes from request data.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adam.atomic import write_atomic
from adam.io.record_parser import URLS, Kind, RecordParser
from adam.io.records import InvalidRecord, Record

PURPOSES = ("batch", "batch_output")
MAX_REPORTED = 100  # validation problems kept per file; the count says how many there were
_ID = re.compile(r"^file-[0-9a-f]{32}$")


@dataclass
class Validation:
    """What line-by-line validation found in an uploaded batch file."""

    kind: Kind | None  # generate or embed, from the first line's url
    lines: int  # request lines (blank lines are not counted)
    problems: list[dict[str, Any]]  # {"code", "line", "message", "param"} as a batch's errors.data lists them
    problem_count: int


def validate_batch(data: bytes, kind: Kind | None = None) -> Validation:
    """Validate a Batch input file line by line, as a ``kind`` job (else the first url's) reads it."""
    kind = kind or _kind_of(data)
    parser = RecordParser(kind or "generate")
    problems: list[dict[str, Any]] = []
    count = lines = 0
    for number, raw in enumerate(data.splitlines(), start=1):
        item = parser.from_json_line(number, raw.rstrip(b"\r"))
        if item is None:
            continue
        lines += 1
        message = None
        if isinstance(item, InvalidRecord):
            message = item.message
        elif isinstance(item, Record) and item.format != "openai":
            message = "not an OpenAI batch request line: each line needs custom_id, method, url and body"
        if message is not None:
            count += 1
            if len(problems) < MAX_REPORTED:
                problems.append({"code": "invalid_request", "line": number, "message": message, "param": None})
    if lines == 0:
        count += 1
        problems.append({"code": "empty_file", "line": None, "message": "the file has no request lines", "param": None})
    return Validation(kind, lines, problems, count)


def _kind_of(data: bytes) -> Kind | None:
    """The job a file's first request line asks for, by its url."""
    for raw in data.splitlines():
        if not raw.strip():
            continue
        try:
            url = json.loads(raw).get("url")
        except (ValueError, AttributeError):
            return None
        return next((k for k, urls in URLS.items() if url in urls), None)
    return None


class FileStore:
    """Uploaded and produced files: create, read, list, delete; thread-safe, persisted as it goes."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def create(
        self, data: bytes, *, filename: str, purpose: str, validation: Validation | None = None
    ) -> dict[str, Any]:
        """Store ``data`` under a new id; returns its file object."""
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
        if validation is not None:
            meta["adam_validation"] = {
                "kind": validation.kind,
                "lines": validation.lines,
                "problems": validation.problems,
                "problem_count": validation.problem_count,
            }
        with self._lock:
            write_atomic(self._data(file_id), data)
            write_atomic(self._meta(file_id), json.dumps(meta))
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
            write_atomic(self._meta(file_id), json.dumps(meta))
        return meta

    def get(self, file_id: str) -> dict[str, Any] | None:
        """The file object, or None when there is no such file."""
        if not _ID.match(file_id):
            return None
        try:
            return json.loads(self._meta(file_id).read_text("utf-8"))  # type: ignore[no-any-return]
        except FileNotFoundError:
            return None

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

    def _data(self, file_id: str) -> Path:
        return self.root / f"{file_id}.jsonl"

    def _meta(self, file_id: str) -> Path:
        return self.root / f"{file_id}.json"
