"""The job state cache counts every item exactly once, however often a batch is replayed, and
a job that reached a terminal state never changes again (real redis-server)."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis

from schemas.states import JobStatus, Outcome, derive_job_state
from store.jobstate import JobStateCache
from store.redis_errors import CacheRejected
from tests.store.jobstate_helpers import EXPIRES, T0, counts, job, snap


async def test_replayed_batch_is_counted_once(cache: JobStateCache) -> None:
    assert await cache.init_job("j1", job(4))
    batch = [(0, "s"), (1, "f"), (2, "s"), (3, "s")]
    first = await cache.record_results("j1", batch, T0 + 1)
    again = await cache.record_results("j1", batch, T0 + 2)
    assert (first.newly_counted, first.became_terminal) == (4, True)
    assert (again.newly_counted, again.became_terminal) == (0, False)
    assert (again.status, again.outcome) == (JobStatus.SUCCEEDED, Outcome.PARTIAL)
    s = await snap(cache, "j1")
    assert counts(s) == (0, 0, 3, 1)
    assert s.finished_at == T0 + 1


async def test_init_job_twice_is_a_no_op(cache: JobStateCache, redis: Redis) -> None:
    assert await cache.init_job("j1", job(3))
    await cache.record_results("j1", [(0, "s")], T0 + 1)
    assert not await cache.init_job("j1", job(9, tenant="other"))
    s = await snap(cache, "j1")
    assert (s.tenant, s.total, s.succeeded) == ("acme", 3, 1)
    assert EXPIRES - time.time() - 5 < await redis.ttl(cache.key("j1")) <= 3600


async def test_fifty_concurrent_writers_count_each_item_once(
    cache: JobStateCache, redis_url: str
) -> None:
    total = 1000
    await cache.init_job("big", job(total))
    other_pool = Redis.from_url(redis_url)
    caches = [cache, JobStateCache(other_pool)]

    def mark(i: int) -> str:
        return "f" if i % 7 == 0 else "s"

    async def writer(w: int) -> list[tuple[int, bool]]:
        c = caches[w % 2]
        # Overlapping windows of 60 items, stepping 20: every item is seen by ~3 writers.
        indexes = [i for i in range(w * 20 - 20, w * 20 + 40) if 0 <= i < total]
        seen = []
        for _ in range(2):  # each writer also replays its own work, as a redelivery would
            for k in range(0, len(indexes), 16):
                chunk = indexes[k:k + 16]
                await c.mark_running("big", chunk, T0 + 1)
                out = await c.record_results("big", [(i, mark(i)) for i in chunk], T0 + 2)
                seen.append((out.newly_counted, out.became_terminal))
                await asyncio.sleep(0)
        return seen

    try:
        results = await asyncio.gather(*(writer(w) for w in range(50)))
    finally:
        await other_pool.aclose()
    calls = [r for rs in results for r in rs]
    assert sum(n for n, _ in calls) == total
    assert sum(b for _, b in calls) == 1
    failed = sum(1 for i in range(total) if mark(i) == "f")
    s = await snap(cache, "big")
    assert counts(s) == (0, 0, total - failed, failed)
    assert (s.status, s.outcome) == (JobStatus.SUCCEEDED, Outcome.PARTIAL)


@pytest.mark.parametrize(
    ("marks", "status", "outcome"),
    [
        ("ssff", JobStatus.SUCCEEDED, Outcome.PARTIAL),
        ("ffff", JobStatus.FAILED, Outcome.ALL_FAILED),
        ("ssss", JobStatus.SUCCEEDED, Outcome.ALL_SUCCEEDED),
    ],
)
async def test_terminal_status_and_outcome_follow_the_counts(
    cache: JobStateCache, marks: str, status: JobStatus, outcome: Outcome
) -> None:
    await cache.init_job("j", job(len(marks)))
    out = await cache.record_results("j", list(enumerate(marks)), T0 + 5)
    assert (out.status, out.outcome, out.became_terminal) == (status, outcome, True)
    s = await snap(cache, "j")
    assert derive_job_state(s.total, s.total, s.succeeded, s.failed) == (status, outcome)
    # Results arrived without mark_running: the job still started, when it finished.
    assert s.started_at == s.finished_at == T0 + 5


async def test_mark_running_moves_queued_to_running_once(cache: JobStateCache) -> None:
    await cache.init_job("j", job(10))
    s = await snap(cache, "j")
    assert (s.status, s.started_at, counts(s)) == (JobStatus.QUEUED, None, (10, 0, 0, 0))

    assert await cache.mark_running("j", [0, 1, 2], T0 + 1) == JobStatus.RUNNING
    assert await cache.mark_running("j", [2, 3], T0 + 2) == JobStatus.RUNNING
    s = await snap(cache, "j")
    assert (s.status, s.started_at, counts(s)) == (JobStatus.RUNNING, T0 + 1, (6, 4, 0, 0))

    out = await cache.record_results("j", [(0, "s"), (1, "f"), (9, "s")], T0 + 3)
    assert (out.status, out.outcome, out.newly_counted) == (JobStatus.RUNNING, None, 3)
    # A redelivered batch marks running again: done items stay done, running ones stay counted.
    await cache.mark_running("j", [0, 1, 2, 3], T0 + 4)
    s = await snap(cache, "j")
    assert counts(s) == (5, 2, 2, 1)
    doc = s.to_doc()
    assert (doc.counts.pending, doc.counts.running, doc.counts.total) == (5, 2, 10)
    assert doc.started_at == "2023-11-14T22:13:21.250Z"
    assert doc.finished_at is None and doc.outcome is None and doc.error is None


async def test_a_terminal_job_never_changes(cache: JobStateCache) -> None:
    await cache.init_job("done", job(2))
    await cache.record_results("done", [(0, "s"), (1, "f")], T0 + 1)
    before = await snap(cache, "done")

    late = await cache.record_results("done", [(0, "f"), (1, "s")], T0 + 9)
    assert (late.status, late.outcome, late.newly_counted, late.became_terminal) == (
        JobStatus.SUCCEEDED, Outcome.PARTIAL, 0, False)
    assert await cache.mark_running("done", [0, 1], T0 + 9) == JobStatus.SUCCEEDED
    fail = await cache.fail_remaining("done", "cancelled", "too late", T0 + 9)
    assert (fail.status, fail.newly_failed, fail.became_terminal) == (
        JobStatus.SUCCEEDED, [], False)
    assert await snap(cache, "done") == before  # rev included: not even a no-op write


async def test_late_results_of_a_cancelled_job_count_nothing(cache: JobStateCache) -> None:
    await cache.init_job("c", job(5))
    await cache.mark_running("c", [0, 1], T0 + 1)
    out = await cache.fail_remaining("c", "cancelled", "cancelled by the tenant", T0 + 2)
    assert out.newly_failed == [0, 1, 2, 3, 4]
    before = await snap(cache, "c")
    late = await cache.record_results("c", [(0, "s"), (1, "s")], T0 + 3)
    assert (late.newly_counted, late.became_terminal, late.status) == (0, False, JobStatus.FAILED)
    assert await cache.mark_running("c", [2], T0 + 3) == JobStatus.FAILED
    assert await snap(cache, "c") == before


async def test_out_of_range_index_is_rejected_before_any_write(cache: JobStateCache) -> None:
    await cache.init_job("j", job(3))
    before = await snap(cache, "j")
    with pytest.raises(CacheRejected, match=r"outside 0\.\.2"):
        await cache.record_results("j", [(0, "s"), (3, "s")], T0)
    with pytest.raises(CacheRejected, match=r"outside 0\.\.2"):
        await cache.mark_running("j", [1, -1], T0)
    with pytest.raises(ValueError):
        await cache.record_results("j", [(0, "x")], T0)
    assert await snap(cache, "j") == before
