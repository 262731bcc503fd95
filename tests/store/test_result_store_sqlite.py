"""What only the SQLite store has to get right: one file shared by several processes."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from store.results import (
    IdempotencyRecord,
    ItemRecord,
    JobRecord,
    SqliteResultStore,
    StoreError,
    StoreUnavailable,
)

REPO = Path(__file__).resolve().parents[2]

# Runs in a separate interpreter: 25 concurrent claims of one key, at a shared start time.
CLAIMER = """
import asyncio, json, sys, time
from store.results import IdempotencyRecord, SqliteResultStore

async def main(path, who, start_at):
    store = SqliteResultStore(path)
    claims = [IdempotencyRecord("t", "k", "h", f"{who}-{i}", 1.0, 1e12) for i in range(25)]
    await asyncio.sleep(max(0.0, start_at - time.time()))
    out = await asyncio.gather(*(store.claim_idempotency(c, now=2.0) for c in claims))
    await store.close()
    print(json.dumps([[rec.job_id, created] for rec, created in out]))

asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
"""


def job(job_id: str = "j1", **fields) -> JobRecord:
    values = dict(job_id=job_id, tenant="t", model="minilm", model_version=1, priority="batch",
                  total=2, chunks=1, created_at=100.0, expires_at=1e12)
    return JobRecord(**(values | fields))


def item(job_id: str, index: int) -> ItemRecord:
    return ItemRecord(job_id, index, "succeeded", 1, output=b"x", finished_at=1.0)


async def test_two_store_objects_on_one_file_see_each_others_writes(tmp_path: Path) -> None:
    path = tmp_path / "results.db"
    async with SqliteResultStore(path) as gateway, SqliteResultStore(path) as runner:
        await gateway.create_job(job())
        await runner.upsert_items([item("j1", 0), item("j1", 1)])
        assert await runner.finish_job("j1", status="succeeded", outcome="all_succeeded",
                                       finished_at=5.0)
        assert (await gateway.get_job("j1")).status == "succeeded"
        assert await gateway.item_counts("j1") == (2, 0)


def test_two_processes_claiming_one_key_make_exactly_one_winner(tmp_path: Path) -> None:
    path = tmp_path / "results.db"
    asyncio.run(SqliteResultStore(path).migrate())
    start_at = f"{time.time() + 1.5:.3f}"
    procs = [subprocess.Popen([sys.executable, "-c", CLAIMER, str(path), who, start_at],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for who in ("a", "b")]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        outputs += json.loads(out)
    assert len(outputs) == 50
    assert sum(created for _, created in outputs) == 1
    assert len({job_id for job_id, _ in outputs}) == 1


async def test_a_database_an_older_version_made_gets_the_columns_added_since(
        tmp_path: Path) -> None:
    path = tmp_path / "results.db"
    old = sqlite3.connect(path)  # the jobs table as it was before retries (no parent_job_id)
    old.executescript("""CREATE TABLE jobs (
        job_id TEXT PRIMARY KEY, tenant TEXT NOT NULL, model TEXT NOT NULL,
        model_version INTEGER NOT NULL, priority TEXT NOT NULL, total INTEGER NOT NULL,
        chunks INTEGER NOT NULL, created_at REAL NOT NULL, expires_at REAL NOT NULL,
        deadline REAL, metadata TEXT, idempotency_key TEXT, request_hash TEXT,
        published INTEGER NOT NULL DEFAULT 0, status TEXT NOT NULL, outcome TEXT,
        started_at REAL, finished_at REAL, error_code TEXT, error_message TEXT);
        INSERT INTO jobs VALUES ('old', 't', 'minilm', 1, 'batch', 2, 1, 100.0, 1e12, NULL,
        NULL, NULL, NULL, 1, 'queued', NULL, NULL, NULL, NULL, NULL);""")
    old.close()
    async with SqliteResultStore(path) as store:
        await store.migrate()  # twice: adding a column is idempotent
        assert (await store.get_job("old")).parent_job_id is None
        await store.create_job(job("new", parent_job_id="old"))
        assert (await store.get_job("new")).parent_job_id == "old"


async def test_the_file_runs_in_wal_mode_with_full_sync(tmp_path: Path) -> None:
    store = SqliteResultStore(tmp_path / "results.db")
    sync = await store._run(lambda conn: conn.execute("PRAGMA synchronous").fetchone()[0])
    assert sync == 2  # FULL
    await store.close()
    with sqlite3.connect(tmp_path / "results.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_a_missing_directory_is_a_clear_non_retryable_error(tmp_path: Path) -> None:
    store = SqliteResultStore(tmp_path / "no" / "such" / "dir" / "results.db")
    with pytest.raises(StoreError, match=r"cannot open .*directory exist") as info:
        await store.get_job("j1")
    assert info.value.retryable is False
    with pytest.raises(StoreUnavailable):  # readiness reports it as unavailable
        await store.ping()


async def test_a_corrupt_file_is_a_clear_non_retryable_error(tmp_path: Path) -> None:
    path = tmp_path / "results.db"
    path.write_bytes(b"this is not a database" * 500)
    store = SqliteResultStore(path)
    with pytest.raises(StoreError, match="not a valid database") as info:
        await store.create_job(job())
    assert info.value.retryable is False


async def test_a_writer_that_cannot_get_the_lock_gets_a_retryable_error(tmp_path: Path) -> None:
    path = tmp_path / "results.db"
    store = SqliteResultStore(path, busy_timeout_s=0.05)
    await store.migrate()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process mid-transaction, for too long
    try:
        with pytest.raises(StoreUnavailable) as info:
            await store.upsert_items([item("j1", 0)])
        assert info.value.retryable is True
        assert await store.get_job("j1") is None  # readers are never blocked (WAL)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    await store.upsert_items([item("j1", 0)])
    await store.close()


async def test_a_closed_store_refuses_work(tmp_path: Path) -> None:
    store = SqliteResultStore(tmp_path / "results.db")
    await store.ping()
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.get_job("j1")


async def test_purge_works_in_bounded_chunks(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("store.results.sqlite.store.PURGE_CHUNK", 7)
    async with SqliteResultStore(tmp_path / "results.db") as store:
        for n in range(3):
            await store.create_job(job(f"old{n}", expires_at=50.0, total=10))
            await store.upsert_items([item(f"old{n}", i) for i in range(10)])
        await store.create_job(job("live"))
        for n in range(12):
            await store.claim_idempotency(
                IdempotencyRecord("t", f"k{n}", "h", "live", 1.0, 50.0 + n), now=1.0)
        transactions = 0
        write = store._write

        async def counting(fn, *args):
            nonlocal transactions
            transactions += 1
            return await write(fn, *args)
        monkeypatch.setattr(store, "_write", counting)
        # 3 jobs with 10 items each, and keys k0..k10 (k11 expires at 61)
        assert await store.purge_expired(now=60.0) == 3 * 11 + 11
        assert transactions >= (33 + 11) // 7
        assert await store.get_job("live") is not None
        assert await store.get_idempotency("t", "k11", now=1.0) is not None  # expires at 61


async def test_a_batch_of_items_is_one_quick_transaction(tmp_path: Path) -> None:
    async with SqliteResultStore(tmp_path / "results.db") as store:
        await store.create_job(job(total=300))
        batch = [ItemRecord("j1", i, "succeeded", 1, output=bytes(1536), finished_at=1.0)
                 for i in range(300)]
        started = time.perf_counter()
        await store.upsert_items(batch)
        elapsed = time.perf_counter() - started
        assert await store.item_counts("j1") == (300, 0)
        assert elapsed < 1.0, f"300 items took {elapsed:.3f}s"


def test_an_in_memory_database_is_refused() -> None:
    with pytest.raises(ValueError, match="in-memory"):
        SqliteResultStore(":memory:")


async def test_ping_reports_unavailable_while_another_connection_holds_the_write_lock(
    tmp_path: Path,
) -> None:
    path = tmp_path / "results.db"
    store = SqliteResultStore(path)  # the real 5 s busy timeout: ping must not wait it out
    await store.ping()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        t0 = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await store.ping()
        assert time.monotonic() - t0 < 2.0
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    await store.ping()  # released: ready again, and the probe left no transaction behind
    await store.upsert_items([item("j1", 0)])
    await store.close()
