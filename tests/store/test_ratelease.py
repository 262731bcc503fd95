"""Leased poll tokens against a real redis-server: a lease is taken from the shared bucket
(so gateways together never admit more than it allows), sized by demand, shared by
concurrent polls, and dropped when it expires. The bucket's clock is fixed (no refill) and
the lease clock is a fake, so every count is exact."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from store.ratelease import ReadLeases
from store.ratelimit import Bucket, RateLimiter

T0 = 1_700_000_000.0


class CountingLimiter(RateLimiter):
    """The real limiter, counting its Redis calls."""

    def __init__(self, redis: Redis) -> None:
        super().__init__(redis)
        self.calls = 0

    async def take(self, *a, **k):
        self.calls += 1
        return await super().take(*a, **k)


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def polls(capacity: float = 1000.0, cost: float = 1.0) -> Bucket:
    return Bucket("polls", "rl:k:polls", rate=capacity / 2, capacity=capacity, cost=cost)


@pytest.fixture
def limiter(redis: Redis) -> CountingLimiter:
    return CountingLimiter(redis)


async def test_a_first_poll_takes_only_its_cost_and_busy_keys_lease_more(limiter,
                                                                         redis) -> None:
    clock = Clock()
    leases = ReadLeases(limiter, lease_s=0.5, clock=clock)
    d = await leases.take(T0, polls())
    assert d.allowed and d.buckets[0].remaining == 999  # nothing leased beyond the poll
    for _ in range(200):
        assert (await leases.take(T0, polls())).allowed
    assert limiter.calls < 12  # leases doubled: 1, 2, 4, ... instead of 201 calls
    shared = await RateLimiter(redis).take(T0, [polls(cost=0)])
    assert 999 - 200 - shared.buckets[0].remaining < 256  # the unspent lease, bounded


async def test_gateways_sharing_a_bucket_never_admit_more_than_it_holds(redis) -> None:
    clock = Clock()
    gateways = [ReadLeases(RateLimiter(redis), lease_s=10, clock=clock) for _ in range(3)]

    async def poll(i: int) -> bool:
        return (await gateways[i % 3].take(T0, polls(capacity=100))).allowed

    admitted = sum(await asyncio.gather(*(poll(i) for i in range(400))))
    assert 0 < admitted <= 100


async def test_concurrent_polls_of_one_key_share_one_refill(limiter) -> None:
    clock = Clock()
    leases = ReadLeases(limiter, lease_s=10, clock=clock)
    for _ in range(8):  # grow the lease
        await leases.take(T0, polls())
    before = limiter.calls
    results = await asyncio.gather(*(leases.take(T0, polls()) for _ in range(50)))
    assert all(d.allowed for d in results)
    assert limiter.calls - before <= 4  # not one call per poll


async def test_an_expired_lease_is_dropped_and_the_next_is_sized_by_what_was_spent(
        limiter) -> None:
    clock = Clock()
    leases = ReadLeases(limiter, lease_s=0.05, clock=clock)
    for _ in range(20):
        await leases.take(T0, polls())
    clock.t += 1.0  # the lease expires unspent
    calls = limiter.calls
    d = await leases.take(T0, polls())
    assert d.allowed and limiter.calls == calls + 1


async def test_a_short_bucket_refuses_as_the_shared_bucket_would(limiter) -> None:
    clock = Clock()
    leases = ReadLeases(limiter, lease_s=10, clock=clock)
    admitted = 0
    for _ in range(10):
        admitted += (await leases.take(T0, polls(capacity=4))).allowed
    assert admitted == 4
    d = await leases.take(T0, polls(capacity=4))
    assert not d.allowed and d.refused_by == "polls" and d.retry_after_s > 0


async def test_a_forced_charge_is_taken_from_the_lease_or_the_bucket(limiter) -> None:
    clock = Clock()
    leases = ReadLeases(limiter, lease_s=10, clock=clock)
    for _ in range(4):
        await leases.take(T0, polls(capacity=4))
    d = await leases.take(T0, polls(capacity=4, cost=0.5), force=True)
    assert d.allowed and d.buckets[0].remaining == pytest.approx(-0.5)
