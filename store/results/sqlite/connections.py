"""SQLite connections shared by threads: the pool, the write lock and error translation.

Every connection runs in WAL mode (readers never block the writer) with ``synchronous=FULL``
(a committed result survives power loss) and a busy timeout (writers queue instead of
failing). Writes are short ``BEGIN IMMEDIATE`` transactions: a writer takes the lock up
front, so it never has to upgrade a read snapshot and fail with SQLITE_BUSY mid-transaction.
Blocking calls run in threads via ``asyncio.to_thread``, each on a pooled connection. Writes
from one process take turns on an in-process lock before they ask SQLite for its write lock:
SQLite's busy handler polls a held lock with sleeps of 1, 2, 5, 10, 15, 20, 25... ms, so two
writers of one process contending through it (a runner's write-backs, a job's start) waited
10-60 ms behind each other's few-ms commits; on the lock the next starts when one ends. Other
processes' writers still meet SQLite's lock and its busy timeout.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from store.results.base import StoreError, StoreUnavailable
from store.results.sqlite.schema import migrate_schema

T = TypeVar("T")

PAGE_SIZE = 16_384
"""Bytes per page of a new database file (SQLite fixes it when the file is created; an existing
file keeps its own). Item rows carry a ~1.5 KB embedding, two to a default 4 KB page: 256-item
``upsert_items`` transactions cost a median 10.1 CPU-µs an item at 16 KB against 11.8 at 4 KB,
two files written in alternating rounds in one process."""

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


@contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A short write transaction that holds the write lock from its first statement."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.rollback()
        raise
    conn.execute("COMMIT")


def wait_for_locks(conn: sqlite3.Connection, seconds: float) -> None:
    """How long this connection's statements wait for another connection's lock."""
    conn.execute(f"PRAGMA busy_timeout = {int(seconds * 1000)}")


def probe_write_lock(conn: sqlite3.Connection, wait_s: float, busy_timeout_s: float) -> None:
    """Take the write lock within ``wait_s`` and release it at once, writing nothing; then
    restore the connection's usual busy timeout. SQLITE_BUSY if another connection holds it."""
    wait_for_locks(conn, wait_s)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
    finally:
        wait_for_locks(conn, busy_timeout_s)


class ConnectionPool:
    """Up to ``size`` idle connections to one file, and at most ``size`` calls at a time.

    ``auto_migrate`` creates the schema on the first connection (cheap and idempotent).
    """

    def __init__(self, path: str, *, busy_timeout_s: float, size: int,
                 auto_migrate: bool) -> None:
        self.path = path
        self.busy_timeout_s = busy_timeout_s
        self._size = size
        self._idle: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._writer = threading.Lock()
        """Held by this process's writer (see the module docstring)."""
        self._gate: asyncio.Semaphore | None = None
        self._closed = False
        self._migrated = not auto_migrate

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(conn, *args)`` in a worker thread on a pooled connection; sqlite3 errors come
        out as :class:`StoreError` (see :func:`translate`). For reads: a ``fn`` that writes
        goes through :meth:`write`."""
        return await self._submit(self._call, fn, *args)

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """As :meth:`run`, for a ``fn`` that writes: it runs holding this process's writer
        lock, so this process's writers take turns without SQLite's busy-handler sleeps."""
        return await self._submit(self._call_writing, fn, *args)

    async def _submit(self, call: Callable[..., T], fn: Callable[..., Any], *args: Any) -> T:
        if self._closed:
            raise StoreError(f"SQLite result store {self.path} is closed")
        if self._gate is None:
            self._gate = asyncio.Semaphore(self._size)
        async with self._gate:
            return await asyncio.to_thread(call, fn, *args)

    def _call_writing(self, fn: Callable[..., T], *args: Any) -> T:
        with self._writer:
            return self._call(fn, *args)

    def close(self) -> None:
        """Close the idle connections; busy ones close when their call returns. Idempotent."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None,
                               check_same_thread=False)
        try:
            wait_for_locks(conn, self.busy_timeout_s)
            conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # a new file's only: see PAGE_SIZE
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StoreError(f"SQLite result store {self.path} cannot use WAL (got {mode})")
            conn.execute("PRAGMA synchronous = FULL")
            if not self._migrated:
                migrate_schema(conn)
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
                    if self._closed or len(self._idle) >= self._size:
                        conn.close()
                    else:
                        self._idle.append(conn)
        except sqlite3.Error as exc:
            raise translate(exc, self.path) from exc
