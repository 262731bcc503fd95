"""Leased read tokens: a gateway takes a key's poll tokens from Redis a few at a time and
spends them locally, so a client polling hard costs one Redis round trip per lease, not per
poll.

The shared bucket stays the one truth: a lease's tokens are *taken* from it (the same Lua
call as any request), so all gateways together never admit more than the bucket allows. What
a lease costs is the other way round: tokens a gateway leased but did not spend before the
lease expired are lost to the key (at most one lease per gateway per ``lease_s``), and while
one gateway holds tokens another may refuse the same key a little early.

A lease is sized by the demand it saw: the first poll of a key takes one poll's cost (a
client that polls once a second never leases more than it spends); a lease used up before it
expired doubles the next one, up to ``lease_s`` of the key's rate (and half its capacity);
a lease that expired leads to one the size of what was spent from it. Concurrent polls of one
key wait for the one refill in flight rather than each calling Redis.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from store.ratelimit import Bucket, BucketState, Decision, RateLimiter

__all__ = ["ReadLeases"]


@dataclass
class _Lease:
    tokens: float
    """Leased tokens not spent yet."""
    size: float
    """What the lease took from the shared bucket (its cost included)."""
    shared_left: float
    """The shared bucket's tokens right after the lease was taken."""
    expires: float
    """Monotonic time after which the unspent tokens are dropped."""


class ReadLeases:
    """Poll tokens leased from the shared buckets of ``limiter`` (one gateway's view)."""

    def __init__(self, limiter: RateLimiter, *, lease_s: float = 0.05,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = 10_000):
        self._limiter = limiter
        self._lease_s = lease_s
        self._clock = clock
        self._max_keys = max_keys
        self._leases: dict[str, _Lease] = {}
        self._refills: dict[str, asyncio.Future[None]] = {}

    async def take(self, now: float, bucket: Bucket, *, force: bool = False) -> Decision:
        """Take ``bucket.cost`` from this gateway's lease of the bucket, or lease more from
        the shared bucket (refused as the shared bucket would refuse the cost alone).
        ``force`` charges even if short (after the fact), from the lease if it holds it."""
        while True:
            lease = self._leases.get(bucket.key)
            if lease is not None and lease.expires > self._clock() \
                    and lease.tokens >= bucket.cost:
                lease.tokens -= bucket.cost
                return _admitted(bucket, lease)
            pending = self._refills.get(bucket.key)
            if pending is None:
                break
            await asyncio.shield(pending)  # another poll of this key is refilling: share it
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._refills[bucket.key] = done
        try:
            return await self._refill(now, bucket, lease, force)
        finally:
            del self._refills[bucket.key]
            done.set_result(None)

    async def _refill(self, now: float, bucket: Bucket, old: _Lease | None,
                      force: bool) -> Decision:
        size = bucket.cost if force else self._next_size(bucket, old)
        d = await self._limiter.take(now, [_costing(bucket, size)], force=force)
        if not d.allowed and size > bucket.cost:  # the bucket holds less than a lease
            size = bucket.cost
            d = await self._limiter.take(now, [bucket])
        if not d.allowed:
            self._leases.pop(bucket.key, None)
            return d
        self._prune()
        live = old is not None and old.expires > self._clock()
        carried = old.tokens if live and old is not None else 0.0  # a fraction left: keep it
        lease = _Lease(tokens=size - bucket.cost + carried, size=size + carried,
                       shared_left=d.buckets[0].remaining, expires=self._clock() + self._lease_s)
        self._leases[bucket.key] = lease
        return _admitted(bucket, lease)

    def _next_size(self, bucket: Bucket, old: _Lease | None) -> float:
        ceiling = max(bucket.cost, min(bucket.rate * self._lease_s, bucket.capacity / 2))
        if old is None:
            return bucket.cost
        spent = old.size - old.tokens
        if old.expires > self._clock():  # used up while live: demand outruns it
            return min(ceiling, max(bucket.cost, 2 * old.size))
        return min(ceiling, max(bucket.cost, spent))

    def _prune(self) -> None:
        if len(self._leases) < self._max_keys:
            return
        now = self._clock()
        for key in [k for k, lease in self._leases.items() if lease.expires <= now]:
            del self._leases[key]


def _costing(bucket: Bucket, cost: float) -> Bucket:
    return Bucket(bucket.name, bucket.key, bucket.rate, bucket.capacity, cost)


def _admitted(bucket: Bucket, lease: _Lease) -> Decision:
    """An admission answered from a lease: the key's tokens are the shared bucket's plus what
    this gateway still holds."""
    left = lease.shared_left + lease.tokens
    state = BucketState(bucket.name, bucket.capacity, bucket.rate, left,
                        max(0.0, (bucket.capacity - left) / bucket.rate))
    return Decision(True, None, 0.0, [state], {})
