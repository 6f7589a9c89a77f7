"""job.shard=i job.num_shards=n: the records of one input that shard i runs, the same on every machine.

A record belongs to the shard its id hashes to: the sha256 of the id's JSON text (``"a"`` for the
string id a, ``7`` for the number 7), read as a big-endian integer, modulo n. That depends neither on
the order of the records nor on Python's hash seed, so n workers started anywhere split the input
into n disjoint parts that cover it. A line without a usable id (invalid JSON, say) goes by its line
number modulo n instead, so its error line is written by exactly one shard. Chunked embedding shards
the documents before they are cut, so a document's chunks stay together.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator

from adam.io.records import InvalidRecord, Record


def shard_of_id(record_id: str | int, num_shards: int) -> int:
    """The shard a record id belongs to: sha256 of its JSON text, modulo ``num_shards``."""
    text = json.dumps(record_id, ensure_ascii=False, separators=(",", ":"))
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest, "big") % num_shards


def shard_of(record: Record | InvalidRecord, num_shards: int) -> int:
    """The shard a record (or a rejected line) belongs to: by its id, else by its line number."""
    if isinstance(record.id, str | int) and not isinstance(record.id, bool):
        return shard_of_id(record.id, num_shards)
    return record.line % num_shards


def shard_records(
    records: Iterable[Record | InvalidRecord], shard: int, num_shards: int
) -> Iterator[Record | InvalidRecord]:
    """The records of shard ``shard`` out of ``num_shards`` (all of them when there is one shard)."""
    if num_shards <= 1:
        yield from records
        return
    for record in records:
        if shard_of(record, num_shards) == shard:
            yield record


def job_shard(job: object) -> tuple[int, int]:
    """(job.shard, job.num_shards) of a job config node; (0, 1) for a job that is not sharded."""
    get = getattr(job, "get", None)
    if get is None:
        return 0, 1
    return int(get("shard") or 0), int(get("num_shards") or 1)
