"""The runner registry: who is alive per model version, and what they measured."""

from __future__ import annotations

from redis.asyncio import Redis

from store.runners import RunnerPool, RunnerRegistry


async def test_the_pool_counts_live_runners_averages_capacity_takes_the_slowest_rate(
        redis: Redis) -> None:
    reg = RunnerRegistry(redis)
    assert await reg.count("m", 1) == 0
    assert await reg.pool("m", 1) == RunnerPool(0, None, None)
    await reg.heartbeat("m", 1, "a", 0.5, capacity=400.0, token_rate=16_000.0)
    await reg.heartbeat("m", 1, "b", 0.9, capacity=200.0, token_rate=8_000.0)
    await reg.heartbeat("m", 1, "c", 0.0)  # just started: nothing measured yet
    assert await reg.count("m", 1) == 3
    assert (await reg.pool("m", 1)).capacity == 300.0  # the mean of what was measured
    # A batch must fit the slowest; the runner that measured nothing yet is counted, not averaged.
    assert await reg.pool("m", 1) == RunnerPool(3, 300.0, 8_000.0)
    await reg.leave("m", 1, "b")
    assert (await reg.pool("m", 1)).token_rate == 16_000.0
