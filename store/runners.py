"""Which runners are alive per model version, and what each can do: heartbeats in Redis."""

from __future__ import annotations

import json
import time

import msgspec
import redis.asyncio as aioredis

ALIVE_S = 15.0
"""Seconds since its last heartbeat within which a runner counts as alive."""


class RunnerPool(msgspec.Struct, frozen=True):
    """The live runners of one model version, as their heartbeats last reported them."""

    count: int
    capacity: float | None
    """Mean items/s per fully busy runner (None: nothing measured yet)."""
    token_rate: float | None
    """The slowest runner's padded tokens/s when busy: a batch sized by time must fit it."""


class RunnerStat(msgspec.Struct, frozen=True):
    """One live runner as its last heartbeat reported it."""

    runner_id: str
    busy_ratio: float
    """Fraction of wall time it spent in inference (its own measure)."""
    capacity: float | None
    """Items/s when fully busy (None: nothing measured yet)."""
    heartbeat_age_s: float


def _key(model: str, version: int) -> str:
    return f"inferq:runners:{model}:{version}"


class RunnerRegistry:
    """A sorted set of runner ids by last heartbeat, and a hash of their measured stats."""

    def __init__(self, redis: aioredis.Redis):
        self._r = redis

    async def heartbeat(self, model: str, version: int, runner_id: str, busy_ratio: float,
                        capacity: float | None = None, token_rate: float | None = None) -> None:
        """Record that the runner is alive, with its busy ratio and measured capacity. Runners
        silent for four ``ALIVE_S`` are pruned; the keys expire eight after the last beat."""
        now = time.time()
        stats = json.dumps({"busy": round(busy_ratio, 4), "capacity": capacity,
                            "tokens": token_rate})
        async with self._r.pipeline(transaction=True) as p:
            p.zadd(_key(model, version), {runner_id: now})
            p.zremrangebyscore(_key(model, version), "-inf", now - 4 * ALIVE_S)
            p.hset(f"{_key(model, version)}:stats", runner_id, stats)
            p.expire(_key(model, version), int(8 * ALIVE_S))
            p.expire(f"{_key(model, version)}:stats", int(8 * ALIVE_S))
            await p.execute()

    async def leave(self, model: str, version: int, runner_id: str) -> None:
        """Forget the runner at once (a clean stop), rather than when its heartbeat ages out."""
        async with self._r.pipeline(transaction=True) as p:
            p.zrem(_key(model, version), runner_id)
            p.hdel(f"{_key(model, version)}:stats", runner_id)
            await p.execute()

    async def count(self, model: str, version: int) -> int:
        """Runners of the model version heard from within ``ALIVE_S``."""
        return int(await self._r.zcount(_key(model, version), time.time() - ALIVE_S, "+inf"))

    async def pool(self, model: str, version: int) -> RunnerPool:
        """The live runners of the model version and what they measured, in two reads."""
        alive = await self._r.zrangebyscore(_key(model, version), time.time() - ALIVE_S, "+inf")
        if not alive:
            return RunnerPool(0, None, None)
        raw = await self._r.hmget(f"{_key(model, version)}:stats", alive)
        stats = [json.loads(r) for r in raw if r]
        caps = [c for st in stats if (c := st.get("capacity"))]
        rates = [t for st in stats if (t := st.get("tokens"))]
        return RunnerPool(len(alive), sum(caps) / len(caps) if caps else None,
                          min(rates) if rates else None)

    async def members(self, model: str, version: int) -> list[RunnerStat]:
        """Each live runner of the model version with what its last heartbeat said (for the
        operator view), in two reads."""
        now = time.time()
        alive = await self._r.zrangebyscore(_key(model, version), now - ALIVE_S, "+inf",
                                            withscores=True)
        if not alive:
            return []
        raw = await self._r.hmget(f"{_key(model, version)}:stats", [m for m, _ in alive])
        out = []
        for (member, seen), stats in zip(alive, raw, strict=True):
            st = json.loads(stats) if stats else {}
            name = member.decode() if isinstance(member, bytes) else str(member)
            out.append(RunnerStat(name, float(st.get("busy") or 0.0), st.get("capacity"),
                                  max(0.0, now - float(seen))))
        return out

    async def count_inferred(self, model: str, version: int, items: int) -> None:
        """Items run through the backend, duplicates included: against the items counted
        once, this is the cost of redelivery (the chaos suite reports the ratio)."""
        try:
            await self._r.incrby(f"{_key(model, version)}:inferred", items)
        except Exception:  # noqa: BLE001 - a statistic must never fail a batch
            pass

    async def inferred(self, model: str, version: int) -> int:
        """Items run through the backend so far, duplicates included (see ``count_inferred``)."""
        return int(await self._r.get(f"{_key(model, version)}:inferred") or 0)
