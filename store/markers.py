"""Reading item markers of a job hash (which items were already counted), for a runner that
resumes a redelivered batch without redoing what a crashed predecessor finished."""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis

from store.redis_errors import redis_errors


async def done_items(redis: Redis, key: str, indexes: Sequence[int]) -> set[int]:
    """The indexes among ``indexes`` whose marker says succeeded or failed (one HMGET)."""
    if not indexes:
        return set()
    with redis_errors("done_items"):
        marks = await redis.hmget(key, [f"i:{i}" for i in indexes])
    return {i for i, m in zip(indexes, marks, strict=True) if m in (b"s", b"f", "s", "f")}
