"""The durable to-do list of job ends (cancel, deadline, interrupted submission).

A Redis sorted set of ``<code>|<job_id>`` by due time: deadlines go in at submit, a cancel goes
in before its work starts, and any gateway's sweeper takes due entries under a lease, so an end
happens even if the gateway that started it dies.
"""

from __future__ import annotations

from redis.asyncio import Redis

from schemas.errors import ErrorCode
from store.redis_errors import redis_errors


class EndSchedule:
    """Due job ends in a Redis sorted set; members ``<code>|<job_id>``, scores due times."""

    def __init__(self, redis: Redis, key: str = "inferq:job-ends"):
        self._redis = redis
        self._key = key
        self._claim = redis.register_script(CLAIM_DUE)

    @staticmethod
    def member(job_id: str, code: ErrorCode) -> str:
        """The set member of one end of one job: a job has at most one entry per code."""
        return f"{code.value}|{job_id}"

    @staticmethod
    def parse(member: str | bytes) -> tuple[str, ErrorCode]:
        """(job_id, code) of a member made by :meth:`member`."""
        text = member.decode() if isinstance(member, bytes) else member
        code, _, job_id = text.partition("|")
        return job_id, ErrorCode(code)

    async def at(self, job_id: str, code: ErrorCode, when: float) -> None:
        """Schedule (or move) the end ``code`` of the job to ``when``."""
        with redis_errors("schedule end"):
            await self._redis.zadd(self._key, {self.member(job_id, code): when})

    async def done(self, job_id: str, code: ErrorCode) -> None:
        """Drop the entry once the end has happened (or is no longer needed)."""
        with redis_errors("end done"):
            await self._redis.zrem(self._key, self.member(job_id, code))

    async def claim_due(self, now: float, lease_s: float, limit: int = 100) -> list[str]:
        """Due members, each pushed ``lease_s`` into the future in the same atomic call, so
        one sweeper works on it at a time and a crashed sweeper's entry comes back."""
        with redis_errors("claim due ends"):
            got = await self._claim(keys=[self._key], args=[repr(now), repr(now + lease_s), limit])
        return [m.decode() if isinstance(m, bytes) else m for m in got]


CLAIM_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for _, m in ipairs(due) do
  redis.call('ZADD', KEYS[1], ARGV[2], m)
end
return due
"""
"""Lease due members of a sorted set scored by due time: the members due by ``ARGV[1]`` (at
most ``ARGV[3]``) are re-scored to ``ARGV[2]`` (now + lease) and returned, so one process
takes each; one not finished is due again when its lease lapses. Used here and by the
webhook deliveries (store/webhooks.py)."""
