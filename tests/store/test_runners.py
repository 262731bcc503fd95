"""The runner registry: who is alive per model version, and what they measured."""

from __future__ import annotations

from redis.asyncio import Redis

from store.runners import RunnerRegistry


async def test_live_runners_their_mean_capacity_and_the_slowest_token_rate(redis: Redis) -> None:
    reg = RunnerRegistry(redis)
    assert await reg.count("m", 1) == 0
    assert await reg.capacity("m", 1) is None and await reg.token_rate("m", 1) is None
    await reg.heartbeat("m", 1, "a", 0.5, capacity=400.0, token_rate=16_000.0)
    await reg.heartbeat("m", 1, "b", 0.9, capacity=200.0, token_rate=8_000.0)
    await reg.heartbeat("m", 1, "c", 0.0)  # just started: nothing measured yet
    assert await reg.count("m", 1) == 3
    assert await reg.capacity("m", 1) == 300.0
    assert await reg.token_rate("m", 1) == 8_000.0  # a batch must fit the slowest
    await reg.leave("m", 1, "b")
    assert await reg.token_rate("m", 1) == 16_000.0
