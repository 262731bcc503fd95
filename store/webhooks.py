"""Webhook subscriptions, their delivery schedule and their attempts, in Redis.

- ``inferq:webhook:{job_id}``: the job's subscription (tenant, url, events) and its delivery
  state; it lives as long as the job (PEXPIREAT ``expires_at``).
- ``inferq:webhook:{job_id}:attempts``: every finished attempt (the last 100), same expiry.
- ``inferq:webhooks:due``: deliveries to make, by due time; members are subscription keys.

The job-state scripts put a job on the due set in the same atomic call that ends it, when
its subscription is still ``pending`` (``record_results``, ``fail_remaining``, and
``create_job`` when a rebuild from the store finds the job ended): so every job end, whichever
process made it, is scheduled exactly once, and nothing is lost if that process dies. A
dispatcher takes due entries under a lease (a crashed dispatcher's entry comes back) and
records each attempt; ``state`` is the one guard against delivering twice after a success.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
from redis.asyncio import Redis

from schemas.webhooks import DeliveryState, WebhookAttempt, WebhookEvent
from store.endschedule import CLAIM_DUE
from store.redis_errors import redis_errors

SUBSCRIPTION_PREFIX = "inferq:webhook:"
DUE_KEY = "inferq:webhooks:due"
MAX_ATTEMPTS_KEPT = 100

_ATTEMPT = msgspec.json.Decoder(WebhookAttempt)
_ENC = msgspec.json.Encoder()


class Subscription(msgspec.Struct, frozen=True):
    """A job's webhook and where its delivery stands."""

    job_id: str
    tenant: str
    url: str
    events: list[WebhookEvent]
    state: DeliveryState
    attempts: int
    next_attempt_at: float | None


def subscription_key(job_id: str, prefix: str = SUBSCRIPTION_PREFIX) -> str:
    """The Redis key of a job's subscription (also its member on the due set)."""
    return prefix + job_id


def _text(v: bytes | str | None) -> str | None:
    return v.decode() if isinstance(v, bytes) else v


class WebhookStore:
    """Subscriptions, the due set and attempts; every multi-key change is atomic."""

    def __init__(self, redis: Redis, *, prefix: str = SUBSCRIPTION_PREFIX,
                 due_key: str = DUE_KEY):
        self._r = redis
        self._prefix = prefix
        self._due = due_key
        self._subscribe = redis.register_script(_SUBSCRIBE)
        self._claim = redis.register_script(CLAIM_DUE)
        self._record = redis.register_script(_RECORD)

    def key(self, job_id: str) -> str:
        """The subscription's key."""
        return subscription_key(job_id, self._prefix)

    async def subscribe(self, job_id: str, tenant: str, url: str,
                        events: Sequence[WebhookEvent], expires_at: float) -> bool:
        """Record the job's webhook (``pending``) unless it has one; written before the job
        can end, so the script that ends it finds it. False when it already existed."""
        with redis_errors("webhook subscribe"):
            return bool(await self._subscribe(
                keys=[self.key(job_id)],
                args=[str(int(expires_at * 1000)), tenant, url, ",".join(events)]))

    async def get(self, job_id: str) -> Subscription | None:
        """The job's subscription, or None (no webhook, or expired)."""
        with redis_errors("webhook get"):
            v = await self._r.hmget(self.key(job_id), ("tenant", "url", "events", "state",
                                                       "attempts", "next_attempt_at"))
        tenant, url, events, state, attempts, next_at = map(_text, v)
        if state is None:
            return None
        return Subscription(job_id=job_id, tenant=tenant or "", url=url or "",
                            events=[WebhookEvent(e) for e in (events or "").split(",") if e],
                            state=DeliveryState(state), attempts=int(attempts or 0),
                            next_attempt_at=float(next_at) if next_at else None)

    async def attempts(self, job_id: str) -> list[WebhookAttempt]:
        """The recorded attempts, oldest first."""
        with redis_errors("webhook attempts"):
            raw = await self._r.lrange(self.key(job_id) + ":attempts", 0, -1)
        return [_ATTEMPT.decode(r) for r in raw]

    async def claim_due(self, now: float, lease_s: float, limit: int = 100) -> list[str]:
        """Job ids whose delivery is due, each pushed ``lease_s`` into the future in the same
        atomic call: one dispatcher works on it at a time, and a dead one's comes back."""
        with redis_errors("webhook claim"):
            got = await self._claim(keys=[self._due],
                                    args=[repr(now), repr(now + lease_s), limit])
        return [_text(m)[len(self._prefix):] for m in got]

    async def begin_attempt(self, job_id: str) -> int:
        """Count an attempt before it is made; its number."""
        with redis_errors("webhook begin"):
            return int(await self._r.hincrby(self.key(job_id), "attempts", 1))

    async def record(self, job_id: str, attempt: WebhookAttempt | None, state: DeliveryState,
                     next_attempt_at: float | None = None) -> None:
        """Append a finished attempt and move the delivery on: back on the due set at
        ``next_attempt_at`` while ``pending``, off it otherwise. A delivery already
        ``delivered`` stays so (a lease that ran out made a second, concurrent attempt).
        ``attempt`` None: only the state moves (``skipped``)."""
        with redis_errors("webhook record"):
            await self._record(
                keys=[self.key(job_id), self.key(job_id) + ":attempts", self._due],
                args=[b"" if attempt is None else _ENC.encode(attempt), state.value,
                      "" if next_attempt_at is None else repr(next_attempt_at),
                      MAX_ATTEMPTS_KEPT])

    async def drop(self, job_id: str) -> None:
        """Take the job off the due set (nothing to deliver: no subscription, or done)."""
        with redis_errors("webhook drop"):
            await self._r.zrem(self._due, self.key(job_id))

    async def due_count(self) -> int:
        """Deliveries on the due set (pending or being attempted)."""
        with redis_errors("webhook due count"):
            return int(await self._r.zcard(self._due))


_SUBSCRIBE = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'tenant', ARGV[2], 'url', ARGV[3], 'events', ARGV[4],
           'state', 'pending', 'attempts', 0, 'expires_at', ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
return 1
"""

_RECORD = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then
  redis.call('ZREM', KEYS[3], KEYS[1])
  return 0
end
if ARGV[1] ~= '' then
  local expires = redis.call('HGET', KEYS[1], 'expires_at')
  redis.call('RPUSH', KEYS[2], ARGV[1])
  redis.call('LTRIM', KEYS[2], -tonumber(ARGV[4]), -1)
  if expires then
    redis.call('PEXPIREAT', KEYS[2], expires)
  end
end
if state == 'delivered' then
  return 1
end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'next_attempt_at', ARGV[3])
if ARGV[2] == 'pending' and ARGV[3] ~= '' then
  redis.call('ZADD', KEYS[3], ARGV[3], KEYS[1])
else
  redis.call('ZREM', KEYS[3], KEYS[1])
end
return 1
"""
