"""The one way every role opens Redis: fail fast (2 s to connect, 5 s per call) and check idle
sockets, so a Redis that went away surfaces as ``CacheUnavailable`` instead of a hang."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import redis.asyncio as aioredis
from redis import exceptions as rexc

SOCKET_TIMEOUT_S = 5.0


class TimedWriteConnection(aioredis.Connection):
    """redis-py's connection, with the write's timeout kept by ``asyncio.timeout`` instead of
    ``asyncio.wait_for``: on Python 3.11 ``wait_for`` wraps every command's write in a new
    task, a few percent of a status poll's CPU. Same errors: a timed-out write disconnects
    and raises redis's ``TimeoutError``."""

    async def send_packed_command(self, command: bytes | str | Iterable[bytes],
                                  check_health: bool = True) -> None:
        timeout = self.socket_timeout
        if not timeout:
            await super().send_packed_command(command, check_health)
            return
        try:
            async with asyncio.timeout(timeout):
                self.socket_timeout = None  # the base class then writes without wait_for
                try:
                    await super().send_packed_command(command, check_health)
                finally:
                    self.socket_timeout = timeout
        except TimeoutError:  # asyncio's (redis's own TimeoutError is not one)
            await self.disconnect(nowait=True)
            raise rexc.TimeoutError("Timeout writing to socket") from None


def open_redis(url: str) -> aioredis.Redis:
    """A client for ``url``; connects lazily on first use."""
    pool = aioredis.ConnectionPool.from_url(
        url, socket_timeout=SOCKET_TIMEOUT_S, socket_connect_timeout=2,
        health_check_interval=10)
    if pool.connection_class is aioredis.Connection:  # not unix:// or rediss://
        pool.connection_class = TimedWriteConnection
    return aioredis.Redis.from_pool(pool)
