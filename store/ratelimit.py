"""Token buckets and ceilings in Redis, decided in one Lua call (``lua/ratelimit.lua``).

A request names the buckets it draws from (per API key: requests/s, items/min, polls/s) and
the ceilings it must stay under (a tenant's backlog quota, a model's backlog limit, read from
the backlog hash the counting scripts keep). Either every bucket pays and the request is
admitted, or nothing changes and the answer says which limit refused and when to retry.
Buckets live in Redis so every gateway replica shares them; the caller's clock is the clock
(replicas are NTP-close; a step backwards counts as no time passing).
"""

from __future__ import annotations

from pathlib import Path

import msgspec
from redis.asyncio import Redis

from store.redis_errors import redis_errors

__all__ = ["Bucket", "BucketState", "Ceiling", "Decision", "RateLimiter"]

_LUA = (Path(__file__).with_name("lua") / "ratelimit.lua").read_text()


class Bucket(msgspec.Struct, frozen=True):
    """A token bucket: ``capacity`` tokens at most, refilled at ``rate`` per second."""

    name: str
    key: str
    rate: float
    capacity: float
    cost: float = 1.0

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.capacity <= 0 or self.cost < 0:
            raise ValueError(f"bucket {self.name}: rate and capacity > 0, cost >= 0")


class Ceiling(msgspec.Struct, frozen=True):
    """A limit on the sum of counters (fields of one hash) that a request would add to."""

    name: str
    key: str
    fields: tuple[str, ...]
    limit: int
    add: int


class BucketState(msgspec.Struct, frozen=True):
    """A bucket after the decision: tokens left and seconds until it is full again."""

    name: str
    capacity: float
    rate: float
    remaining: float
    full_in_s: float


class Decision(msgspec.Struct, frozen=True):
    """The answer for one request: admitted or not, which limit refused, and every bucket's
    state (for the RateLimit headers)."""

    allowed: bool
    refused_by: str | None
    """The name of the bucket or ceiling that refused (the first in order), or None."""
    retry_after_s: float
    """For a refusing bucket: when it will hold the cost again. 0 for ceilings (unknown)."""
    buckets: list[BucketState]
    counts: dict[str, int]
    """Each ceiling's current sum (before this request's addition)."""

    def tightest(self) -> BucketState | None:
        """The bucket closest to empty, relative to its capacity (for RateLimit headers)."""
        return min(self.buckets, key=lambda b: b.remaining / b.capacity, default=None)


class RateLimiter:
    """Shared buckets and ceilings; Redis errors surface as ``CacheError`` subclasses."""

    def __init__(self, redis: Redis) -> None:
        self._script = redis.register_script(_LUA)

    async def take(self, now: float, buckets: list[Bucket], ceilings: list[Ceiling] = (),
                   *, force: bool = False) -> Decision:
        """Take every bucket's cost if all of them hold it and no ceiling would be passed.

        ``force`` takes the tokens regardless (down to minus one capacity) and ignores the
        ceilings: for charging after the fact, e.g. the rest of a poll answered with a 200.
        """
        keys = [b.key for b in buckets] + [c.key for c in ceilings]
        args: list[str | int] = [repr(float(now)), len(buckets), len(ceilings), int(force)]
        for b in buckets:
            args += [repr(float(b.rate)), repr(float(b.capacity)), repr(float(b.cost))]
        for c in ceilings:
            args += [c.limit, c.add, len(c.fields), *c.fields]
        with redis_errors("ratelimit"):
            reply = await self._script(keys=keys, args=args)
        allowed, refused, wait = int(reply[0]), int(reply[1]), float(reply[2])
        states = []
        pos = 3
        for b in buckets:
            states.append(BucketState(b.name, b.capacity, b.rate, float(reply[pos]),
                                      max(0.0, float(reply[pos + 1]))))
            pos += 2
        counts = {c.name: int(reply[pos + i]) for i, c in enumerate(ceilings)}
        names = [b.name for b in buckets] + [c.name for c in ceilings]
        return Decision(bool(allowed), names[refused - 1] if refused else None, wait, states,
                        counts)
