"""The SQLite result store's queries: one short statement or transaction per method."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from schemas.states import ItemStatus, JobStatus, Outcome
from store.results.base import (
    IdempotencyRecord,
    ItemRecord,
    JobRecord,
    ResultStore,
    StoreError,
    StoreUnavailable,
    check_items,
    check_limit,
    check_terminal_job,
    decode_cursor,
    encode_cursor,
)
from store.results.sqlite.connections import ConnectionPool, probe_write_lock, write_transaction
from store.results.sqlite.schema import (
    IDEM_COLS,
    ITEM_COLS,
    JOB_COLS,
    TERMINAL_SQL,
    idempotency_record,
    item_record,
    job_record,
    job_row,
    migrate_schema,
)

T = TypeVar("T")

PURGE_CHUNK = 1000
"""Rows deleted per purge transaction: long enough to be efficient, short enough that a runner
waiting on the write lock notices no stall."""

PING_WRITE_WAIT_S = 0.25
"""How long ``ping`` waits for the write lock; a healthy writer holds it for milliseconds."""


class SqliteResultStore(ResultStore):
    """Result store on one SQLite file; safe to share between processes.

    ``auto_migrate`` creates the schema on the first connection (cheap and idempotent),
    so ``inferq dev`` needs no separate migration step.
    """

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 5.0, pool_size: int = 4,
                 auto_migrate: bool = True) -> None:
        if str(path) in ("", ":memory:"):
            raise ValueError("an in-memory SQLite database cannot be shared; give a file path")
        self.path = str(path)
        self._pool = ConnectionPool(self.path, busy_timeout_s=busy_timeout_s, size=pool_size,
                                    auto_migrate=auto_migrate)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._pool.run(fn, *args)

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._pool.write(fn, *args)

    async def migrate(self) -> None:
        """Run the schema script (every statement IF NOT EXISTS) and add missing columns."""
        await self._write(migrate_schema)

    async def ping(self) -> None:
        """Answers a read, and would take a write within ``PING_WRITE_WAIT_S``: another
        connection holding the write lock longer (a long transaction, a backup, a sqlite3
        shell) makes every submission wait out the busy timeout and fail, so the store is
        reported unavailable rather than ready."""
        def run(conn: sqlite3.Connection) -> None:
            conn.execute("SELECT 1 FROM jobs LIMIT 1").fetchone()
            probe_write_lock(conn, PING_WRITE_WAIT_S, self._pool.busy_timeout_s)

        try:
            await self._run(run)
        except StoreUnavailable:
            raise
        except StoreError as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def close(self) -> None:
        """Close the pooled connections; later calls raise StoreError."""
        self._pool.close()

    # Jobs

    async def create_job(self, job: JobRecord) -> None:
        """One INSERT that does nothing if the job_id exists."""
        row = job_row(job)
        sql = (f"INSERT INTO jobs ({JOB_COLS}) VALUES ({', '.join('?' * len(row))}) "
               "ON CONFLICT (job_id) DO NOTHING")
        await self._write(lambda conn: conn.execute(sql, row))

    async def get_job(self, job_id: str) -> JobRecord | None:
        """One primary-key read."""
        def run(conn: sqlite3.Connection) -> JobRecord | None:
            row = conn.execute(f"SELECT {JOB_COLS} FROM jobs WHERE job_id = ?",
                               (job_id,)).fetchone()
            return job_record(row) if row else None
        return await self._run(run)

    async def list_jobs(self, tenant: str, *, cursor: str | None,
                        limit: int) -> tuple[list[JobRecord], str | None]:
        """Keyset pagination on (created_at, job_id); the cursor holds the last row's pair."""
        check_limit(limit)
        after = decode_cursor(cursor, (float, str))

        def run(conn: sqlite3.Connection) -> list[JobRecord]:
            where, args = "tenant = ?", [tenant]
            if after is not None:
                where, args = where + " AND (created_at, job_id) < (?, ?)", [tenant, *after]
            rows = conn.execute(f"SELECT {JOB_COLS} FROM jobs WHERE {where} "
                                "ORDER BY created_at DESC, job_id DESC LIMIT ?",
                                (*args, limit + 1)).fetchall()
            return [job_record(r) for r in rows]
        jobs = await self._run(run)
        if len(jobs) <= limit:
            return jobs, None
        last = jobs[limit - 1]
        return jobs[:limit], encode_cursor([last.created_at, last.job_id])

    async def mark_published(self, job_id: str) -> None:
        """One UPDATE of the published flag."""
        await self._write(lambda conn: conn.execute(
            "UPDATE jobs SET published = 1 WHERE job_id = ? AND published = 0", (job_id,)))

    async def unpublished_jobs(self, older_than: float, limit: int = 100) -> list[JobRecord]:
        """A read of the partial index over unpublished jobs."""
        def run(conn: sqlite3.Connection) -> list[JobRecord]:
            rows = conn.execute(
                f"SELECT {JOB_COLS} FROM jobs WHERE published = 0 AND created_at < ? "
                f"AND status NOT IN {TERMINAL_SQL} ORDER BY created_at LIMIT ?",
                (older_than, limit)).fetchall()
            return [job_record(r) for r in rows]
        return await self._run(run)

    async def mark_started(self, job_id: str, started_at: float) -> None:
        """One conditional UPDATE: only a queued job that never started moves."""
        await self._write(lambda conn: conn.execute(
            "UPDATE jobs SET started_at = ?, status = ? "
            "WHERE job_id = ? AND started_at IS NULL AND status = ?",
            (started_at, JobStatus.RUNNING.value, job_id, JobStatus.QUEUED.value)))

    async def finish_job(self, job_id: str, *, status: JobStatus, outcome: Outcome | None,
                         finished_at: float, error_code: str | None = None,
                         error_message: str | None = None) -> bool:
        """One conditional UPDATE: of racing finishers, the first to commit wins."""
        check_terminal_job(status)
        cur = await self._write(lambda conn: conn.execute(
            "UPDATE jobs SET status = ?, outcome = ?, finished_at = ?, error_code = ?, "
            f"error_message = ? WHERE job_id = ? AND status NOT IN {TERMINAL_SQL}",
            (status, outcome, finished_at, error_code, error_message, job_id)))
        return cur.rowcount > 0

    async def correct_job_end(self, job_id: str, *, expected_error_code: str,
                              status: JobStatus, outcome: Outcome | None, finished_at: float,
                              error_code: str | None = None,
                              error_message: str | None = None) -> bool:
        """One UPDATE conditional on the terminal job's error code."""
        check_terminal_job(status)
        cur = await self._write(lambda conn: conn.execute(
            "UPDATE jobs SET status = ?, outcome = ?, finished_at = ?, error_code = ?, "
            f"error_message = ? WHERE job_id = ? AND status IN {TERMINAL_SQL} AND error_code = ?",
            (status, outcome, finished_at, error_code, error_message, job_id,
             expected_error_code)))
        return cur.rowcount > 0

    # Items

    async def upsert_items(self, items: list[ItemRecord]) -> None:
        """One transaction of INSERTs that do nothing where a row exists."""
        check_items(items)
        rows = [msgspec.structs.astuple(i) for i in items]
        sql = (f"INSERT INTO items ({ITEM_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
               "ON CONFLICT (job_id, idx) DO NOTHING")

        def run(conn: sqlite3.Connection) -> None:
            with write_transaction(conn):
                conn.executemany(sql, rows)
        if rows:
            await self._write(run)

    async def replace_items(self, items: list[ItemRecord]) -> None:
        """One transaction of INSERT OR REPLACE."""
        check_items(items)
        rows = [msgspec.structs.astuple(i) for i in items]
        sql = f"INSERT OR REPLACE INTO items ({ITEM_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"

        def run(conn: sqlite3.Connection) -> None:
            with write_transaction(conn):
                conn.executemany(sql, rows)
        if rows:
            await self._write(run)

    async def item_counts(self, job_id: str) -> tuple[int, int]:
        """One GROUP BY over the job's rows (small columns only)."""
        rows = await self._run(lambda conn: conn.execute(
            "SELECT status, count(*) FROM items WHERE job_id = ? GROUP BY status",
            (job_id,)).fetchall())
        counts = dict(rows)
        return counts.get(ItemStatus.SUCCEEDED, 0), counts.get(ItemStatus.FAILED, 0)

    async def done_indexes(self, job_id: str) -> list[tuple[int, ItemStatus]]:
        """One read of (idx, status) in primary-key order."""
        rows = await self._run(lambda conn: conn.execute(
            "SELECT idx, status FROM items WHERE job_id = ? ORDER BY idx", (job_id,)).fetchall())
        return [(index, ItemStatus(status)) for index, status in rows]

    async def get_items(self, job_id: str, *, status: ItemStatus | None, after_index: int,
                        limit: int) -> list[ItemRecord]:
        """One range read on the primary key, filtered by status if given."""
        check_limit(limit)
        where, args = "job_id = ? AND idx > ?", [job_id, after_index]
        if status is not None:
            where, args = where + " AND status = ?", [*args, status]
        rows = await self._run(lambda conn: conn.execute(
            f"SELECT {ITEM_COLS} FROM items WHERE {where} ORDER BY idx LIMIT ?",
            (*args, limit)).fetchall())
        return [item_record(r) for r in rows]

    # Idempotency

    async def claim_idempotency(self, rec: IdempotencyRecord,
                                now: float) -> tuple[IdempotencyRecord, bool]:
        """One upsert that replaces only an expired row, in a write transaction."""
        # One statement decides: insert, or replace a row whose expires_at has passed.
        # RETURNING yields a row only when this call wrote one.
        claim = (f"INSERT INTO idempotency ({IDEM_COLS}) VALUES (?, ?, ?, ?, ?, ?) "
                 "ON CONFLICT (tenant, key) DO UPDATE SET request_hash = excluded.request_hash, "
                 "job_id = excluded.job_id, created_at = excluded.created_at, "
                 "expires_at = excluded.expires_at WHERE idempotency.expires_at <= ? "
                 f"RETURNING {IDEM_COLS}")

        def run(conn: sqlite3.Connection) -> tuple[IdempotencyRecord, bool]:
            with write_transaction(conn):
                row = conn.execute(claim, (*msgspec.structs.astuple(rec), now)).fetchone()
                if row is not None:
                    return idempotency_record(row), True
                row = conn.execute(f"SELECT {IDEM_COLS} FROM idempotency "
                                   "WHERE tenant = ? AND key = ?", (rec.tenant, rec.key)).fetchone()
                return idempotency_record(row), False
        return await self._write(run)

    async def get_idempotency(self, tenant: str, key: str, now: float) -> IdempotencyRecord | None:
        """One primary-key read that skips an expired row."""
        row = await self._run(lambda conn: conn.execute(
            f"SELECT {IDEM_COLS} FROM idempotency WHERE tenant = ? AND key = ? AND expires_at > ?",
            (tenant, key, now)).fetchone())
        return idempotency_record(row) if row else None

    # Retention

    async def purge_expired(self, now: float) -> int:
        """Transactions of at most ``PURGE_CHUNK`` deleted rows each, until none are left."""
        # Items go before their job, so a purge cut short leaves the job row behind
        # and the next purge finishes the job's items.
        def purge_jobs(conn: sqlite3.Connection) -> tuple[int, bool]:
            with write_transaction(conn):
                ids = [r[0] for r in conn.execute(
                    "SELECT job_id FROM jobs WHERE expires_at <= ? LIMIT 100", (now,))]
                deleted = 0
                for job_id in ids:
                    deleted += conn.execute(
                        "DELETE FROM items WHERE rowid IN (SELECT rowid FROM items "
                        "WHERE job_id = ? LIMIT ?)", (job_id, PURGE_CHUNK - deleted)).rowcount
                    if deleted >= PURGE_CHUNK:
                        return deleted, True
                    deleted += conn.execute("DELETE FROM jobs WHERE job_id = ?",
                                            (job_id,)).rowcount
                return deleted, len(ids) == 100

        def purge_keys(conn: sqlite3.Connection) -> tuple[int, bool]:
            with write_transaction(conn):
                n = conn.execute(
                    "DELETE FROM idempotency WHERE rowid IN (SELECT rowid FROM idempotency "
                    "WHERE expires_at <= ? LIMIT ?)", (now, PURGE_CHUNK)).rowcount
                return n, n == PURGE_CHUNK

        total = 0
        for step in (purge_jobs, purge_keys):
            more = True
            while more:
                n, more = await self._write(step)
                total += n
        return total
