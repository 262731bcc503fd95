"""The one way every role opens Redis: fail fast (2 s to connect, 5 s per call) and check idle
sockets, so a Redis that went away surfaces as ``CacheUnavailable`` instead of a hang."""

from __future__ import annotations

import redis.asyncio as aioredis


def open_redis(url: str) -> aioredis.Redis:
    """A client for ``url``; connects lazily on first use."""
    return aioredis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2,
                                   health_check_interval=10)
