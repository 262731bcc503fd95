"""The gateway's pipelined status reads (store/redis_pipe.py) against a real redis-server: the
same answers as redis-py, each concurrent read its own reply, and failures that surface as
the cache's typed errors and heal — never a reply delivered to the wrong read."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
import redis.asyncio as aioredis
from redis import exceptions as rexc

from store.jobstate import JobStateCache
from store.redis_errors import CacheMisconfigured, CacheRejected, CacheUnavailable
from store.redis_pipe import PipelinedReads


@pytest.fixture
async def redis(redis_url):
    client = aioredis.from_url(redis_url)
    yield client
    await client.aclose()


async def test_reads_answer_as_redis_py_does(redis, redis_url) -> None:
    await redis.hset("h", mapping={"a": "1", "b": "two"})
    reads = PipelinedReads(redis_url)
    try:
        for key, fields in (("h", ["a", "b", "c"]), ("missing", ["a"]), ("h", ["b"])):
            assert await reads.hmget(key, fields) == await redis.hmget(key, fields)
    finally:
        await reads.close()


async def test_many_reads_in_flight_each_get_their_own_reply(redis, redis_url) -> None:
    async with redis.pipeline(transaction=False) as p:
        for i in range(2000):
            p.hset(f"k{i}", mapping={"v": str(i), "pad": "x" * (i % 97)})
        await p.execute()
    reads = PipelinedReads(redis_url)
    try:
        got = await asyncio.gather(*(reads.hmget(f"k{i}", ["v", "pad"]) for i in range(2000)))
        assert [int(v) for v, _ in got] == list(range(2000))
        assert all(len(pad) == i % 97 for i, (_, pad) in enumerate(got))
    finally:
        await reads.close()


async def test_a_restarted_redis_is_unavailable_then_reads_reconnect(redis_proc, redis_url):
    reads = PipelinedReads(redis_url)
    cache = JobStateCache(aioredis.from_url(redis_url), reads=reads)
    assert await cache.get_status("nope") is None
    redis_proc.stop()
    with pytest.raises(CacheUnavailable):
        await cache.get_status("nope")
    redis_proc.start()
    assert await cache.get_status("nope") is None  # a fresh connection
    await reads.close()


async def test_a_stalled_redis_times_out_and_late_replies_answer_no_one(redis, redis_proc,
                                                                          redis_url) -> None:
    await redis.hset("a", "v", "A")
    await redis.hset("b", "v", "B")
    reads = PipelinedReads(redis_url, timeout_s=0.3)
    assert await reads.hmget("a", ["v"]) == [b"A"]
    os.kill(redis_proc.proc.pid, signal.SIGSTOP)
    try:
        stalled = [asyncio.create_task(reads.hmget("a", ["v"])) for _ in range(5)]
        for t in stalled:
            with pytest.raises(rexc.TimeoutError):
                await t
    finally:
        os.kill(redis_proc.proc.pid, signal.SIGCONT)
    # The stalled reads' replies arrive now on the old connection; the new read must get B.
    assert await reads.hmget("b", ["v"]) == [b"B"]
    assert await asyncio.gather(*(reads.hmget(k, ["v"]) for k in "abab")) == \
        [[b"A"], [b"B"], [b"A"], [b"B"]]
    await reads.close()


async def test_acl_user_and_database_from_the_url_and_typed_errors(redis, redis_proc) -> None:
    await redis.execute_command("ACL", "SETUSER", "poller", "on", ">s3cret", "~*", "+@all")
    await redis.execute_command("SELECT", "0")
    db3 = aioredis.from_url(f"redis://{redis_proc.host}:{redis_proc.port}/3")
    await db3.hset("only-in-3", "v", "here")
    await db3.set("a-string", "x")
    url = f"redis://poller:s3cret@{redis_proc.host}:{redis_proc.port}/3"
    reads = PipelinedReads(url)
    assert await reads.hmget("only-in-3", ["v"]) == [b"here"]
    with pytest.raises(CacheRejected):  # WRONGTYPE: a bug, not an outage
        await _wrongtype(reads)
    await reads.close()
    wrong = PipelinedReads(f"redis://poller:nope@{redis_proc.host}:{redis_proc.port}/3")
    with pytest.raises(rexc.AuthenticationError):
        await wrong.hmget("only-in-3", ["v"])
    bad_cache = JobStateCache(db3, reads=wrong)
    with pytest.raises(CacheMisconfigured):
        await bad_cache.get_status("x")
    await db3.aclose()


async def _wrongtype(reads: PipelinedReads) -> None:
    from store.redis_errors import redis_errors
    with redis_errors("test"):
        await reads.hmget("a-string", ["v"])
