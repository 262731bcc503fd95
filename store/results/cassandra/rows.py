"""How the Cassandra store's records become bound values and its rows become records."""

from __future__ import annotations

from typing import Any

import msgspec

from schemas.states import ItemStatus, JobStatus, Outcome
from store.results.base import IdempotencyRecord, ItemRecord, JobRecord

_METADATA = JobRecord.__struct_fields__.index("metadata")


def job_values(job: JobRecord) -> list[Any]:
    """The bound values of ``create_job`` before its TTL (metadata as JSON text)."""
    row = list(msgspec.structs.astuple(job))
    row[_METADATA] = msgspec.json.encode(job.metadata).decode() \
        if job.metadata is not None else None
    return row


def job_record(row: dict[str, Any]) -> JobRecord | None:
    """The record of a ``get_job`` row; None for a row whose insert expired or never
    happened (an UPDATE alone leaves a row without its tenant)."""
    if row.get("tenant") is None:
        return None
    fields = {name: row[name] for name in JobRecord.__struct_fields__}
    fields["metadata"] = msgspec.json.decode(row["metadata"]) if row["metadata"] else None
    fields["published"] = bool(row["published"])
    fields["status"] = JobStatus(fields["status"])
    fields["outcome"] = Outcome(fields["outcome"]) if fields["outcome"] else None
    return JobRecord(**fields)


def item_row(bucket: int, item: ItemRecord, ttl_s: int, absent: Any = None) -> tuple:
    """The ``insert_item`` values of one item: its bucket, its fields, its TTL; a field that
    is None binds ``absent``. An insert that replaces a row must bind None (null) so that
    nothing of the old row survives; a first insert binds the driver's UNSET_VALUE, which
    writes no cell at all, where a null would write a tombstone (three or four per item —
    a succeeded item has no error, a failed one no output — that every read of the
    partition scans until compaction drops them)."""
    values = msgspec.structs.astuple(item)
    if absent is not None:
        values = tuple(absent if v is None else v for v in values)
    return (bucket, *values, ttl_s)


def item_record(row: dict[str, Any]) -> ItemRecord:
    """The record of an items row; the status comes back an enum."""
    fields = dict(row)
    fields["index"] = fields.pop("idx")
    fields["status"] = ItemStatus(fields["status"])
    fields["error_retryable"] = bool(fields["error_retryable"])
    return ItemRecord(**fields)


def idempotency_record(row: dict[str, Any]) -> IdempotencyRecord:
    """The record of an idempotency row (its key column is ``idem_key``)."""
    return IdempotencyRecord(row["tenant"], row["idem_key"], row["request_hash"], row["job_id"],
                             row["created_at"], row["expires_at"])
