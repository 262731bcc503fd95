"""One behavioural suite for every result store backend.

SQLite runs on a real file in tmp_path; Cassandra on the session's live node (the
``cassandra_url`` fixture: Apache Cassandra 5 from ``scripts/fetch_cassandra.sh``, or
the cluster INFERQ_TEST_CASSANDRA names). Every case runs on both.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from store.results import (
    IdempotencyRecord,
    InvalidCursor,
    ItemRecord,
    JobRecord,
    ResultStore,
    SqliteResultStore,
    open_result_store,
)

DAY = 86400.0
BACKENDS = ["sqlite", pytest.param("cassandra", marks=pytest.mark.live_cassandra)]


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[ResultStore]:
    if request.param == "sqlite":
        backend: ResultStore = SqliteResultStore(tmp_path / "results.db")
    else:
        backend = open_result_store(request.getfixturevalue("cassandra_url"))
    await backend.migrate()
    yield backend
    await backend.close()


@pytest.fixture
def tenant() -> str:
    return f"tenant-{uuid.uuid4().hex[:8]}"


def make_job(tenant: str, **fields) -> JobRecord:
    now = time.time()
    values = dict(job_id=uuid.uuid4().hex, tenant=tenant, model="minilm", model_version=2,
                  priority="batch", total=10, chunks=1, created_at=now, expires_at=now + 7 * DAY)
    return JobRecord(**(values | fields))


def ok(job: JobRecord, index: int, output: bytes = b"vec", at: float = 1.0) -> ItemRecord:
    return ItemRecord(job.job_id, index, "succeeded", job.model_version, client_id=f"c{index}",
                      output=output + str(index).encode(), finished_at=at)


def bad(job: JobRecord, index: int, code: str = "empty_text") -> ItemRecord:
    return ItemRecord(job.job_id, index, "failed", job.model_version, error_code=code,
                      error_message="text is empty", error_retryable=False, finished_at=1.0)


# Real clock times: a live Cassandra turns expires_at into a TTL.
T0 = time.time()


def idem(tenant: str, key: str, job_id: str, *, at: float = T0,
         ttl: float = DAY) -> IdempotencyRecord:
    return IdempotencyRecord(tenant, key, "hash-" + job_id, job_id, at, at + ttl)


# Jobs


async def test_a_created_job_reads_back_field_for_field(store: ResultStore, tenant: str) -> None:
    job = make_job(tenant, deadline=time.time() + 60, metadata={"run": "a", "n": [1, 2]},
                   idempotency_key="k1", request_hash="h1", parent_job_id="p1")
    await store.create_job(job)
    assert await store.get_job(job.job_id) == job
    assert await store.get_job("no-such-job") is None


async def test_creating_the_same_job_twice_is_a_no_op(store: ResultStore, tenant: str) -> None:
    job = make_job(tenant)
    await store.create_job(job)
    await store.mark_started(job.job_id, 5.0)
    await store.create_job(job)  # a retried create must not reset the running job
    stored = await store.get_job(job.job_id)
    assert stored is not None and stored.status == "running" and stored.started_at == 5.0


async def test_list_jobs_pages_newest_first_with_an_opaque_cursor(store: ResultStore,
                                                                   tenant: str) -> None:
    now = time.time()
    jobs = [make_job(tenant, created_at=now - 100 + i) for i in range(7)]
    for job in jobs:
        await store.create_job(job)
    await store.create_job(make_job("someone-else", created_at=now))
    seen, cursor, pages = [], None, 0
    while True:
        page, cursor = await store.list_jobs(tenant, cursor=cursor, limit=3)
        seen += [j.job_id for j in page]
        pages += 1
        if cursor is None:
            break
    assert seen == [j.job_id for j in reversed(jobs)]
    assert pages == 3
    with pytest.raises(InvalidCursor):
        await store.list_jobs(tenant, cursor="not-a-cursor", limit=3)


async def test_unpublished_jobs_are_old_unpublished_and_unfinished(store: ResultStore,
                                                                   tenant: str) -> None:
    now = time.time()
    stuck = make_job(tenant, created_at=now - 120)
    published = make_job(tenant, created_at=now - 110)
    fresh = make_job(tenant, created_at=now - 1)
    cancelled = make_job(tenant, created_at=now - 100)
    for job in (stuck, published, fresh, cancelled):
        await store.create_job(job)
    await store.mark_published(published.job_id)
    await store.finish_job(cancelled.job_id, status="failed", outcome=None, finished_at=now,
                           error_code="cancelled", error_message="cancelled by client")
    found = await store.unpublished_jobs(older_than=now - 30)
    assert [j.job_id for j in found if j.tenant == tenant] == [stuck.job_id]
    assert (await store.get_job(published.job_id)).published is True


async def test_mark_started_sets_started_at_once(store: ResultStore, tenant: str) -> None:
    job = make_job(tenant)
    await store.create_job(job)
    await store.mark_started(job.job_id, 10.0)
    await store.mark_started(job.job_id, 20.0)
    stored = await store.get_job(job.job_id)
    assert (stored.started_at, stored.status) == (10.0, "running")


async def test_a_terminal_job_never_changes_again(store: ResultStore, tenant: str) -> None:
    job = make_job(tenant)
    await store.create_job(job)
    assert await store.finish_job(job.job_id, status="succeeded", outcome="partial",
                                  finished_at=30.0) is True
    assert await store.finish_job(job.job_id, status="failed", outcome=None, finished_at=40.0,
                                  error_code="cancelled", error_message="too late") is False
    await store.mark_started(job.job_id, 50.0)
    stored = await store.get_job(job.job_id)
    assert (stored.status, stored.outcome, stored.finished_at) == ("succeeded", "partial", 30.0)
    assert (stored.error_code, stored.started_at) == (None, None)
    assert await store.finish_job("no-such-job", status="failed", outcome=None,
                                  finished_at=1.0) is False


async def test_of_two_racing_finishers_exactly_one_wins(store: ResultStore, tenant: str) -> None:
    job = make_job(tenant)
    await store.create_job(job)
    results = await asyncio.gather(*(
        store.finish_job(job.job_id, status=status, outcome=None, finished_at=float(i))
        for i, status in enumerate(["succeeded", "failed"] * 5)))
    assert sorted(results) == [False] * 9 + [True]


async def test_finish_job_needs_a_terminal_status(store: ResultStore, tenant: str) -> None:
    with pytest.raises(ValueError, match="terminal"):
        await store.finish_job("j", status="running", outcome=None, finished_at=1.0)


# Items


async def test_items_read_back_field_for_field(store: ResultStore, tenant: str) -> None:
    job = make_job(tenant, total=3)
    await store.create_job(job)
    items = [ok(job, 0), bad(job, 1), ok(job, 2, output=b"\x00\xff")]
    await store.upsert_items(items)
    assert await store.get_items(job.job_id, status=None, after_index=-1, limit=10) == items


async def test_upsert_is_first_writer_wins(store: ResultStore, tenant: str) -> None:
    job = make_job(tenant, total=4)
    await store.create_job(job)
    first = [ok(job, 0), ok(job, 1)]
    await store.upsert_items(first)
    await store.upsert_items([ok(job, 0, b"other", at=2.0), ok(job, 1, at=3.0)])  # a re-run
    await store.upsert_items([bad(job, 0, "internal_error"), bad(job, 2)])  # a late failure
    got = await store.get_items(job.job_id, status=None, after_index=-1, limit=10)
    assert got == [*first, bad(job, 2)]
    assert await store.item_counts(job.job_id) == (2, 1)


async def test_only_terminal_items_are_written(store: ResultStore, tenant: str) -> None:
    job = make_job(tenant)
    with pytest.raises(ValueError, match="terminal"):
        await store.upsert_items([ItemRecord(job.job_id, 0, "running", 2)])
    await store.upsert_items([])


async def test_counts_and_done_indexes_rebuild_the_cache(store: ResultStore, tenant: str) -> None:
    job = make_job(tenant, total=2500)
    await store.create_job(job)
    assert await store.item_counts(job.job_id) == (0, 0)
    done = [ok(job, i) for i in (0, 999, 1000, 2499)] + [bad(job, i) for i in (5, 1500)]
    await store.upsert_items(done)
    assert await store.item_counts(job.job_id) == (4, 2)
    assert await store.done_indexes(job.job_id) == [
        (0, "succeeded"), (5, "failed"), (999, "succeeded"), (1000, "succeeded"),
        (1500, "failed"), (2499, "succeeded")]


async def test_get_items_pages_by_index_and_filters_by_status(store: ResultStore,
                                                              tenant: str) -> None:
    job = make_job(tenant, total=3000)
    await store.create_job(job)
    await store.upsert_items([(bad if i % 3 == 0 else ok)(job, i) for i in range(0, 3000, 7)])
    page = await store.get_items(job.job_id, status=None, after_index=14, limit=4)
    assert [i.index for i in page] == [21, 28, 35, 42]
    failed = await store.get_items(job.job_id, status="failed", after_index=990, limit=3)
    assert [i.index for i in failed] == [1008, 1029, 1050]  # crosses an item bucket
    assert all(i.status == "failed" for i in failed)
    succeeded = await store.get_items(job.job_id, status="succeeded", after_index=2990, limit=9)
    assert [i.index for i in succeeded] == [2996]
    assert await store.get_items(job.job_id, status=None, after_index=2999, limit=5) == []


async def test_iter_items_streams_every_item_in_pages(store: ResultStore, tenant: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    job = make_job(tenant, total=1200)
    await store.create_job(job)
    for start in range(0, 1200, 300):  # in the order runners would finish them
        await store.upsert_items([ok(job, i) for i in range(start, start + 300)][::-1])
    limits = []
    get_items = store.get_items

    async def spy(*args, **kwargs):
        limits.append(kwargs["limit"])
        return await get_items(*args, **kwargs)
    monkeypatch.setattr(store, "get_items", spy)
    indexes = [item.index async for item in store.iter_items(job.job_id, page_size=500)]
    assert indexes == list(range(1200))
    assert limits == [500, 500, 500]


# Idempotency


async def test_fifty_concurrent_claims_make_exactly_one_winner(store: ResultStore,
                                                               tenant: str) -> None:
    claims = [idem(tenant, "key-1", f"job-{i}") for i in range(50)]
    results = await asyncio.gather(*(store.claim_idempotency(c, now=T0) for c in claims))
    winners = [rec for rec, created in results if created]
    assert len(winners) == 1
    assert {rec.job_id for rec, _ in results} == {winners[0].job_id}
    assert await store.get_idempotency(tenant, "key-1", now=T0) == winners[0]


async def test_a_live_claim_is_returned_to_later_claimers(store: ResultStore, tenant: str) -> None:
    first = idem(tenant, "k", "job-a")
    assert await store.claim_idempotency(first, now=T0) == (first, True)
    later = idem(tenant, "k", "job-b", at=T0 + 60)
    assert await store.claim_idempotency(later, now=T0 + 60) == (first, False)
    other = idem(tenant + "-other", "k", "job-c")
    assert await store.claim_idempotency(other, now=T0 + 60) == (other, True)


async def test_an_expired_claim_is_replaced(store: ResultStore, tenant: str) -> None:
    # Cassandra's row TTL counts from the real clock: a claim 100 s long starts now, not when
    # this module was imported (minutes earlier in a full run: the row would live 1 s).
    t0 = time.time()
    old = idem(tenant, "k", "job-old", at=t0, ttl=100.0)
    await store.claim_idempotency(old, now=t0)
    assert await store.get_idempotency(tenant, "k", now=t0 + 99) == old
    assert await store.get_idempotency(tenant, "k", now=t0 + 100) is None
    new = idem(tenant, "k", "job-new", at=t0 + 200)
    assert await store.claim_idempotency(new, now=t0 + 200) == (new, True)
    assert await store.get_idempotency(tenant, "k", now=t0 + 200) == new


# Retention and lifecycle


async def test_purge_removes_only_what_expired(store: ResultStore, tenant: str) -> None:
    now = time.time()
    old, live = make_job(tenant, expires_at=now - 1), make_job(tenant, expires_at=now + DAY)
    for job in (old, live):
        await store.create_job(job)
        await store.upsert_items([ok(job, 0), bad(job, 1)])
    await store.claim_idempotency(idem(tenant, "old", old.job_id, at=now - 10, ttl=5), now=now)
    await store.claim_idempotency(idem(tenant, "live", live.job_id, at=now, ttl=DAY), now=now)
    deleted = await store.purge_expired(now)
    if store.expires_by_ttl:
        assert deleted == 0  # rows carry a TTL; the database expires them itself
        return
    assert deleted == 4  # the old job, its two items, its idempotency key
    assert await store.get_job(old.job_id) is None
    assert await store.item_counts(old.job_id) == (0, 0)
    assert await store.get_job(live.job_id) == live
    assert await store.item_counts(live.job_id) == (1, 1)
    assert await store.get_idempotency(tenant, "live", now=now) is not None
    assert await store.purge_expired(now) == 0


async def test_ping_answers_and_close_is_idempotent(store: ResultStore) -> None:
    await store.ping()
    await store.close()
    await store.close()


async def test_a_page_holds_at_least_one_row(store: ResultStore, tenant: str) -> None:
    with pytest.raises(ValueError, match="limit"):
        await store.list_jobs(tenant, cursor=None, limit=0)
    with pytest.raises(ValueError, match="limit"):
        await store.get_items("j", status=None, after_index=-1, limit=-1)
