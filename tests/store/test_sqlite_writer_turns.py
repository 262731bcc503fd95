"""Writers of one process take turns on the pool's writer lock before SQLite's: a write that
comes while another holds the database's write lock waits for it to end, instead of meeting
SQLite's lock (and its busy handler's sleeps, or with no busy timeout at all, SQLITE_BUSY)."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest

from store.results.base import StoreUnavailable
from store.results.sqlite.connections import ConnectionPool, write_transaction


def slow_insert(conn: sqlite3.Connection, value: int, hold_s: float) -> None:
    with write_transaction(conn):
        conn.execute("INSERT INTO t VALUES (?)", (value,))
        time.sleep(hold_s)  # the database's write lock is held meanwhile


@pytest.fixture
def pool(tmp_path):
    path = str(tmp_path / "turns.db")
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (v INTEGER)")
    # No busy timeout: a writer that meets SQLite's lock fails at once.
    p = ConnectionPool(path, busy_timeout_s=0.0, size=4, auto_migrate=False)
    yield p
    p.close()


async def test_writes_of_one_process_take_turns(pool) -> None:
    await asyncio.gather(*(pool.write(slow_insert, v, 0.05) for v in range(4)))
    rows = await pool.run(lambda conn: conn.execute("SELECT v FROM t ORDER BY v").fetchall())
    assert rows == [(0,), (1,), (2,), (3,)]


async def test_without_turns_the_second_writer_meets_the_lock(pool) -> None:
    # What the writer lock spares: the same two writes through ``run`` collide in SQLite.
    results = await asyncio.gather(pool.run(slow_insert, 0, 0.2), pool.run(slow_insert, 1, 0.2),
                                   return_exceptions=True)
    assert sum(isinstance(r, StoreUnavailable) for r in results) == 1
