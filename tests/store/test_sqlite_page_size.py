"""A result store's new SQLite file gets 16 KB pages (item rows carry ~1.5 KB embeddings); a
file made before keeps the page size it was created with, and its rows."""

from __future__ import annotations

import sqlite3

from store.results.sqlite.connections import PAGE_SIZE, ConnectionPool


def page_size(path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("PRAGMA page_size").fetchone()[0]


async def test_a_new_file_gets_the_larger_pages(tmp_path) -> None:
    path = str(tmp_path / "new.db")
    pool = ConnectionPool(path, busy_timeout_s=5.0, size=1, auto_migrate=True)
    try:
        await pool.run(lambda conn: conn.execute("SELECT count(*) FROM items").fetchone())
    finally:
        pool.close()
    assert PAGE_SIZE == 16_384 and page_size(path) == PAGE_SIZE


async def test_an_existing_file_keeps_its_pages_and_rows(tmp_path) -> None:
    path = str(tmp_path / "old.db")
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA page_size = 4096")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE kept (v INTEGER)")
        conn.execute("INSERT INTO kept VALUES (7)")
    pool = ConnectionPool(path, busy_timeout_s=5.0, size=1, auto_migrate=True)
    try:
        rows = await pool.run(lambda conn: conn.execute("SELECT v FROM kept").fetchall())
    finally:
        pool.close()
    assert rows == [(7,)] and page_size(path) == 4096
