"""The tenant's batches, newest first, for ``GET /openai/v1/batches``: one Redis sorted set a
tenant of its batches' job ids.

Job ids begin with their creation time (48-bit ms, hex), so the set is kept in lexicographic
order (every score 0) and a page after a batch is one ``ZREVRANGEBYLEX`` from that batch's id,
the cursor OpenAI's client sends (``after=<last id>``). Ids older than the retention are
dropped on each insert; the key expires with the newest batch.

The batches themselves are their native jobs in the result store; this index is what the
listing adds. Lost with Redis, the listing forgets older batches, each of which stays
retrievable by its id until it expires.
"""

from __future__ import annotations

import time

from redis.asyncio import Redis

from store.redis_errors import redis_errors


class BatchIndex:
    """Per tenant: the job ids of its batches, in creation order."""

    def __init__(self, redis: Redis, ttl_s: float, prefix: str = "inferq:openai:batches:"):
        self._redis = redis
        self._ttl = ttl_s
        self._prefix = prefix

    async def add(self, tenant: str, job_id: str) -> None:
        """Index a batch (idempotent) and forget those past the retention."""
        key = self._prefix + tenant
        oldest = self._oldest()
        with redis_errors("batch index add"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zadd(key, {job_id: 0})
                pipe.zremrangebylex(key, "-", f"({oldest}")
                pipe.pexpire(key, int(self._ttl * 1000))
                await pipe.execute()

    def _oldest(self) -> str:
        """The id prefix of a job created one retention ago: every older one expired."""
        return f"{int((time.time() - self._ttl) * 1000):012x}"

    async def page(self, tenant: str, after: str | None, limit: int) -> tuple[list[str], bool]:
        """Up to ``limit`` live job ids older than ``after`` (newest first), and whether more
        follow."""
        with redis_errors("batch index page"):
            ids = await self._redis.zrevrangebylex(
                self._prefix + tenant, f"({after}" if after else "+", f"[{self._oldest()}",
                0, limit + 1)
        ids = [i.decode() if isinstance(i, bytes) else i for i in ids]
        return ids[:limit], len(ids) > limit
