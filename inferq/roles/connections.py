"""Connections every role opens the same way: Redis with timeouts, NATS closed politely."""

from __future__ import annotations

import redis.asyncio as aioredis
from nats.aio.client import Client as NATS

from core.config import Settings


def open_redis(settings: Settings) -> aioredis.Redis:
    """A Redis client that fails fast (2 s connect, 5 s per call) and checks idle sockets."""
    return aioredis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=2,
                                   health_check_interval=10)


async def close_nats(nc: NATS) -> None:
    """Flush what we published, then close. (``drain`` would wait out its timeout on
    subscriptions with a pull request in flight; every ack we owe was sent synchronously.)"""
    if nc.is_connected:
        try:
            await nc.flush(timeout=2)
        except Exception:  # noqa: BLE001 - closing anyway
            pass
    try:
        await nc.close()
    except OSError:  # the server went away first: there is nothing left to close
        pass
