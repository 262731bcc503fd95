"""Redis failures become typed cache errors, and an evicting Redis is refused at start-up."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from redis.asyncio import Redis

from inferq.embedded import ServerProcess, free_port, redis_server_binary
from schemas.states import JobStatus
from store.jobstate import JobStateCache
from store.redis_errors import CacheMisconfigured, CacheUnavailable, check_noeviction
from tests.store.jobstate_helpers import T0, job


async def test_noeviction_check(redis: Redis) -> None:
    await check_noeviction(redis)  # the fixture server runs with noeviction
    await redis.config_set("maxmemory-policy", "allkeys-lru")
    with pytest.raises(CacheMisconfigured, match="set it to 'noeviction'") as info:
        await check_noeviction(redis)
    assert not info.value.retryable


async def test_noeviction_check_warns_when_config_is_disabled(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    proc = ServerProcess("redis-server", [
        str(redis_server_binary()), "--bind", "127.0.0.1", "--port", str(port), "--save", "",
        "--dir", str(tmp_path), "--rename-command", "CONFIG", "",
    ], "127.0.0.1", port).start()
    client = Redis(host="127.0.0.1", port=port)
    try:
        with caplog.at_level(logging.WARNING, logger="store.redis_errors"):
            await check_noeviction(client)
        assert "noeviction" in caplog.text
    finally:
        await client.aclose()
        proc.stop()


async def test_redis_down_is_cache_unavailable(redis_proc: ServerProcess, redis_url: str) -> None:
    client = Redis.from_url(redis_url)
    cache = JobStateCache(client)
    try:
        await cache.init_job("j", job(2))
        redis_proc.stop()
        for call in (cache.get_status("j"), cache.ping(), cache.mark_running("j", [0], T0),
                     cache.record_results("j", [(0, "s")], T0), check_noeviction(client)):
            with pytest.raises(CacheUnavailable) as info:
                await call
            assert info.value.retryable
        redis_proc.start()
        await cache.ping()
        # The server came back from its append-only file; NOSCRIPT is handled by redis-py.
        out = await cache.record_results("j", [(0, "s")], T0 + 1)
        assert (out.newly_counted, out.status) == (1, JobStatus.RUNNING)
    finally:
        await client.aclose()
