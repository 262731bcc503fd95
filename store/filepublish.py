"""The durable to-do list of file jobs whose chunks are still being published.

A Redis sorted set of job ids scored by lease expiry, beside one hash per job holding its
publishing plan, the next chunk to publish (a checkpoint written after each chunk is
acknowledged by JetStream) and the lease's owner. The gateway that accepted the job holds the
lease and renews it; if it dies, the lease runs out and any gateway's sweeper takes the job
over from the checkpoint. Checkpoints and renewals are fenced by the owner, so a publisher that
lost its lease stops at its next chunk; the one chunk it may have had in flight carries the same
``Nats-Msg-Id`` as the new owner's and JetStream drops the second copy.

A set per file names the jobs still reading it, so a file is not deleted under them.
"""

from __future__ import annotations

import msgspec
from redis.asyncio import Redis

from store.redis_errors import redis_errors


class PublishPlan(msgspec.Struct, frozen=True):
    """What a publisher needs to cut a file into the same chunks wherever it runs."""

    file_id: str
    chunk_items: int
    chunk_bytes: int
    expires_at: float
    traceparent: str | None = None


_PLAN = msgspec.json.Decoder(PublishPlan)


class FilePublishQueue:
    """File jobs being published: plan, checkpoint and lease per job, in Redis."""

    def __init__(self, redis: Redis, prefix: str = "inferq:file-pub"):
        self._redis = redis
        self._queue = prefix
        self._prefix = prefix + ":"
        self._users = prefix + "-users:"
        self._create = redis.register_script(_CREATE)
        self._claim = redis.register_script(_CLAIM)
        self._fenced = redis.register_script(_FENCED)

    def _key(self, job_id: str) -> str:
        return self._prefix + job_id

    async def create(self, job_id: str, plan: PublishPlan, owner: str, lease_until: float) -> int:
        """Record the job (keeping an existing checkpoint) and lease it to ``owner``;
        returns the next chunk to publish."""
        with redis_errors("file publish create"):
            nxt = await self._create(
                keys=[self._key(job_id), self._queue, self._users + plan.file_id],
                args=[job_id, msgspec.json.encode(plan), owner, repr(lease_until),
                      int(plan.expires_at * 1000)])
        return int(nxt)

    async def claim_due(self, now: float, lease_until: float, owner: str,
                        limit: int = 10) -> list[str]:
        """Jobs whose lease ran out, leased to ``owner`` in the same atomic call."""
        with redis_errors("file publish claim"):
            got = await self._claim(keys=[self._queue],
                                    args=[repr(now), repr(lease_until), owner, limit,
                                          self._prefix])
        return [m.decode() if isinstance(m, bytes) else m for m in got]

    async def plan(self, job_id: str) -> tuple[PublishPlan, int] | None:
        """The job's plan and next chunk, or None when it is not (any more) being published."""
        with redis_errors("file publish plan"):
            raw, nxt = await self._redis.hmget(self._key(job_id), ["plan", "next"])
        if raw is None:
            return None
        return _PLAN.decode(raw), int(nxt or 0)

    async def checkpoint(self, job_id: str, owner: str, next_chunk: int,
                         lease_until: float | None = None) -> bool:
        """Record that chunks before ``next_chunk`` are in JetStream (and renew the lease);
        False when ``owner`` no longer holds the job: stop publishing."""
        with redis_errors("file publish checkpoint"):
            ok = await self._fenced(keys=[self._key(job_id), self._queue],
                                    args=[job_id, owner, next_chunk,
                                          "" if lease_until is None else repr(lease_until)])
        return bool(ok)

    async def finish(self, job_id: str, file_id: str) -> None:
        """The job is fully published (or ended): forget it."""
        with redis_errors("file publish finish"):
            async with self._redis.pipeline(transaction=True) as p:
                p.zrem(self._queue, job_id)
                p.delete(self._key(job_id))
                p.srem(self._users + file_id, job_id)
                await p.execute()

    async def pending(self, job_id: str) -> bool:
        """Whether the job is still being published (the sweeper leaves it alone then)."""
        with redis_errors("file publish pending"):
            return await self._redis.zscore(self._queue, job_id) is not None

    async def file_in_use(self, file_id: str) -> bool:
        """Whether a job is still reading the file."""
        with redis_errors("file in use"):
            return bool(await self._redis.scard(self._users + file_id))


_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'plan', ARGV[2], 'next', 0)
  redis.call('PEXPIREAT', KEYS[1], ARGV[5])
end
redis.call('HSET', KEYS[1], 'owner', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('PEXPIREAT', KEYS[3], ARGV[5])
return tonumber(redis.call('HGET', KEYS[1], 'next'))
"""

_CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[4])
local out = {}
for _, m in ipairs(due) do
  if redis.call('EXISTS', ARGV[5] .. m) == 1 then
    redis.call('ZADD', KEYS[1], ARGV[2], m)
    redis.call('HSET', ARGV[5] .. m, 'owner', ARGV[3])
    table.insert(out, m)
  else  -- expired with its job: nothing left to publish
    redis.call('ZREM', KEYS[1], m)
  end
end
return out
"""

_FENCED = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'next', ARGV[3])
if ARGV[4] ~= '' then redis.call('ZADD', KEYS[2], 'XX', ARGV[4], ARGV[1]) end
return 1
"""
