"""The production schema and the Cassandra store's own guarantees, proven on a live node.

The contract every store keeps is test_result_store.py; here is what only Cassandra has to
show: TWCS and default TTLs accepted, rows that expire by TTL, LWTs whose outcome is unknown
resolved by a SERIAL read (injected around the real session), paging past one page, the
round trips the store promises, and a cache rebuild that never reads an output.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("cassandra")

import cassandra
import cassandra.protocol as proto
from cassandra.query import BatchStatement, SimpleStatement

from inferq.embedded import free_port
from store.jobstate import JobStateCache
from store.rebuild import rebuild_job_cache
from store.results import IdempotencyRecord, ItemRecord, JobRecord, open_result_store
from store.results.base import StoreError, StoreUnavailable
from store.results.cassandra import STATEMENTS, CassandraResultStore
from store.results.cassandra.session import CAS_WRITE_UNKNOWN

pytestmark = pytest.mark.live_cassandra
DEPLOY_CQL = Path(__file__).resolve().parents[2] / "deploy" / "cassandra" / "production.cql"


@pytest.fixture
async def store(cassandra_url: str) -> AsyncIterator[CassandraResultStore]:
    backend = open_result_store(cassandra_url)
    assert isinstance(backend, CassandraResultStore)
    await backend.migrate()
    yield backend
    await backend.close()


def make_job(**fields: Any) -> JobRecord:
    now = time.time()
    values = dict(job_id=uuid.uuid4().hex, tenant=f"t-{uuid.uuid4().hex[:8]}", model="minilm",
                  model_version=1, priority="batch", total=10, chunks=1, created_at=now,
                  expires_at=now + 3600)
    return JobRecord(**(values | fields))


def ok(job: JobRecord, index: int, output: bytes = b"v" * 1536) -> ItemRecord:
    return ItemRecord(job.job_id, index, "succeeded", job.model_version, output=output,
                      finished_at=1.0)


def bad(job: JobRecord, index: int) -> ItemRecord:
    return ItemRecord(job.job_id, index, "failed", job.model_version, error_code="empty_text",
                      error_message="text is empty", error_retryable=False, finished_at=1.0)


def with_keyspace(url: str, keyspace: str) -> str:
    """The same cluster and options, another keyspace."""
    hosts, _, rest = url.removeprefix("cassandra://").partition("/")
    query = rest.partition("?")[2]
    return f"cassandra://{hosts}/{keyspace}" + (f"?{query}" if query else "")


async def cql(store: CassandraResultStore, query: str, *params: Any) -> list[dict]:
    return await store._db.run(SimpleStatement(query), params, timeout=60)


class Failed:
    """A driver ResponseFuture that fails with ``exc`` (what a timed-out LWT hands back)."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def add_callbacks(self, callback: Callable, errback: Callable) -> None:
        errback(self.exc)


class Session:
    """The store's real session, watched: which named statements ran, with what consistency,
    and an optional fault for the first run of one statement."""

    def __init__(self, store: CassandraResultStore) -> None:
        self.real = store._db.session.execute_async
        self.names = {STATEMENTS[n].format(ks=store.config.keyspace): n for n in STATEMENTS}
        self.calls: list[str] = []
        self.serial: list[str] = []
        self.queries: list[str] = []
        self.fault: tuple[str, BaseException, bool] | None = None
        store._db.session.execute_async = self

    def fail_once(self, name: str, exc: BaseException, *, apply: bool) -> None:
        """The next ``name`` raises ``exc``; with ``apply`` it is really executed first."""
        self.fault = (name, exc, apply)

    def __call__(self, stmt: Any, params: Any = None, **kwargs: Any) -> Any:
        if isinstance(stmt, BatchStatement):
            query = name = "batch"
        else:
            query = getattr(stmt, "prepared_statement", stmt).query_string
            name = self.names.get(query, query)
        self.calls.append(name)
        self.queries.append(query)
        if stmt.consistency_level == cassandra.ConsistencyLevel.SERIAL:
            self.serial.append(name)
        if self.fault and self.fault[0] == name:
            _, exc, apply = self.fault
            self.fault = None
            if apply:
                self.real(stmt, params, **kwargs).result()
            return Failed(exc)
        return self.real(stmt, params, **kwargs)


async def watch(store: CassandraResultStore) -> Session:
    await store.ping()  # connects
    return Session(store)


CAS_TIMEOUT = cassandra.WriteTimeout("CAS operation timed out", consistency=9,
                                     received_responses=0, required_responses=1,
                                     write_type=cassandra.WriteType.CAS)


def cas_unknown() -> proto.ErrorMessage:
    return proto.ErrorMessage(code=CAS_WRITE_UNKNOWN, message="CAS operation result is unknown",
                              info=None)


# The schema


async def test_the_production_schema_is_accepted_with_twcs_and_default_ttls(
        store: CassandraResultStore) -> None:
    rows = await cql(store, "SELECT table_name, compaction, default_time_to_live, "
                     "gc_grace_seconds FROM system_schema.tables WHERE keyspace_name = %s",
                     store.config.keyspace)
    tables = {r["table_name"]: r for r in rows}
    assert set(tables) == {"jobs", "jobs_by_tenant", "unpublished", "items", "idempotency"}
    items = tables["items"]
    assert items["compaction"]["class"].endswith("TimeWindowCompactionStrategy")
    assert (items["default_time_to_live"], items["gc_grace_seconds"]) == (604800, 10800)
    version = await cql(store, "SELECT release_version FROM system.local")
    assert version[0]["release_version"].split(".")[0] >= "4"  # 4.1+ / 5: what production runs
    assert store._db.cluster.protocol_version == 5  # pinned: no downgrade dance on connect


async def test_the_deploy_settings_apply_on_top_of_the_migration(cassandra_url: str) -> None:
    keyspace = f"inferq_deploy_{uuid.uuid4().hex[:6]}"
    store = open_result_store(with_keyspace(cassandra_url, keyspace))
    assert isinstance(store, CassandraResultStore)
    try:
        await store.migrate()
        text = "\n".join(line for line in DEPLOY_CQL.read_text().splitlines()
                         if not line.lstrip().startswith("--"))
        text = re.sub(r"\binferq\b(?=[.\s])", keyspace, text)
        text = re.sub(r"\{'class': 'NetworkTopologyStrategy'[^}]*\}",
                      store.config.replication_cql(), text)  # this cluster's datacenters
        for statement in filter(None, (s.strip() for s in text.split(";"))):
            await cql(store, statement)
        rows = await cql(store, "SELECT table_name, compaction, default_time_to_live FROM "
                         "system_schema.tables WHERE keyspace_name = %s", keyspace)
        got = {r["table_name"]: (r["compaction"]["class"].rsplit(".", 1)[-1],
                                 r["default_time_to_live"]) for r in rows}
        assert got == {"items": ("TimeWindowCompactionStrategy", 604800),
                       "jobs_by_tenant": ("TimeWindowCompactionStrategy", 604800),
                       "jobs": ("LeveledCompactionStrategy", 604800),
                       "idempotency": ("LeveledCompactionStrategy", 86400),
                       "unpublished": ("SizeTieredCompactionStrategy", 86400)}
    finally:
        await cql(store, f"DROP KEYSPACE IF EXISTS {keyspace}")
        await store.close()


# Retention by TTL


async def test_rows_expire_by_their_ttl(store: CassandraResultStore) -> None:
    now = time.time()
    job = make_job(expires_at=now + 2)
    await store.create_job(job)
    await store.upsert_items([ok(job, 0), bad(job, 1)])
    key = IdempotencyRecord(job.tenant, "k", "h", job.job_id, now, now + 2)
    assert await store.claim_idempotency(key, now=now) == (key, True)
    assert await store.get_job(job.job_id) == job
    assert await store.item_counts(job.job_id) == (1, 1)
    await asyncio.sleep(max(0.0, now + 3.5 - time.time()))
    assert await store.get_job(job.job_id) is None  # the database dropped it: no purge ran
    assert await cql(store, f"SELECT idx FROM {store.config.keyspace}.items "
                     "WHERE job_id = %s AND bucket = 0", job.job_id) == []
    # Read with a clock that says "still live": only the TTL can have removed the key.
    assert await store.get_idempotency(job.tenant, "k", now=now) is None
    assert await store.purge_expired(time.time()) == 0


# Lightweight transactions whose outcome is unknown


@pytest.mark.parametrize("exc", [CAS_TIMEOUT, cas_unknown()], ids=["write-timeout-cas",
                                                                     "cas-write-unknown"])
async def test_a_claim_that_applied_before_its_timeout_is_read_back_as_won(
        store: CassandraResultStore, exc: BaseException) -> None:
    session = await watch(store)
    rec = IdempotencyRecord("t", uuid.uuid4().hex, "h", "job-1", time.time(), time.time() + 60)
    session.fail_once("claim_key", exc, apply=True)
    assert await store.claim_idempotency(rec, now=rec.created_at) == (rec, True)
    assert session.calls == ["claim_key", "get_key"] and session.serial == ["get_key"]
    again = IdempotencyRecord("t", rec.key, "h", "job-2", rec.created_at, rec.expires_at)
    assert await store.claim_idempotency(again, now=rec.created_at) == (rec, False)


async def test_a_claim_that_did_not_apply_is_tried_again_never_assumed(
        store: CassandraResultStore) -> None:
    session = await watch(store)
    rec = IdempotencyRecord("t", uuid.uuid4().hex, "h", "job-1", time.time(), time.time() + 60)
    session.fail_once("claim_key", CAS_TIMEOUT, apply=False)
    assert await store.claim_idempotency(rec, now=rec.created_at) == (rec, True)
    assert session.calls == ["claim_key", "get_key", "claim_key"]


async def test_a_claim_of_unknown_outcome_loses_to_the_claimer_that_holds_the_key(
        store: CassandraResultStore) -> None:
    now = time.time()
    key = uuid.uuid4().hex
    winner = IdempotencyRecord("t", key, "h", "job-w", now, now + 60)
    assert await store.claim_idempotency(winner, now=now) == (winner, True)
    session = await watch(store)
    loser = IdempotencyRecord("t", key, "h", "job-l", now, now + 60)
    session.fail_once("claim_key", CAS_TIMEOUT, apply=True)  # applied: [applied] = false
    assert await store.claim_idempotency(loser, now=now) == (winner, False)


async def test_a_finish_of_unknown_outcome_is_decided_by_the_record(
        store: CassandraResultStore) -> None:
    mine, theirs = make_job(), make_job()
    for job in (mine, theirs):
        await store.create_job(job)
    session = await watch(store)
    session.fail_once("finish_job", CAS_TIMEOUT, apply=True)
    assert await store.finish_job(mine.job_id, status="succeeded", outcome="all_succeeded",
                                  finished_at=10.0) is True
    assert session.serial == ["get_job"]
    # Another finisher got there inside the unknown window: the record says it was not us.
    await store.finish_job(theirs.job_id, status="failed", outcome=None, finished_at=5.0,
                           error_code="cancelled", error_message="cancelled by client")
    session.fail_once("finish_job", CAS_TIMEOUT, apply=False)
    assert await store.finish_job(theirs.job_id, status="succeeded", outcome="all_succeeded",
                                  finished_at=10.0) is False


async def test_create_and_start_of_unknown_outcome_are_read_back(
        store: CassandraResultStore) -> None:
    job = make_job()
    session = await watch(store)
    session.fail_once("create_job", CAS_TIMEOUT, apply=False)  # lost: created on the retry
    await store.create_job(job)
    assert session.calls.count("create_job") == 2
    session.fail_once("mark_started", cassandra.OperationTimedOut("no reply"), apply=True)
    await store.mark_started(job.job_id, 7.0)
    stored = await store.get_job(job.job_id)
    assert (stored.status, stored.started_at) == ("running", 7.0)
    assert session.calls.count("mark_started") == 1  # the read showed it applied


async def test_an_unknown_outcome_that_cannot_be_read_back_is_unavailable(
        store: CassandraResultStore, monkeypatch: pytest.MonkeyPatch) -> None:
    session = await watch(store)
    rec = IdempotencyRecord("t", uuid.uuid4().hex, "h", "job-1", time.time(), time.time() + 60)
    session.fail_once("claim_key", CAS_TIMEOUT, apply=False)
    real = session.real

    def down(stmt: Any, params: Any = None, **kwargs: Any) -> Any:
        if session.calls[-1] == "get_key":
            return Failed(cassandra.Unavailable("1 replica needed, 0 alive"))
        return real(stmt, params, **kwargs)
    monkeypatch.setattr(session, "real", down)
    with pytest.raises(StoreUnavailable) as err:
        await store.claim_idempotency(rec, now=rec.created_at)
    assert err.value.retryable


# Paging, round trips and the cache rebuild


async def test_results_beyond_one_page_page_in_order_across_buckets(
        store: CassandraResultStore) -> None:
    job = make_job(total=2345)
    await store.create_job(job)
    items = [(bad if i % 10 == 0 else ok)(job, i) for i in range(2345)]
    for start in range(0, 2345, 500):
        await store.upsert_items(items[start:start + 500])
    pages, after = [], -1
    while True:
        page = await store.get_items(job.job_id, status=None, after_index=after, limit=1000)
        if not page:
            break
        pages.append(len(page))
        after = page[-1].index
    assert pages == [1000, 1000, 345]
    got = [i async for i in store.iter_items(job.job_id, page_size=1000)]
    assert got == items
    failed = await store.get_items(job.job_id, status="failed", after_index=-1, limit=1000)
    assert [i.index for i in failed] == list(range(0, 2345, 10))
    assert len(await store.done_indexes(job.job_id)) == 2345  # a full bucket in one read


async def test_create_job_writes_its_index_rows_before_the_job(
        store: CassandraResultStore) -> None:
    session = await watch(store)
    job = make_job()
    await store.create_job(job)
    assert sorted(session.calls[:2]) == ["add_unpublished", "index_job"]
    assert session.calls[2:] == ["create_job"]
    assert store._db.prepared["create_job"].is_idempotent is False  # never retried blindly
    assert store._db.prepared["index_job"].is_idempotent is True


async def test_mark_started_costs_one_read_once_the_job_has_started(
        store: CassandraResultStore) -> None:
    job = make_job()
    await store.create_job(job)
    await store.mark_started(job.job_id, 1.0)
    session = await watch(store)
    await store.mark_started(job.job_id, 2.0)  # every later batch of the job
    assert session.calls == ["get_job"]


async def test_a_rerun_batch_reads_what_is_present_and_writes_nothing(
        store: CassandraResultStore) -> None:
    job = make_job(total=2000)
    await store.create_job(job)
    batch = [ok(job, i) for i in (998, 999, 1000, 1001)]
    session = await watch(store)
    await store.upsert_items(batch)
    assert session.calls.count("items_present") == 2  # one read per item bucket
    assert session.calls.count("batch") == 2  # and one write per bucket
    session.calls.clear()
    await store.upsert_items(batch)
    assert "batch" not in session.calls and "insert_item" not in session.calls


async def test_the_cache_rebuild_reads_counts_without_scanning_outputs(
        store: CassandraResultStore, cache: JobStateCache) -> None:
    job = make_job(total=2500)
    await store.create_job(job)
    await store.upsert_items([(bad if i % 4 == 0 else ok)(job, i) for i in range(0, 2500, 2)])
    session = await watch(store)
    out = await rebuild_job_cache(store, cache, job.job_id)
    assert out is not None and out.restored
    status = await cache.get_status(job.job_id)
    assert (status.succeeded, status.failed, status.pending) == (625, 625, 1250)
    assert set(session.calls) == {"get_job", "item_marks"}
    assert not any(re.search(r"\boutput\b", q) for q in session.queries)


async def test_driver_errors_become_store_errors_on_every_call(cassandra_url: str) -> None:
    missing = open_result_store(with_keyspace(cassandra_url, "inferq_absent"))
    with pytest.raises(StoreError, match="inferq_absent") as err:
        await missing.get_job("j1")  # no such keyspace: a permanent error
    assert not err.value.retryable
    await missing.close()
    with pytest.raises(StoreError, match="closed"):
        await missing.get_job("j1")


async def test_a_node_that_does_not_answer_is_unavailable() -> None:
    down = open_result_store(f"cassandra://127.0.0.1:{free_port()}/inferq_test?timeout_s=2")
    with pytest.raises(StoreUnavailable):  # readiness: anything wrong is "unavailable"
        await down.ping()
    await down.close()

