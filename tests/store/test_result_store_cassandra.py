"""The Cassandra store without a cluster: schema text, statements, error translation,
the asyncio bridge, and the round trips it saves. The behavioural suite runs it against
an in-memory session (``fake-cassandra``) and, given INFERQ_TEST_CASSANDRA, a cluster."""

from __future__ import annotations

import asyncio
import re
import threading
import time

import pytest

pytest.importorskip("cassandra")

import cassandra
from cassandra.cluster import NoHostAvailable

from store.results import IdempotencyRecord, ItemRecord, JobRecord
from store.results.base import StoreError, StoreUnavailable
from store.results.cassandra import (
    MAX_TTL,
    STATEMENTS,
    schema_statements,
    settle,
    translate,
    ttl,
)
from tests.store.cassandra_fake import FakeCassandraStore

LWT = {"create_job", "mark_started", "finish_job", "claim_key", "reclaim_key"}


def job(job_id: str = "j1", **fields) -> JobRecord:
    now = time.time()
    values = dict(job_id=job_id, tenant="t", model="minilm", model_version=1, priority="batch",
                  total=2, chunks=1, created_at=now, expires_at=now + 3600)
    return JobRecord(**(values | fields))


def test_the_schema_creates_everything_idempotently_in_one_keyspace() -> None:
    ddl = schema_statements("inferq_prod", "{'class': 'NetworkTopologyStrategy', 'dc1': 3}")
    created = [re.match(r"CREATE (KEYSPACE|TABLE) IF NOT EXISTS (\S+)", s) for s in ddl]
    assert [m and m[2] for m in created] == [
        "inferq_prod", "inferq_prod.jobs", "inferq_prod.jobs_by_tenant",
        "inferq_prod.unpublished", "inferq_prod.items", "inferq_prod.idempotency"]
    assert "replication = {'class': 'NetworkTopologyStrategy', 'dc1': 3}" in ddl[0]
    items = ddl[4]
    assert "PRIMARY KEY ((job_id, bucket), idx)" in items  # bucketed: ~1.5 MB partitions
    assert "{'class': 'TimeWindowCompactionStrategy'" in items
    assert "PRIMARY KEY ((tenant, idem_key))" in ddl[5]
    assert "PRIMARY KEY ((tenant, day_bucket), created_at, job_id)" in ddl[2]


def test_statements_are_keyspace_qualified_ttl_bound_and_lwt_only_where_needed() -> None:
    for name, cql in STATEMENTS.items():
        if name != "ping":
            assert "{ks}." in cql, name
        if cql.startswith(("INSERT", "UPDATE")):
            assert "USING TTL ?" in cql, name  # nothing outlives its retention
        assert (re.search(r"\bIF\b", cql) is not None) == (name in LWT), name
    assert "IF NOT EXISTS USING TTL ?" in STATEMENTS["claim_key"]
    assert "IF status IN ('queued', 'running')" in STATEMENTS["finish_job"]
    assert "ALLOW FILTERING" in STATEMENTS["items_after_status"]  # within one bucket only
    assert "WHERE job_id = ? AND bucket = ?" in STATEMENTS["items_after_status"]


@pytest.mark.parametrize("exc", [
    cassandra.OperationTimedOut("timed out"),
    NoHostAvailable("down", {}),
    cassandra.Unavailable("not enough replicas"),
    cassandra.WriteTimeout("cas timeout", write_type=cassandra.WriteType.CAS),
    cassandra.ReadTimeout("slow"),
])
def test_transient_driver_errors_become_store_unavailable(exc: Exception) -> None:
    err = translate(exc)
    assert isinstance(err, StoreUnavailable) and err.retryable


@pytest.mark.parametrize("exc", [cassandra.InvalidRequest("no such table"),
                                 cassandra.Unauthorized("nope"),
                                 cassandra.AuthenticationFailed("bad password")])
def test_permanent_driver_errors_become_non_retryable_store_errors(exc: Exception) -> None:
    err = translate(exc)
    assert type(err) is StoreError and not err.retryable


def test_errors_that_are_not_the_drivers_are_left_alone() -> None:
    assert translate(KeyError("bug")) is None


async def test_the_store_translates_driver_errors_on_every_call() -> None:
    store = FakeCassandraStore()
    store.fake.fail_with = cassandra.OperationTimedOut("timed out")
    with pytest.raises(StoreUnavailable):
        await store.get_job("j1")
    store.fake.fail_with = cassandra.InvalidRequest("unconfigured table jobs")
    with pytest.raises(StoreError, match="unconfigured table"):
        await store.get_job("j1")
    with pytest.raises(StoreUnavailable):  # readiness: anything wrong is "unavailable"
        await store.ping()
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.get_job("j1")


class ThreadedFuture:
    def __init__(self, result=None, error=None) -> None:
        self.result, self.error = result, error

    def add_callbacks(self, callback, errback) -> None:
        target = (lambda: errback(self.error)) if self.error else (lambda: callback(self.result))
        threading.Timer(0.01, target).start()


async def test_settle_bridges_driver_callbacks_from_another_thread() -> None:
    assert await settle(ThreadedFuture([{"a": 1}])) == [{"a": 1}]
    assert await settle(ThreadedFuture(None)) == []  # a write: no rows
    with pytest.raises(cassandra.OperationTimedOut):
        await settle(ThreadedFuture(error=cassandra.OperationTimedOut("late")))


def test_ttl_counts_down_to_expires_at_within_cassandras_range() -> None:
    now = time.time()
    assert 3599 <= ttl(now + 3600) <= 3601
    assert ttl(now - 10) == 1
    assert ttl(now + 100 * 365 * 86400) == MAX_TTL


async def test_create_job_writes_its_index_rows_before_the_job() -> None:
    store = FakeCassandraStore()
    await store.create_job(job())
    assert sorted(store.fake.calls[:2]) == ["add_unpublished", "index_job"]
    assert store.fake.calls[2:] == ["create_job"]
    await store.mark_published("j1")
    assert store.fake.unpublished and not any(store.fake.unpublished.values())


async def test_lwt_statements_are_never_retried_blindly() -> None:
    store = FakeCassandraStore()
    await store.create_job(job())
    await store.get_job("j1")
    assert store._prepared["create_job"].is_idempotent is False
    assert store._prepared["get_job"].is_idempotent is True


async def test_mark_started_costs_one_read_once_the_job_has_started() -> None:
    store = FakeCassandraStore()
    await store.create_job(job())
    await store.mark_started("j1", 1.0)
    store.fake.calls.clear()
    await store.mark_started("j1", 2.0)  # every later batch of the job
    assert store.fake.calls == ["get_job"]


async def test_a_rerun_batch_reads_what_is_present_and_writes_nothing() -> None:
    store = FakeCassandraStore()
    await store.create_job(job(total=2000))
    batch = [ItemRecord("j1", i, "succeeded", 1, output=b"v", finished_at=1.0)
             for i in (998, 999, 1000, 1001)]
    await store.upsert_items(batch)
    assert store.fake.calls.count("items_present") == 2  # one read per item bucket
    store.fake.calls.clear()
    await store.upsert_items(batch)
    assert "insert_item" not in store.fake.calls


async def test_reclaiming_an_expired_key_is_a_compare_and_set() -> None:
    store = FakeCassandraStore()
    old = IdempotencyRecord("t", "k", "h", "old", 1.0, 10.0)
    await store.claim_idempotency(old, now=1.0)
    racers = [IdempotencyRecord("t", "k", "h", f"new{i}", 20.0, 1e9) for i in range(10)]
    results = await asyncio.gather(*(store.claim_idempotency(r, now=20.0) for r in racers))
    assert sum(created for _, created in results) == 1
    assert len({rec.job_id for rec, _ in results}) == 1
