"""The Redis client every role opens, on a real redis-server: commands work, and a write
that does not finish in the socket timeout disconnects and raises redis's TimeoutError (which
``redis_errors`` turns into ``CacheUnavailable``), as redis-py's own connection does."""

from __future__ import annotations

import asyncio

import hiredis
import pytest
import redis.asyncio as aioredis
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


@pytest.mark.parametrize(("args", "by_hiredis"), [
    (("SET", "k", "v"), True),
    (("CONFIG GET", "maxmemory"), True),  # the first argument's words go apart
    ((b"HSET", "ключ", b"\x00\xff", "", "i:3"), True),
    (("EVALSHA", "a" * 40, "1", "inferq:job:j", *(["17", "s", "45", "1234"] * 300)), True),
    (("EVALSHA", "a" * 40, 1, "k", -7, 10**20), True),  # ints: str(n), as redis-py
    (("SET", "k", 0.1), False),  # a float: redis-py formats it
])
def test_commands_are_packed_to_the_bytes_redis_py_would_send(args, by_hiredis,
                                                              monkeypatch) -> None:
    ours, theirs = TimedWriteConnection(), aioredis.Connection()
    calls = []
    monkeypatch.setattr(hiredis, "pack_command", lambda a, real=hiredis.pack_command: (
        calls.append(a), real(a))[1])
    assert b"".join(ours.pack_command(*args)) == b"".join(theirs.pack_command(*args))
    assert bool(calls) == by_hiredis


def test_a_bool_is_refused_as_redis_py_refuses_it() -> None:
    with pytest.raises(rexc.DataError):
        TimedWriteConnection().pack_command("SET", "k", True)


async def test_a_command_of_a_thousand_arguments_reaches_redis_intact(redis_url) -> None:
    client = open_redis(redis_url)
    try:
        mapping = {f"f{i}": f"värde {i}" for i in range(500)}
        fields = [x for pair in mapping.items() for x in pair]
        assert await client.hset("h", mapping=mapping) == 500
        assert await client.hget("h", "f499") == "värde 499".encode()
        assert await client.eval("return #ARGV", 0, *fields) == 1000
    finally:
        await client.aclose()
