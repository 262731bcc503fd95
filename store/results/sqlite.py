"""SQLite result store: the embedded default, one file shared by several processes.

The gateway and every runner replica open the same file, so the database runs in WAL
mode (readers never block the writer) with ``synchronous=FULL`` (a committed result
survives power loss), a busy timeout (writers queue instead of failing), and short
``BEGIN IMMEDIATE`` transactions (a writer takes the lock up front, so it never has to
upgrade a read snapshot and fail with SQLITE_BUSY mid-transaction). Blocking calls run
in threads via ``asyncio.to_thread``, each on a connection from a small pool.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from schemas.states import ItemStatus, JobStatus
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

T = TypeVar("T")

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
    started_at REAL, finished_at REAL, error_code TEXT, error_message TEXT
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

_JOB_COLS = ", ".join(JobRecord.__struct_fields__)
_ITEM_COLS = ("job_id, idx, status, model_version, client_id, output, error_code, "
              "error_message, error_retryable, finished_at")
_IDEM_COLS = "tenant, key, request_hash, job_id, created_at, expires_at"
_TERMINAL = f"('{JobStatus.SUCCEEDED.value}', '{JobStatus.FAILED.value}')"
# Rows deleted per purge transaction: long enough to be efficient, short enough that
# a runner waiting on the write lock notices no stall.
PURGE_CHUNK = 1000

# Primary result codes that mean "not now" rather than "never".
_TRANSIENT = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_IOERR,
              sqlite3.SQLITE_FULL, sqlite3.SQLITE_PROTOCOL}


def translate(exc: sqlite3.Error, path: str) -> StoreError:
    """The one place that turns sqlite3 exceptions into StoreError subclasses."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    if primary in _TRANSIENT:
        return StoreUnavailable(f"SQLite result store {path} is unavailable: {exc}")
    if primary == sqlite3.SQLITE_CANTOPEN:
        return StoreError(f"cannot open SQLite result store {path}: {exc} "
                          "(does the directory exist and is it writable?)")
    if primary in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
        return StoreError(f"SQLite result store {path} is not a valid database: {exc}")
    return StoreError(f"SQLite result store {path} failed: {exc}")


def _job(row: tuple[Any, ...]) -> JobRecord:
    fields = list(row)
    fields[10] = msgspec.json.decode(fields[10]) if fields[10] is not None else None
    fields[13] = bool(fields[13])
    return JobRecord(*fields)


def _item(row: tuple[Any, ...]) -> ItemRecord:
    fields = list(row)
    fields[8] = bool(fields[8])
    return ItemRecord(*fields)


@contextmanager
def _write(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A short write transaction that holds the write lock from its first statement."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.rollback()
        raise
    conn.execute("COMMIT")


PING_WRITE_WAIT_S = 0.25
"""How long ``ping`` waits for the write lock; a healthy writer holds it for milliseconds."""


def _wait_for_locks(conn: sqlite3.Connection, seconds: float) -> None:
    """How long this connection's statements wait for another connection's lock."""
    conn.execute(f"PRAGMA busy_timeout = {int(seconds * 1000)}")


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
        self._busy_timeout_s = busy_timeout_s
        self._pool_size = pool_size
        self._idle: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._gate: asyncio.Semaphore | None = None
        self._closed = False
        self._migrated = not auto_migrate

    # Connections and threads

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout_s, isolation_level=None,
                               check_same_thread=False)
        try:
            _wait_for_locks(conn, self._busy_timeout_s)
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StoreError(f"SQLite result store {self.path} cannot use WAL (got {mode})")
            conn.execute("PRAGMA synchronous = FULL")
            if not self._migrated:
                conn.executescript(SCHEMA)
                self._migrated = True
        except BaseException:
            conn.close()
            raise
        return conn

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` in this worker thread on a pooled connection."""
        try:
            with self._lock:
                conn = self._idle.pop() if self._idle else self._connect()
            try:
                return fn(conn, *args)
            finally:
                if conn.in_transaction:
                    conn.rollback()
                with self._lock:
                    if self._closed or len(self._idle) >= self._pool_size:
                        conn.close()
                    else:
                        self._idle.append(conn)
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from exc

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise StoreError(f"SQLite result store {self.path} is closed")
        if self._gate is None:
            self._gate = asyncio.Semaphore(self._pool_size)
        async with self._gate:
            return await asyncio.to_thread(self._call, fn, *args)

    async def migrate(self) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.executescript(SCHEMA)
        await self._run(run)

    async def ping(self) -> None:
        """Answers a read, and would take a write within ``PING_WRITE_WAIT_S``: another
        connection holding the write lock longer (a long transaction, a backup, a sqlite3
        shell) makes every submission wait out the busy timeout and fail, so the store is
        reported unavailable rather than ready."""
        def run(conn: sqlite3.Connection) -> None:
            conn.execute("SELECT 1 FROM jobs LIMIT 1").fetchone()
            _wait_for_locks(conn, PING_WRITE_WAIT_S)
            try:
                conn.execute("BEGIN IMMEDIATE")  # takes the write lock, writes nothing
                conn.execute("ROLLBACK")
            finally:
                _wait_for_locks(conn, self._busy_timeout_s)

        try:
            await self._run(run)
        except StoreUnavailable:
            raise
        except StoreError as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    # Jobs

    async def create_job(self, job: JobRecord) -> None:
        row = list(msgspec.structs.astuple(job))
        row[10] = msgspec.json.encode(job.metadata).decode() if job.metadata is not None else None
        sql = (f"INSERT INTO jobs ({_JOB_COLS}) VALUES ({', '.join('?' * len(row))}) "
               "ON CONFLICT (job_id) DO NOTHING")
        await self._run(lambda conn: conn.execute(sql, row))

    async def get_job(self, job_id: str) -> JobRecord | None:
        def run(conn: sqlite3.Connection) -> JobRecord | None:
            row = conn.execute(f"SELECT {_JOB_COLS} FROM jobs WHERE job_id = ?",
                               (job_id,)).fetchone()
            return _job(row) if row else None
        return await self._run(run)

    async def list_jobs(self, tenant: str, *, cursor: str | None,
                        limit: int) -> tuple[list[JobRecord], str | None]:
        check_limit(limit)
        after = decode_cursor(cursor, (float, str)) if cursor else None

        def run(conn: sqlite3.Connection) -> list[JobRecord]:
            where, args = "tenant = ?", [tenant]
            if after is not None:
                where, args = where + " AND (created_at, job_id) < (?, ?)", [tenant, *after]
            rows = conn.execute(f"SELECT {_JOB_COLS} FROM jobs WHERE {where} "
                                "ORDER BY created_at DESC, job_id DESC LIMIT ?",
                                (*args, limit + 1)).fetchall()
            return [_job(r) for r in rows]
        jobs = await self._run(run)
        if len(jobs) <= limit:
            return jobs, None
        last = jobs[limit - 1]
        return jobs[:limit], encode_cursor([last.created_at, last.job_id])

    async def mark_published(self, job_id: str) -> None:
        await self._run(lambda conn: conn.execute(
            "UPDATE jobs SET published = 1 WHERE job_id = ? AND published = 0", (job_id,)))

    async def unpublished_jobs(self, older_than: float, limit: int = 100) -> list[JobRecord]:
        def run(conn: sqlite3.Connection) -> list[JobRecord]:
            rows = conn.execute(
                f"SELECT {_JOB_COLS} FROM jobs WHERE published = 0 AND created_at < ? "
                f"AND status NOT IN {_TERMINAL} ORDER BY created_at LIMIT ?",
                (older_than, limit)).fetchall()
            return [_job(r) for r in rows]
        return await self._run(run)

    async def mark_started(self, job_id: str, started_at: float) -> None:
        await self._run(lambda conn: conn.execute(
            "UPDATE jobs SET started_at = ?, status = ? "
            "WHERE job_id = ? AND started_at IS NULL AND status = ?",
            (started_at, JobStatus.RUNNING.value, job_id, JobStatus.QUEUED.value)))

    async def finish_job(self, job_id: str, *, status: str, outcome: str | None,
                         finished_at: float, error_code: str | None = None,
                         error_message: str | None = None) -> bool:
        check_terminal_job(status)
        cur = await self._run(lambda conn: conn.execute(
            "UPDATE jobs SET status = ?, outcome = ?, finished_at = ?, error_code = ?, "
            f"error_message = ? WHERE job_id = ? AND status NOT IN {_TERMINAL}",
            (status, outcome, finished_at, error_code, error_message, job_id)))
        return cur.rowcount > 0

    async def correct_job_end(self, job_id: str, *, expected_error_code: str, status: str,
                              outcome: str | None, finished_at: float,
                              error_code: str | None = None,
                              error_message: str | None = None) -> bool:
        check_terminal_job(status)
        cur = await self._run(lambda conn: conn.execute(
            "UPDATE jobs SET status = ?, outcome = ?, finished_at = ?, error_code = ?, "
            f"error_message = ? WHERE job_id = ? AND status IN {_TERMINAL} AND error_code = ?",
            (status, outcome, finished_at, error_code, error_message, job_id,
             expected_error_code)))
        return cur.rowcount > 0

    # Items

    async def upsert_items(self, items: list[ItemRecord]) -> None:
        check_items(items)
        rows = [msgspec.structs.astuple(i) for i in items]
        sql = (f"INSERT INTO items ({_ITEM_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
               "ON CONFLICT (job_id, idx) DO NOTHING")

        def run(conn: sqlite3.Connection) -> None:
            with _write(conn):
                conn.executemany(sql, rows)
        if rows:
            await self._run(run)

    async def replace_items(self, items: list[ItemRecord]) -> None:
        check_items(items)
        rows = [msgspec.structs.astuple(i) for i in items]
        sql = f"INSERT OR REPLACE INTO items ({_ITEM_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"

        def run(conn: sqlite3.Connection) -> None:
            with _write(conn):
                conn.executemany(sql, rows)
        if rows:
            await self._run(run)

    async def item_counts(self, job_id: str) -> tuple[int, int]:
        rows = await self._run(lambda conn: conn.execute(
            "SELECT status, count(*) FROM items WHERE job_id = ? GROUP BY status",
            (job_id,)).fetchall())
        counts = dict(rows)
        return counts.get(ItemStatus.SUCCEEDED.value, 0), counts.get(ItemStatus.FAILED.value, 0)

    async def done_indexes(self, job_id: str) -> list[tuple[int, str]]:
        return await self._run(lambda conn: conn.execute(
            "SELECT idx, status FROM items WHERE job_id = ? ORDER BY idx", (job_id,)).fetchall())

    async def get_items(self, job_id: str, *, status: str | None, after_index: int,
                        limit: int) -> list[ItemRecord]:
        check_limit(limit)
        where, args = "job_id = ? AND idx > ?", [job_id, after_index]
        if status is not None:
            where, args = where + " AND status = ?", [*args, status]
        rows = await self._run(lambda conn: conn.execute(
            f"SELECT {_ITEM_COLS} FROM items WHERE {where} ORDER BY idx LIMIT ?",
            (*args, limit)).fetchall())
        return [_item(r) for r in rows]

    # Idempotency

    async def claim_idempotency(self, rec: IdempotencyRecord,
                                now: float) -> tuple[IdempotencyRecord, bool]:
        # One statement decides: insert, or replace a row whose expires_at has passed.
        # RETURNING yields a row only when this call wrote one.
        claim = (f"INSERT INTO idempotency ({_IDEM_COLS}) VALUES (?, ?, ?, ?, ?, ?) "
                 "ON CONFLICT (tenant, key) DO UPDATE SET request_hash = excluded.request_hash, "
                 "job_id = excluded.job_id, created_at = excluded.created_at, "
                 "expires_at = excluded.expires_at WHERE idempotency.expires_at <= ? "
                 f"RETURNING {_IDEM_COLS}")

        def run(conn: sqlite3.Connection) -> tuple[IdempotencyRecord, bool]:
            with _write(conn):
                row = conn.execute(claim, (*msgspec.structs.astuple(rec), now)).fetchone()
                if row is not None:
                    return IdempotencyRecord(*row), True
                row = conn.execute(f"SELECT {_IDEM_COLS} FROM idempotency "
                                   "WHERE tenant = ? AND key = ?", (rec.tenant, rec.key)).fetchone()
                return IdempotencyRecord(*row), False
        return await self._run(run)

    async def get_idempotency(self, tenant: str, key: str, now: float) -> IdempotencyRecord | None:
        row = await self._run(lambda conn: conn.execute(
            f"SELECT {_IDEM_COLS} FROM idempotency WHERE tenant = ? AND key = ? AND expires_at > ?",
            (tenant, key, now)).fetchone())
        return IdempotencyRecord(*row) if row else None

    # Retention

    async def purge_expired(self, now: float) -> int:
        # Items go before their job, so a purge cut short leaves the job row behind
        # and the next purge finishes the job's items.
        def purge_jobs(conn: sqlite3.Connection) -> tuple[int, bool]:
            with _write(conn):
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
            with _write(conn):
                n = conn.execute(
                    "DELETE FROM idempotency WHERE rowid IN (SELECT rowid FROM idempotency "
                    "WHERE expires_at <= ? LIMIT ?)", (now, PURGE_CHUNK)).rowcount
                return n, n == PURGE_CHUNK

        total = 0
        for step in (purge_jobs, purge_keys):
            more = True
            while more:
                n, more = await self._run(step)
                total += n
        return total
