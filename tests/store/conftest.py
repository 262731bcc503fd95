"""Fixtures of the store tests: a Redis client and a job state cache on the test's server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from store.jobstate import JobStateCache


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def cache(redis: Redis) -> JobStateCache:
    return JobStateCache(redis)
