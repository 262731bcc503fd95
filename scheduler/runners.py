"""Which runners are alive per model version: heartbeats in a Redis sorted set."""

from __future__ import annotations

import time

import redis.asyncio as aioredis

ALIVE_S = 15.0


def _key(model: str, version: int) -> str:
    return f"inferq:runners:{model}:{version}"


class RunnerRegistry:
    def __init__(self, redis: aioredis.Redis):
        self._r = redis

    async def heartbeat(self, model: str, version: int, runner_id: str, busy_ratio: float) -> None:
        now = time.time()
        async with self._r.pipeline(transaction=True) as p:
            p.zadd(_key(model, version), {runner_id: now})
            p.zremrangebyscore(_key(model, version), "-inf", now - 4 * ALIVE_S)
            p.hset(f"{_key(model, version)}:busy", runner_id, f"{busy_ratio:.4f}")
            p.expire(_key(model, version), int(8 * ALIVE_S))
            await p.execute()

    async def leave(self, model: str, version: int, runner_id: str) -> None:
        await self._r.zrem(_key(model, version), runner_id)

    async def count(self, model: str, version: int) -> int:
        return int(await self._r.zcount(_key(model, version), time.time() - ALIVE_S, "+inf"))
