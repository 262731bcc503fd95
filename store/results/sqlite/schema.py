"""The SQLite store's tables, and how records become rows and rows records."""

from __future__ import annotations

import sqlite3
from typing import Any

import msgspec

from schemas.states import TERMINAL_JOB, ItemStatus, JobStatus, Outcome
from store.results.base import IdempotencyRecord, ItemRecord, JobRecord

# Items are a rowid table, not WITHOUT ROWID: a row carries a ~1.5-8 KB embedding,
# and SQLite advises WITHOUT ROWID only for rows well under a twentieth of a page.
# Small columns come first so counting statuses never reads the output's overflow pages.
SCHEMA = """
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY, tenant TEXT NOT NULL, model TEXT NOT NULL,
    model_version INTEGER NOT NULL, priority TEXT NOT NULL, total INTEGER NOT NULL,
    chunks INTEGER NOT NULL, created_at REAL NOT NULL, expires_at REAL NOT NULL,
    deadline REAL, metadata TEXT, idempotency_key TEXT, request_hash TEXT,
    published INTEGER NOT NULL DEFAULT 0, status TEXT NOT NULL, outcome TEXT,
    started_at REAL, finished_at REAL, error_code TEXT, error_message TEXT,
    parent_job_id TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_tenant ON jobs (tenant, created_at, job_id);
CREATE INDEX IF NOT EXISTS jobs_by_expiry ON jobs (expires_at);
CREATE INDEX IF NOT EXISTS jobs_unpublished ON jobs (created_at) WHERE published = 0;
CREATE TABLE IF NOT EXISTS items (
    job_id TEXT NOT NULL, idx INTEGER NOT NULL, status TEXT NOT NULL,
    model_version INTEGER NOT NULL, client_id TEXT, error_code TEXT, error_message TEXT,
    error_retryable INTEGER NOT NULL DEFAULT 0, finished_at REAL NOT NULL, output BLOB,
    PRIMARY KEY (job_id, idx)
);
CREATE TABLE IF NOT EXISTS idempotency (
    tenant TEXT NOT NULL, key TEXT NOT NULL, request_hash TEXT NOT NULL,
    job_id TEXT NOT NULL, created_at REAL NOT NULL, expires_at REAL NOT NULL,
    PRIMARY KEY (tenant, key)
);
CREATE INDEX IF NOT EXISTS idempotency_by_expiry ON idempotency (expires_at);
COMMIT;
"""
"""The whole schema, in one transaction; every statement is IF NOT EXISTS (safe to rerun)."""

ADDED_COLUMNS = (("jobs", "parent_job_id", "TEXT"),)
"""Columns added after a table was first created: ``migrate_schema`` adds each one that a
database made by an older version lacks (SQLite has no ``ADD COLUMN IF NOT EXISTS``)."""



def migrate_schema(conn: sqlite3.Connection) -> None:
    """Create the schema, then add the ``ADDED_COLUMNS`` an older database lacks. Two
    processes migrating at once may both try to add a column: the loser's duplicate is fine."""
    conn.executescript(SCHEMA)
    for table, column, kind in ADDED_COLUMNS:
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if column in present:
            continue
        try:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        except sqlite3.OperationalError as exc:
            if "duplicate column" not in str(exc):
                raise


JOB_COLS = ", ".join(JobRecord.__struct_fields__)
"""The jobs table's columns, in the order of :class:`JobRecord`'s fields."""
ITEM_COLS = ("job_id, idx, status, model_version, client_id, output, error_code, "
             "error_message, error_retryable, finished_at")
"""The items table's columns, in the order of :class:`ItemRecord`'s fields."""
IDEM_COLS = "tenant, key, request_hash, job_id, created_at, expires_at"
"""The idempotency table's columns, in the order of :class:`IdempotencyRecord`'s fields."""

TERMINAL_SQL = "(" + ", ".join(f"'{s}'" for s in sorted(TERMINAL_JOB)) + ")"
"""``schemas.states.TERMINAL_JOB`` as an SQL list, for ``status IN ...``."""

_METADATA = JobRecord.__struct_fields__.index("metadata")


def job_row(job: JobRecord) -> list[Any]:
    """The jobs row of a record (metadata as JSON text)."""
    row = list(msgspec.structs.astuple(job))
    row[_METADATA] = msgspec.json.encode(job.metadata).decode() \
        if job.metadata is not None else None
    return row


def job_record(row: tuple[Any, ...]) -> JobRecord:
    """The record of a jobs row selected as ``JOB_COLS``; states come back as enums."""
    fields = dict(zip(JobRecord.__struct_fields__, row, strict=True))
    metadata = fields["metadata"]
    fields["metadata"] = msgspec.json.decode(metadata) if metadata is not None else None
    fields["published"] = bool(fields["published"])
    fields["status"] = JobStatus(fields["status"])
    fields["outcome"] = Outcome(fields["outcome"]) if fields["outcome"] else None
    return JobRecord(**fields)


def item_record(row: tuple[Any, ...]) -> ItemRecord:
    """The record of an items row selected as ``ITEM_COLS``; the status comes back an enum."""
    fields = list(row)
    fields[2] = ItemStatus(fields[2])
    fields[8] = bool(fields[8])
    return ItemRecord(*fields)


def idempotency_record(row: tuple[Any, ...]) -> IdempotencyRecord:
    """The record of an idempotency row selected as ``IDEM_COLS``."""
    return IdempotencyRecord(*row)
