"""The backlog counters behind quotas and overload heal themselves: ``reconcile_backlog``
recomputes them from the live jobs, fixing what the counting scripts cannot see."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from schemas.states import Priority
from store.jobstate import JobFields, JobStateCache


@pytest.fixture
async def cache(redis_url: str) -> AsyncIterator[JobStateCache]:
    client = Redis.from_url(redis_url)
    yield JobStateCache(client)
    await client.aclose()


def job(total: int, tenant: str = "acme", expires_in: float = 3600, **kw) -> JobFields:
    now = time.time()
    return JobFields(tenant=tenant, model="minilm", version=1,
                     priority=kw.get("priority", Priority.BATCH), total=total, created_at=now,
                     expires_at=now + expires_in)


async def test_a_consistent_backlog_has_no_drift(cache) -> None:
    await cache.init_job("a", job(10))
    await cache.init_job("b", job(4, tenant="other", priority=Priority.INTERACTIVE))
    await cache.record_results("a", [(0, "s"), (1, "f")], time.time())
    live, drift = await cache.reconcile_backlog(time.time())
    assert (live, drift) == (2, {})
    assert (await cache.backlog()).tenants == {"acme": 8, "other": 4}


async def test_terminal_jobs_leave_the_live_set(cache) -> None:
    await cache.init_job("done", job(2))
    await cache.record_results("done", [(0, "s"), (1, "s")], time.time())
    await cache.init_job("cut", job(3))
    await cache.fail_remaining("cut", "cancelled", "cancelled", time.time())
    assert await cache._redis.zcard("inferq:live") == 0
    assert await cache.reconcile_backlog(time.time()) == (0, {})


async def test_a_restore_while_the_counters_survived_is_healed(cache) -> None:
    await cache.init_job("a", job(10))
    await cache.delete("a")  # the hash is lost, the counters are not: restore adds again
    await cache.restore("a", job(10), [(0, "s"), (1, "s"), (2, "f")], time.time())
    assert await cache.tenant_backlog("acme") == 17
    live, drift = await cache.reconcile_backlog(time.time())
    assert live == 1 and drift == {"t:acme": (17, 7), "m:minilm:batch": (17, 7)}
    assert await cache.tenant_backlog("acme") == 7


async def test_a_job_that_expired_unfinished_leaves_the_backlog(cache) -> None:
    await cache.init_job("short", job(5, expires_in=0.2))
    await cache.init_job("long", job(1))
    assert await cache.tenant_backlog("acme") == 6
    live, drift = await cache.reconcile_backlog(time.time() + 1)
    assert live == 1 and drift["t:acme"] == (6, 1)
    assert await cache.tenant_backlog("acme") == 1


async def test_lost_counters_are_rebuilt(cache) -> None:
    await cache.init_job("a", job(3))
    await cache._redis.delete("inferq:backlog")
    assert await cache.tenant_backlog("acme") == 0
    _, drift = await cache.reconcile_backlog(time.time())
    assert drift == {"t:acme": (0, 3), "m:minilm:batch": (0, 3)}
    assert (await cache.backlog()).models == {("minilm", "batch"): 3}


async def test_runs_are_spaced_across_processes(cache, redis_url) -> None:
    other = JobStateCache(Redis.from_url(redis_url))
    try:
        assert (await cache.reconcile_backlog(time.time(), every_s=5))[0] == 0
        assert await other.reconcile_backlog(time.time(), every_s=5) == (-1, {})
        assert (await other.reconcile_backlog(time.time()))[0] == 0  # every_s=0: always
    finally:
        await other._redis.aclose()
