"""The webhook schedule in Redis: a job's end puts its pending webhook on the due set in the
same script that ends it — a runner's count, a job-level failure, or a cache rebuilt from
the store — exactly once; claims are leased; a delivered webhook is never scheduled again."""

from __future__ import annotations

import time

import pytest
import redis.asyncio as aioredis

from schemas.states import ItemStatus, JobStatus, Priority
from schemas.webhooks import ALL_EVENTS, DeliveryState, WebhookAttempt
from store.jobstate import JobFields, JobStateCache, TerminalRecord
from store.webhooks import WebhookStore


@pytest.fixture
async def redis(redis_url: str):
    r = aioredis.from_url(redis_url)
    yield r
    await r.aclose()


def fields(total: int = 2) -> JobFields:
    now = time.time()
    return JobFields(tenant="t", model="minilm", version=1, priority=Priority.BATCH,
                     total=total, created_at=now, expires_at=now + 3600, deadline=None)


async def test_a_count_that_ends_the_job_schedules_its_webhook_once(redis) -> None:
    cache, hooks = JobStateCache(redis), WebhookStore(redis)
    f = fields()
    assert await hooks.subscribe("j1", "t", "https://example.com/h", ALL_EVENTS, f.expires_at)
    assert not await hooks.subscribe("j1", "t", "https://other/", ALL_EVENTS, f.expires_at)
    await cache.init_job("j1", f)
    await cache.record_results("j1", [(0, ItemStatus.SUCCEEDED)], time.time())
    assert await hooks.due_count() == 0  # not ended yet
    await cache.record_results("j1", [(1, ItemStatus.FAILED)], time.time())
    await cache.record_results("j1", [(1, ItemStatus.FAILED)], time.time())  # redelivered
    assert await hooks.claim_due(time.time(), 30) == ["j1"]
    assert await hooks.claim_due(time.time(), 30) == []  # leased
    assert await hooks.claim_due(time.time() + 31, 30) == ["j1"]  # the lease ran out
    n = await hooks.begin_attempt("j1")
    await hooks.record("j1", WebhookAttempt(n, "t", 1.0, True, 200), DeliveryState.DELIVERED)
    sub = await hooks.get("j1")
    assert sub.state == DeliveryState.DELIVERED and sub.url == "https://example.com/h"
    assert await hooks.due_count() == 0
    # A later rebuild of the (terminal) hash does not schedule a delivered webhook again.
    await cache.delete("j1")
    await cache.restore("j1", f, [(0, "s"), (1, "f")], time.time(),
                        terminal=TerminalRecord(JobStatus.SUCCEEDED, time.time(), None))
    assert await hooks.due_count() == 0


async def test_job_level_failure_and_rebuilt_end_schedule_it_too(redis) -> None:
    cache, hooks = JobStateCache(redis), WebhookStore(redis)
    f = fields()
    for job in ("cancelled", "rebuilt", "plain"):
        if job != "plain":
            await hooks.subscribe(job, "t", "https://example.com/h", ALL_EVENTS, f.expires_at)
        await cache.init_job(job, f)
    await cache.fail_remaining("cancelled", "cancelled", "by the client", time.time())
    await cache.fail_remaining("plain", "cancelled", "by the client", time.time())
    # Every row was written but the count that would end the job was lost with the cache:
    await cache.delete("rebuilt")
    out = await cache.restore("rebuilt", f, [(0, "s"), (1, "s")], time.time())
    assert out.became_terminal
    assert sorted(await hooks.claim_due(time.time() + 1, 30)) == ["cancelled", "rebuilt"]
    assert await hooks.get("plain") is None
