"""Outages of a dependency: a server stopped (or killed) and restarted, the SQLite result store
locked against writers."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import AsyncIterator

from inferq.embedded import ServerProcess


async def down_for(server: ServerProcess, seconds: float, *, kill: bool = False) -> None:
    """An outage: stop the server (SIGTERM; SIGKILL with ``kill``), wait, start it again on
    the same port with the same data directory (its argv and config are unchanged)."""
    await asyncio.to_thread(server.kill if kill else server.stop)
    await asyncio.sleep(seconds)
    await asyncio.to_thread(server.start)


@contextlib.asynccontextmanager
async def store_locked(db_path: str) -> AsyncIterator[None]:
    """The SQLite result store unavailable to writers: another connection holds
    ``BEGIN EXCLUSIVE`` until the block ends (in WAL mode readers still read)."""
    taken, release = threading.Event(), threading.Event()
    failed: list[BaseException] = []

    def hold() -> None:
        conn = sqlite3.connect(db_path, timeout=60, isolation_level=None)
        try:
            try:
                conn.execute("BEGIN EXCLUSIVE")
            except sqlite3.Error as exc:  # reported in the test, not lost in a thread
                failed.append(exc)
                return
            finally:
                taken.set()
            release.wait()
            conn.execute("ROLLBACK")
        finally:
            conn.close()

    thread = threading.Thread(target=hold, name="store-lock", daemon=True)
    thread.start()
    await asyncio.to_thread(taken.wait)
    if failed:
        raise failed[0]
    try:
        yield
    finally:
        release.set()
        await asyncio.to_thread(thread.join)
