"""The Redis client every role opens, on a real redis-server: commands work, and a write
that does not finish in the socket timeout disconnects and raises redis's TimeoutError (which
``redis_errors`` turns into ``CacheUnavailable``), as redis-py's own connection does."""

from __future__ import annotations

import asyncio

import pytest
from redis import exceptions as rexc

from store.redis_client import TimedWriteConnection, open_redis


async def test_the_client_uses_the_timed_write_connection_and_answers(redis_url) -> None:
    client = open_redis(redis_url)
    try:
        assert client.connection_pool.connection_class is TimedWriteConnection
        await client.set("k", "v")
        assert await client.get("k") == b"v"
    finally:
        await client.aclose()


async def test_a_stuck_write_times_out_and_disconnects(redis_url, monkeypatch) -> None:
    client = open_redis(redis_url)
    try:
        conn = await client.connection_pool.get_connection()
        conn.socket_timeout = 0.05

        async def stuck() -> None:
            await asyncio.sleep(5)

        monkeypatch.setattr(conn._writer, "drain", stuck)
        with pytest.raises(rexc.TimeoutError):
            await conn.send_command("PING")
        assert not conn.is_connected
        assert conn.socket_timeout == 0.05
    finally:
        await client.aclose()
