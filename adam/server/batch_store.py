"""The Batch API's batch objects, one JSON file each under job.state_dir/batches/<id>/, written atomically.

The objects are OpenAI's: status, request_counts, the ``*_at`` timestamps, output and error file ids.
Each batch's run dir (``batches/<id>/run``) holds its results.jsonl and errors.jsonl. A batch object
that cannot be read back (cut short, written by hand, or holding text UTF-8 cannot carry) is skipped
with a warning when the store loads: one bad file never takes the listing down.
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

from adam.io.record_parser import text_problem
from adam.io.writers import write_json_atomic

log = logging.getLogger(__name__)

ACTIVE = ("validating", "in_progress", "finalizing", "cancelling")  # the worker still owes these an ending
STATUSES = (*ACTIVE, "completed", "failed", "expired", "cancelled")
_ID = re.compile(r"^batch_[0-9a-f]{32}$")
# what the server reads of a stored batch object, and the type it must have
_FIELDS: dict[str, type | tuple[type, ...]] = {
    "id": str,
    "endpoint": str,
    "input_file_id": str,
    "status": str,
    "created_at": int,
    "request_counts": dict,
    "adam_seq": int,
    "adam_deadline": (int, float),
}


class BatchStore:
    """Batch objects in memory, each change persisted before it is visible; thread-safe."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._batches: dict[str, dict[str, Any]] = {}
        for path in self.root.glob("batch_*/batch.json"):
            doc = _load(path)
            if doc is not None:
                self._batches[doc["id"]] = doc

    def create(
        self, *, input_file_id: str, endpoint: str, metadata: dict[str, str] | None, window_s: float
    ) -> dict[str, Any]:
        """A new batch, validating; returns a copy of its object."""
        now = int(time.time())
        batch_id = f"batch_{uuid.uuid4().hex}"
        doc: dict[str, Any] = {
            "id": batch_id,
            "object": "batch",
            "endpoint": endpoint,
            "errors": None,
            "input_file_id": input_file_id,
            "completion_window": "24h",
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": now,
            "in_progress_at": None,
            "expires_at": int(now + window_s),
            "finalizing_at": None,
            "completed_at": None,
            "failed_at": None,
            "expired_at": None,
            "cancelling_at": None,
            "cancelled_at": None,
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
            "metadata": metadata,
            "model": None,  # the served model that answers it, known once it is validated
            "adam_seq": time.time_ns(),  # creation order, finer than created_at's seconds
            "adam_deadline": time.time() + window_s,
        }
        with self._lock:
            self._save(doc)
            self._batches[batch_id] = doc
            return dict(doc)

    def get(self, batch_id: str) -> dict[str, Any] | None:
        """A copy of the batch object, or None."""
        with self._lock:
            doc = self._batches.get(batch_id) if _ID.match(batch_id) else None
            return json.loads(json.dumps(doc)) if doc is not None else None

    def update(self, batch_id: str, *, only_if: str | None = None, **fields: Any) -> dict[str, Any]:
        """Change fields of a batch (only while its status is ``only_if``, if given) and persist it; returns a copy."""
        with self._lock:
            doc = self._batches[batch_id]
            if only_if is not None and doc["status"] != only_if:  # a cancel got in first
                return json.loads(json.dumps(doc))  # type: ignore[no-any-return]
            doc = {**doc, **fields}
            self._save(doc)
            self._batches[batch_id] = doc
            return json.loads(json.dumps(doc))  # type: ignore[no-any-return]

    def cancel(self, batch_id: str) -> dict[str, Any] | None:
        """Ask a batch to stop: cancelling if it has not ended, else unchanged; None when there is none."""
        with self._lock:
            doc = self._batches.get(batch_id) if _ID.match(batch_id) else None
            if doc is None:
                return None
            if doc["status"] in ("validating", "in_progress"):
                doc = {**doc, "status": "cancelling", "cancelling_at": int(time.time())}
                self._save(doc)
                self._batches[batch_id] = doc
            return json.loads(json.dumps(doc))  # type: ignore[no-any-return]

    def in_order(self) -> list[dict[str, Any]]:
        """Copies of every batch, oldest first."""
        with self._lock:
            docs = sorted(self._batches.values(), key=lambda d: d["adam_seq"])
            return json.loads(json.dumps(docs))  # type: ignore[no-any-return]

    def next_active(self) -> dict[str, Any] | None:
        """The oldest batch the worker has not ended."""
        return next((d for d in self.in_order() if d["status"] in ACTIVE), None)

    def run_dir(self, batch_id: str) -> Path:
        """Where the batch's job writes results.jsonl and errors.jsonl."""
        return self.root / batch_id / "run"

    def _save(self, doc: dict[str, Any]) -> None:
        """Persist ``doc`` as UTF-8 JSON: text it cannot carry fails here, before anything is written."""
        write_json_atomic(self.root / doc["id"] / "batch.json", doc)


def public(doc: dict[str, Any]) -> dict[str, Any]:
    """The OpenAI batch object, without adam's own keys."""
    return {k: v for k, v in doc.items() if not k.startswith("adam_")}


def _load(path: Path) -> dict[str, Any] | None:
    """The batch object stored at ``path``, or None (with a warning) when it cannot be read back as one."""
    try:
        doc = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError) as err:  # unreadable, not UTF-8, not JSON
        problem: str | None = f"it cannot be read ({err})"
    else:
        problem = _problem(doc, path.parent.name)
    if problem is not None:
        log.warning("skipping the stored batch %s: %s", path, problem)
        return None
    return doc  # type: ignore[no-any-return]


def _problem(doc: Any, batch_id: str) -> str | None:
    """Why a stored batch object cannot be served, or None."""
    if not isinstance(doc, dict):
        return "it is not a JSON object"
    if doc.get("id") != batch_id:
        return f"its id is {doc.get('id')!r}, not its folder's name"
    wrong = [key for key, kind in _FIELDS.items() if not isinstance(doc.get(key), kind) or isinstance(doc[key], bool)]
    if wrong:
        return f"{', '.join(wrong)} missing or of the wrong type"
    if doc["status"] not in STATUSES:
        return f"unknown status {doc['status']!r}"
    return text_problem(doc)
