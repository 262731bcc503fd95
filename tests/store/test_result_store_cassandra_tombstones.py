"""Cassandra tombstones: a first write of item rows leaves none (absent fields are unset, not
null), and a replace still clears everything the old row held. Counted from the node's own
query trace ("Read N live rows and M tombstone cells")."""

from __future__ import annotations

import asyncio
import re

import pytest

pytest.importorskip("cassandra")

from cassandra.query import SimpleStatement

from store.results import JobRecord
from store.results.cassandra import CassandraResultStore
from tests.store import test_result_store_cassandra_live as live
from tests.store.test_result_store_cassandra_live import bad, make_job, ok

pytestmark = pytest.mark.live_cassandra
store = live.store
"""The live suite's store fixture: a migrated Cassandra store on the test node."""


def tombstones_read(store: CassandraResultStore, job: JobRecord) -> int:
    """Tombstone cells a read of the job's first item partition scans (from the node's query
    trace: "Read N live rows and M tombstone cells")."""
    ks = store.config.keyspace
    rs = store._db.session.execute(
        SimpleStatement(f"SELECT * FROM {ks}.items WHERE job_id = %s AND bucket = 0"),
        (job.job_id,), trace=True)
    trace = rs.get_query_trace(max_wait_sec=10)
    found = [int(m.group(1)) for e in trace.events
             if (m := re.search(r"live rows and (\d+) tombstone cells", e.description))]
    assert found, [e.description for e in trace.events]
    return sum(found)


async def test_first_writes_of_items_leave_no_tombstones_and_a_replace_leaves_nothing_old(
        store: CassandraResultStore) -> None:
    # A succeeded item has no client id and no error; a failed one no output: binding those
    # as null would write a tombstone each, scanned by every read of the partition.
    job = make_job()
    await store.create_job(job)
    await store.upsert_items([ok(job, 0), ok(job, 1), bad(job, 2)])
    assert await asyncio.to_thread(tombstones_read, store, job) == 0
    # A replace (a job-level end over a racing batch's row) must clear what the row held.
    await store.replace_items([bad(job, 0)])
    [row] = await store.get_items(job.job_id, status=None, after_index=-1, limit=1)
    assert (row.status, row.output, row.error_code) == ("failed", None, "empty_text")
    assert await asyncio.to_thread(tombstones_read, store, job) > 0
