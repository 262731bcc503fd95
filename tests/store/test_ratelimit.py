"""Token buckets and ceilings in one Lua call, against a real redis-server, on a fake clock
(the caller passes ``now``): all or nothing, exact refill, Retry-After, self-expiring keys."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from store.ratelimit import Bucket, Ceiling, RateLimiter

T0 = 1_700_000_000.0


@pytest.fixture
def limiter(redis: Redis) -> RateLimiter:
    return RateLimiter(redis)


def req(cost: float = 1.0) -> Bucket:
    return Bucket("requests", "rl:k:req", rate=2.0, capacity=4.0, cost=cost)


async def test_a_full_bucket_admits_its_capacity_then_refuses_with_the_wait(limiter) -> None:
    for i in range(4):
        d = await limiter.take(T0, [req()])
        assert d.allowed and d.buckets[0].remaining == 3 - i
    d = await limiter.take(T0, [req()])
    assert not d.allowed and d.refused_by == "requests"
    assert d.retry_after_s == pytest.approx(0.5)  # one token at 2 tokens/s
    assert d.buckets[0].remaining == 0


async def test_the_bucket_refills_at_its_rate_up_to_its_capacity(limiter) -> None:
    for _ in range(4):
        await limiter.take(T0, [req()])
    assert not (await limiter.take(T0 + 0.49, [req()])).allowed
    d = await limiter.take(T0 + 0.5, [req()])
    assert d.allowed and d.buckets[0].remaining == pytest.approx(0)
    d = await limiter.take(T0 + 100, [req()])  # long idle: full, not more
    assert d.buckets[0].remaining == pytest.approx(3)


async def test_a_clock_step_backwards_counts_as_no_time(limiter) -> None:
    for _ in range(4):
        await limiter.take(T0, [req()])
    assert not (await limiter.take(T0 - 50, [req()])).allowed


async def test_buckets_are_all_or_nothing(limiter) -> None:
    items = Bucket("items", "rl:k:items", rate=10.0, capacity=100.0, cost=80.0)
    assert (await limiter.take(T0, [req(), items])).allowed
    d = await limiter.take(T0, [req(), items])  # requests has room, items does not
    assert not d.allowed and d.refused_by == "items"
    assert d.retry_after_s == pytest.approx(6.0)  # (80 - 20) / 10
    d = await limiter.take(T0, [req(0.0)])
    assert d.buckets[0].remaining == 3  # the refused call took nothing


async def test_ceilings_refuse_without_taking_and_report_counts(limiter, redis) -> None:
    await redis.hset("bl", mapping={"t:acme": 90, "m:minilm:batch": 5, "m:minilm:interactive": 7})
    fields = ("m:minilm:batch", "m:minilm:interactive")
    quota = Ceiling("quota", "bl", ("t:acme",), limit=100, add=10)  # 90 + 10 fits exactly
    d = await limiter.take(T0, [req()], [quota, Ceiling("model", "bl", fields, 20, 10)])
    assert not d.allowed and d.refused_by == "model" and d.retry_after_s == 0
    assert d.counts == {"quota": 90, "model": 12}
    assert (await limiter.take(T0, [req(0.0)])).buckets[0].remaining == 4  # nothing taken
    d = await limiter.take(T0, [req()], [quota, Ceiling("model", "bl", fields, 20, 8)])
    assert d.allowed and d.buckets[0].remaining == 3
    d = await limiter.take(T0, [req()], [Ceiling("quota", "bl", ("t:acme",), 100, 11)])
    assert not d.allowed and d.refused_by == "quota"


async def test_a_bucket_refusal_is_reported_before_a_ceiling(limiter, redis) -> None:
    await redis.hset("bl", "t:acme", 1000)
    quota = Ceiling("quota", "bl", ("t:acme",), limit=100, add=1)
    for _ in range(4):
        await limiter.take(T0, [req()])
    assert (await limiter.take(T0, [req()], [quota])).refused_by == "requests"


async def test_negative_counters_count_as_zero(limiter, redis) -> None:
    await redis.hset("bl", "t:acme", -50)
    d = await limiter.take(T0, [], [Ceiling("quota", "bl", ("t:acme",), limit=10, add=10)])
    assert d.allowed and d.counts["quota"] == 0


async def test_force_takes_even_when_short_but_not_below_minus_capacity(limiter) -> None:
    for _ in range(4):
        await limiter.take(T0, [req()])
    d = await limiter.take(T0, [req(3.0)], force=True)
    assert d.allowed and d.buckets[0].remaining == -3
    d = await limiter.take(T0, [req(3.0)], force=True)
    assert d.buckets[0].remaining == -4
    assert (await limiter.take(T0 + 2.0, [req()])).retry_after_s == pytest.approx(0.5)


async def test_a_bucket_key_expires_once_it_would_be_full(limiter, redis) -> None:
    await limiter.take(T0, [req(2.0)])  # 2 of 4 tokens left: full again in 1 s
    assert 1000 < await redis.pttl("rl:k:req") <= 2000
    assert not await redis.exists("rl:k:items")  # only what was taken is stored


async def test_a_bucket_needs_a_positive_rate_and_capacity() -> None:
    with pytest.raises(ValueError):
        Bucket("x", "k", rate=0, capacity=1)
    with pytest.raises(ValueError):
        Bucket("x", "k", rate=1, capacity=0)
