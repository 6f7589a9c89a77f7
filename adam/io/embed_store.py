"""An incremental embedding store in SQLite: embed only new or changed texts, batch by batch.

Vectors are keyed by model + sha256 of the text the model read, so a text seen before under any
id is never embedded again; records map (model, id) to a content hash plus metadata, the text itself
(unless job.store_text=false) and timestamps. Every batch is one transaction: a crash loses at most
the batch in flight. A store written by an older adam is migrated in place when it is opened.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from adam.errors import AdamError, ConfigError, RunStopped, StoreBusy

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2: records.text
BUSY_TIMEOUT_S = 30.0  # how long a statement waits for another process's write lock before the run stops
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS vectors (
    model TEXT NOT NULL, sha256 TEXT NOT NULL, dim INTEGER NOT NULL, vector BLOB NOT NULL, created TEXT NOT NULL,
    PRIMARY KEY (model, sha256)
);
CREATE TABLE IF NOT EXISTS records (
    model TEXT NOT NULL, id TEXT NOT NULL, sha256 TEXT NOT NULL, metadata TEXT,
    created TEXT NOT NULL, updated TEXT NOT NULL, text TEXT,
    PRIMARY KEY (model, id)
);
CREATE INDEX IF NOT EXISTS records_by_sha ON records (model, sha256);
"""


@dataclass
class StoredRecord:
    """One record as the store holds it."""

    id: str
    sha256: str
    metadata: str | None  # JSON text


class Hit(NamedTuple):
    """One search result: a stored record and its cosine similarity to the query."""

    id: str
    score: float
    metadata: str | None  # JSON text
    text: str | None  # None when the store keeps no text for it (job.store_text=false, or stored before it did)


class PruneRefused(Exception):
    """A prune would remove more records than it was allowed to; nothing was removed."""

    def __init__(self, doomed: int) -> None:
        super().__init__(f"the prune would remove {doomed} records")
        self.doomed = doomed


StoreRow = tuple[str, str, str | None] | tuple[str, str, str | None, str | None]  # id, sha256, metadata[, text]


def metadata_text(metadata: Any) -> str | None:
    """Metadata as canonical JSON text (sorted keys), so equal metadata compares equal."""
    if metadata is None:
        return None
    return json.dumps(metadata, ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":"))


def now() -> str:
    """A UTC timestamp for created/updated."""
    return datetime.now(UTC).isoformat(timespec="seconds")


class EmbeddingStore:
    """The SQLite store for one model; open it, use it, close it."""

    def __init__(self, path: str | Path, model: str) -> None:
        self.path = Path(path)
        self.model = model
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = _Connection(self.path)
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        self._migrate()

    def _migrate(self) -> None:
        """Bring a store from an older adam up to SCHEMA_VERSION in place, keeping every row."""
        if "text" in self._columns("records"):
            return
        with self._transaction():
            if "text" not in self._columns("records"):  # another process may have migrated it meanwhile
                self._db.execute("ALTER TABLE records ADD COLUMN text TEXT")
                self._db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
                log.info(
                    "migrated the embedding store %s to schema %d (records keep their text)", self.path, SCHEMA_VERSION
                )

    def _columns(self, table: str) -> set[str]:
        return {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def __enter__(self) -> EmbeddingStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ reads
    def records(self, ids: Sequence[str]) -> dict[str, StoredRecord]:
        """The stored records among ``ids``."""
        out: dict[str, StoredRecord] = {}
        for chunk in _chunks(list(ids), 500):
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT id, sha256, metadata FROM records WHERE model = ? AND id IN ({marks})", (self.model, *chunk)
            )
            out.update({row[0]: StoredRecord(*row) for row in rows})
        return out

    def vectors(self, shas: Iterable[str]) -> dict[str, np.ndarray]:
        """Stored vectors by content hash, for the hashes that have one."""
        out: dict[str, np.ndarray] = {}
        for chunk in _chunks(sorted(set(shas)), 500):
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT sha256, vector FROM vectors WHERE model = ? AND sha256 IN ({marks})", (self.model, *chunk)
            )
            out.update({sha: np.frombuffer(blob, dtype=np.float32) for sha, blob in rows})
        return out

    def width(self) -> int | None:
        """The width of this model's vectors (None before its first): fixed when the store got the model's first
        vectors (``fix_width``); a store from an older adam has the width of the vectors it holds. A ConfigError
        when the vectors disagree with it or among themselves."""
        rows = self._db.execute(
            "SELECT DISTINCT length(vector) / 4 FROM vectors WHERE model = ? ORDER BY 1", (self.model,)
        ).fetchall()
        widths = {int(r[0]) for r in rows}
        fixed = self._db.execute("SELECT value FROM meta WHERE key = ?", (_width_key(self.model),)).fetchone()
        if fixed is not None:
            widths.add(int(fixed[0]))
        if len(widths) > 1:
            raise ConfigError(
                f"the store {self.path} mixes vectors of widths {', '.join(map(str, sorted(widths)))} for model "
                f"{self.model}: rebuild it (delete it and run job=embed job.store=... again)"
            )
        return widths.pop() if widths else None

    def fix_width(self, width: int) -> None:
        """Fix this model's vector width in the store (the first width given stays: a store's width never changes)."""
        with self._transaction():
            self._db.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (_width_key(self.model), str(int(width))))

    def models(self) -> list[str]:
        """Every model this store holds records of (for a search with the wrong size to name the right ones)."""
        return [row[0] for row in self._db.execute("SELECT DISTINCT model FROM records ORDER BY model")]

    def count(self) -> int:
        """Records stored for this model."""
        return int(self._db.execute("SELECT COUNT(*) FROM records WHERE model = ?", (self.model,)).fetchone()[0])

    def all_vectors(self) -> tuple[list[str], list[str | None], np.ndarray]:
        """(ids, metadata texts, vectors as one float32 matrix) of every record of this model, by id."""
        rows = self._db.execute(
            "SELECT r.id, r.metadata, v.vector FROM records r JOIN vectors v"
            " ON v.model = r.model AND v.sha256 = r.sha256 WHERE r.model = ? ORDER BY r.id",
            (self.model,),
        ).fetchall()
        if not rows:
            return [], [], np.zeros((0, 0), dtype=np.float32)
        matrix = np.stack([np.frombuffer(blob, dtype=np.float32) for _, _, blob in rows])
        return [r[0] for r in rows], [r[1] for r in rows], matrix

    # ------------------------------------------------------------------ writes
    def commit_batch(self, new_vectors: dict[str, np.ndarray], records: Sequence[StoreRow]) -> None:
        """In one transaction: add vectors by hash, then upsert (id, sha256, metadata[, text]) records.

        ``updated`` follows the content and metadata only: filling in (or dropping) a record's text is not a change.
        """
        stamp = now()
        with self._transaction():
            self._db.executemany(
                "INSERT OR IGNORE INTO vectors VALUES (?, ?, ?, ?, ?)",
                [
                    (self.model, sha, int(v.shape[0]), np.asarray(v, dtype=np.float32).tobytes(), stamp)
                    for sha, v in new_vectors.items()
                ],
            )
            self._db.executemany(
                "INSERT INTO records (model, id, sha256, metadata, created, updated, text) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (model, id) DO UPDATE SET sha256 = excluded.sha256, metadata = excluded.metadata,"
                " text = excluded.text, updated = CASE WHEN " + _CHANGED + " THEN excluded.updated ELSE records.updated"
                " END WHERE " + _CHANGED + " OR records.text IS NOT excluded.text",
                [(self.model, row[0], row[1], row[2], stamp, stamp, (*row, None)[3]) for row in records],
            )

    def merge_from(self, other: str | Path) -> int:
        """Copy this model's vectors and records from another store (a shard's), in one transaction.

        Returns how many records it holds. A record both stores hold keeps the more recently updated one.
        """
        with EmbeddingStore(other, self.model) as source:  # brings it to this schema version first
            theirs, count = source.width(), source.count()
        mine = self.width()
        if theirs is not None and mine is not None and theirs != mine:
            raise ConfigError(f"the store {other} holds {theirs}-wide vectors, {self.path} {mine}-wide ones")
        self._db.execute("ATTACH DATABASE ? AS other", (str(other),))
        try:
            with self._transaction():
                self._db.execute(
                    "INSERT OR IGNORE INTO vectors (model, sha256, dim, vector, created)"
                    " SELECT model, sha256, dim, vector, created FROM other.vectors WHERE model = ?",
                    (self.model,),
                )
                self._db.execute(
                    "INSERT INTO records (model, id, sha256, metadata, created, updated, text)"
                    " SELECT model, id, sha256, metadata, created, updated, text FROM other.records WHERE model = ?"
                    " ON CONFLICT (model, id) DO UPDATE SET sha256 = excluded.sha256, metadata = excluded.metadata,"
                    " text = excluded.text, updated = excluded.updated WHERE excluded.updated > records.updated",
                    (self.model,),
                )
        finally:
            self._db.execute("DETACH DATABASE other")
        if theirs is not None:
            self.fix_width(theirs)
        return count

    def prune(self, keep: Iterable[str], *, at_most: int | None = None) -> int:
        """Remove this model's records whose id is not in ``keep`` and the vectors no record uses; returns the count.

        When more than ``at_most`` records would go, PruneRefused is raised and nothing is removed.
        """
        with self._transaction():
            self._db.execute("CREATE TEMP TABLE IF NOT EXISTS keep_ids (id TEXT PRIMARY KEY)")
            self._db.execute("DELETE FROM keep_ids")
            self._db.executemany("INSERT OR IGNORE INTO keep_ids VALUES (?)", ((i,) for i in keep))
            gone = "FROM records WHERE model = ? AND id NOT IN (SELECT id FROM keep_ids)"
            doomed = int(self._db.execute(f"SELECT COUNT(*) {gone}", (self.model,)).fetchone()[0])
            if at_most is not None and doomed > at_most:
                raise PruneRefused(doomed)  # the transaction rolls back: the store is as it was
            self._db.execute(f"DELETE {gone}", (self.model,))
            self._db.execute(
                "DELETE FROM vectors WHERE model = ? AND sha256 NOT IN (SELECT sha256 FROM records WHERE model = ?)",
                (self.model, self.model),
            )
            self._db.execute("DELETE FROM keep_ids")
        return doomed

    def _transaction(self) -> Any:
        db = self._db

        class _Tx:
            def __enter__(self) -> None:
                db.execute("BEGIN IMMEDIATE")

            def __exit__(self, exc_type: object, *rest: object) -> None:
                if exc_type is None:
                    db.execute("COMMIT")
                elif db.in_transaction:  # SQLite itself rolls back on some errors (a full disk): never mask them
                    with contextlib.suppress(AdamError):
                        db.execute("ROLLBACK")

        return _Tx()

    # ------------------------------------------------------------------ export and search
    def export_parquet(self, path: str | Path) -> int:
        """Write this model's records to Parquet (id, vector, metadata, sha256, updated); returns the row count.

        Rows stream from the database into row groups, so memory stays flat however big the store is.
        """
        from adam.io.writers import VectorParquetWriter

        cursor = self._db.execute(
            "SELECT r.id, v.vector, r.metadata, r.sha256, r.updated FROM records r JOIN vectors v"
            " ON v.model = r.model AND v.sha256 = r.sha256 WHERE r.model = ? ORDER BY r.id",
            (self.model,),
        )
        with VectorParquetWriter(Path(path), extra=("sha256", "updated")) as out:
            for id_, blob, metadata, sha256, updated in cursor:
                out.add(id_, np.frombuffer(blob, dtype=np.float32), metadata, sha256, updated)
        return out.rows

    def search(self, query: np.ndarray, top_k: int) -> list[Hit]:
        """The ``top_k`` stored records most similar to ``query`` (cosine), most similar first, with their text."""
        ids, metas, matrix = self.all_vectors()
        if not ids:
            return []
        q = np.asarray(query, dtype=np.float32)
        norms = np.linalg.norm(matrix, axis=1) * max(float(np.linalg.norm(q)), 1e-12)
        scores = (matrix @ q) / np.maximum(norms, 1e-12)
        order = np.argsort(-scores, kind="stable")[:top_k]
        texts = self.texts([ids[i] for i in order])  # only the hits' texts are read, not every record's
        return [Hit(ids[i], float(scores[i]), metas[i], texts.get(ids[i])) for i in order]

    def texts(self, ids: Sequence[str]) -> dict[str, str]:
        """The stored texts among ``ids`` (records stored without text are left out)."""
        out: dict[str, str] = {}
        for chunk in _chunks(list(ids), 500):
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT id, text FROM records WHERE model = ? AND text IS NOT NULL AND id IN ({marks})",
                (self.model, *chunk),
            )
            out.update(dict(rows))
        return out


_CHANGED = "(records.sha256 IS NOT excluded.sha256 OR records.metadata IS NOT excluded.metadata)"


def _width_key(model: str) -> str:
    return f"width:{model}"


class _Connection:
    """A SQLite connection whose failures become adam's one-line errors, so a run never ends in a traceback:
    "database is locked" past the busy timeout is StoreBusy and a full disk RunStopped (the run stops,
    resumable); a damaged or unopenable file is a ConfigError (exit 1). Every statement of the store goes
    through here."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with self._translated():
            self._db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)  # transactions explicit

    @property
    def in_transaction(self) -> bool:
        """Whether a transaction is open (SQLite ends one itself on some errors)."""
        return self._db.in_transaction

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.DatabaseError as err:
            translated = _store_error(self.path, err)
            if translated is err:
                raise
            raise translated from err

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        with self._translated():
            return self._db.execute(sql, params)

    def executemany(self, sql: str, rows: Iterable[Any]) -> sqlite3.Cursor:
        with self._translated():
            return self._db.executemany(sql, rows)

    def executescript(self, sql: str) -> sqlite3.Cursor:
        with self._translated():
            return self._db.executescript(sql)

    def close(self) -> None:
        self._db.close()


# SQLite's primary result codes (https://sqlite.org/rescode.html); an extended code keeps its primary in the low byte
_BUSY, _LOCKED, _READONLY, _IOERR, _CORRUPT, _FULL, _CANTOPEN, _NOTADB = 5, 6, 8, 10, 11, 13, 14, 26


def _store_error(path: Path, err: sqlite3.DatabaseError) -> Exception:
    """The adam error a SQLite failure on the store at ``path`` means; unknown ones are left as they are."""
    code = (getattr(err, "sqlite_errorcode", None) or 0) & 0xFF
    text = str(err)
    if code in (_BUSY, _LOCKED) or "locked" in text.lower() or "busy" in text.lower():
        return StoreBusy(f"the embedding store {path} stayed locked by another process for over {BUSY_TIMEOUT_S:g} s")
    if code == _FULL:
        return RunStopped(f"disk full writing the embedding store {path} ({text}): free some space")
    if code == _IOERR:
        return RunStopped(f"cannot write the embedding store {path} ({text}): check the disk it is on")
    if code in (_CORRUPT, _NOTADB):
        return ConfigError(
            f"the embedding store {path} is damaged ({text}): restore it from a backup, or move it away and run "
            "job=embed again to rebuild it"
        )
    if code in (_READONLY, _CANTOPEN):
        return ConfigError(f"cannot write the embedding store {path} ({text}): check the path and its permissions")
    return err


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
