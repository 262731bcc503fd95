"""A tenant's usage is counted by the job-state scripts in the same call that counts results or
ends a job: exactly once per item and per job, however often a batch is replayed, into the
UTC day of the call, and kept one day past the latest retention of the jobs counted in it
(real redis-server)."""

from __future__ import annotations

import asyncio
import time

from redis.asyncio import Redis

from store.jobstate import JobStateCache
from store.usage import DayUsage, ItemUsage, UsageLedger, day_of, usage_key
from tests.store.jobstate_helpers import EXPIRES, T0, job

DAY = day_of(T0)  # 2023-11-14


async def usage(redis: Redis, tenant: str = "acme", day: str = DAY) -> list[DayUsage]:
    return await UsageLedger(redis).read(tenant, [day])


def costs(*indexes: int) -> dict[int, ItemUsage]:
    """Item i had 10 + i input tokens and ran for 1000 µs."""
    return {i: ItemUsage(10 + i, 1000) for i in indexes}


async def test_items_tokens_and_time_of_a_replayed_batch_are_counted_once(
        cache: JobStateCache, redis: Redis) -> None:
    await cache.init_job("j1", job(4))
    batch = [(0, "s"), (1, "s"), (2, "f")]
    await cache.record_results("j1", batch, T0 + 1, costs(0, 1))
    await cache.record_results("j1", batch, T0 + 2, costs(0, 1))  # the redelivery
    assert await usage(redis) == [DayUsage(DAY, "minilm", items_succeeded=2, items_failed=1,
                                           input_tokens=21, inference_us=2000)]
    # A batch that overlaps the first counts only its new item; the job ends succeeded.
    await cache.record_results("j1", [(1, "s"), (3, "s")], T0 + 3, costs(1, 3))
    assert await usage(redis) == [DayUsage(DAY, "minilm", jobs_succeeded=1, items_succeeded=3,
                                           items_failed=1, input_tokens=34, inference_us=3000)]


async def test_a_job_whose_items_all_fail_counts_one_failed_job(
        cache: JobStateCache, redis: Redis) -> None:
    await cache.init_job("j1", job(2))
    await cache.record_results("j1", [(0, "f"), (1, "f")], T0 + 1)
    await cache.record_results("j1", [(0, "f"), (1, "f")], T0 + 2)
    assert await usage(redis) == [DayUsage(DAY, "minilm", jobs_failed=1, items_failed=2)]


async def test_a_cancel_counts_the_items_it_fails_and_one_failed_job_once(
        cache: JobStateCache, redis: Redis) -> None:
    await cache.init_job("j1", job(5))
    await cache.record_results("j1", [(0, "s"), (1, "f")], T0 + 1, costs(0))
    await cache.fail_remaining("j1", "cancelled", "cancelled by the client", T0 + 2)
    await cache.fail_remaining("j1", "cancelled", "cancelled by the client", T0 + 3)
    # Late results of the cancelled job's batch count nothing, in the job or in usage.
    await cache.record_results("j1", [(2, "s"), (3, "s")], T0 + 4, costs(2, 3))
    assert await usage(redis) == [DayUsage(DAY, "minilm", jobs_failed=1, items_succeeded=1,
                                           items_failed=4, input_tokens=10, inference_us=1000)]


async def test_usage_is_kept_per_tenant_model_and_utc_day(cache: JobStateCache,
                                                           redis: Redis) -> None:
    await cache.init_job("a", job(1))
    await cache.init_job("b", job(1, tenant="other"))
    await cache.init_job("c", job(2, model="e5"))
    await cache.record_results("a", [(0, "s")], T0, costs(0))
    await cache.record_results("b", [(0, "s")], T0, costs(0))
    await cache.record_results("c", [(0, "s")], T0, costs(0))
    await cache.record_results("c", [(1, "s")], T0 + 86400, costs(1))  # the next UTC day
    next_day = day_of(T0 + 86400)
    rows = await UsageLedger(redis).read("acme", [DAY, next_day])
    assert rows == [
        DayUsage(DAY, "e5", items_succeeded=1, input_tokens=10, inference_us=1000),
        DayUsage(DAY, "minilm", jobs_succeeded=1, items_succeeded=1, input_tokens=10,
                 inference_us=1000),
        DayUsage(next_day, "e5", jobs_succeeded=1, items_succeeded=1, input_tokens=11,
                 inference_us=1000),
    ]
    assert await usage(redis, "other") == [DayUsage(DAY, "minilm", jobs_succeeded=1,
                                                    items_succeeded=1, input_tokens=10,
                                                    inference_us=1000)]
    assert await usage(redis, "nobody") == []


async def test_a_day_is_kept_a_day_past_the_latest_retention_counted_into_it(
        cache: JobStateCache, redis: Redis) -> None:
    key = usage_key("acme", DAY)
    await cache.init_job("long", job(1, expires_at=EXPIRES + 7200))
    await cache.init_job("short", job(1))
    await cache.record_results("long", [(0, "s")], T0)
    kept = (EXPIRES + 7200 + 86400) * 1000  # epoch ms
    assert abs(time.time() * 1000 + await redis.pttl(key) - kept) < 5000
    # A job with a shorter retention never shortens the day's.
    await cache.record_results("short", [(0, "s")], T0)
    assert abs(time.time() * 1000 + await redis.pttl(key) - kept) < 5000


async def test_a_call_that_counts_nothing_writes_no_usage(cache: JobStateCache,
                                                          redis: Redis) -> None:
    await cache.init_job("j1", job(2))
    await cache.mark_running("j1", [0, 1], T0)
    assert not await redis.exists(usage_key("acme", DAY))


async def test_concurrent_overlapping_writers_add_each_item_to_usage_once(
        cache: JobStateCache, redis: Redis) -> None:
    total = 300
    await cache.init_job("big", job(total))

    async def writer(w: int) -> None:
        # Windows of 45 items stepping 15: each item is written by three writers, twice.
        indexes = [i for i in range(w * 15 - 15, w * 15 + 30) if 0 <= i < total]
        for _ in range(2):
            for k in range(0, len(indexes), 8):
                chunk = indexes[k:k + 8]
                await cache.record_results("big", [(i, "s" if i % 5 else "f") for i in chunk],
                                           T0 + 1, costs(*(i for i in chunk if i % 5)))
                await asyncio.sleep(0)

    await asyncio.gather(*(writer(w) for w in range(21)))
    ok = [i for i in range(total) if i % 5]
    assert await usage(redis) == [DayUsage(
        DAY, "minilm", jobs_succeeded=1, items_succeeded=len(ok), items_failed=total - len(ok),
        input_tokens=sum(10 + i for i in ok), inference_us=1000 * len(ok))]
