"""Status reads: one HMGET of the job's fields whatever its size, the API document built from
it, and an ETag that changes with every write."""

from __future__ import annotations

import msgspec
from redis.asyncio import Redis

from schemas.states import JobStatus, Priority
from store.jobstate import JobStateCache
from tests.store.jobstate_helpers import T0, counts, job, snap


async def test_get_status_is_one_hmget_without_markers(cache: JobStateCache, redis: Redis) -> None:
    await cache.init_job("j", job(5000))
    await cache.record_results("j", [(i, "s") for i in range(4000)], T0)
    await redis.config_resetstat()
    s = await snap(cache, "j")
    stats = await redis.info("commandstats")
    assert stats["cmdstat_hmget"]["calls"] == 1
    assert not any(k in stats for k in ("cmdstat_hgetall", "cmdstat_hkeys", "cmdstat_hvals",
                                        "cmdstat_hscan"))
    assert not any(name.startswith("i:") for name in msgspec.structs.asdict(s))
    assert counts(s) == (1000, 0, 4000, 0)


async def test_status_document_and_etag(redis_url: str) -> None:
    # decode_responses=True must work as well as raw bytes.
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        cache = JobStateCache(client, key_prefix="t:")
        await cache.init_job("j", job(2, expires_at=T0 + 86400 * 3650))
        s1 = await snap(cache, "j")
        assert s1.etag == (await snap(cache, "j")).etag
        await cache.record_results("j", [(0, "s")], T0 + 0.5)
        s2 = await snap(cache, "j")
        assert s2.etag != s1.etag and s2.etag.startswith('"') and s2.etag.endswith('"')
        doc = s2.to_doc()
        assert (doc.job_id, doc.model, doc.model_version, doc.priority) == (
            "j", "minilm", 2, Priority.BATCH)
        assert (doc.created_at, doc.started_at) == (
            "2023-11-14T22:13:20.250Z", "2023-11-14T22:13:20.750Z")
        assert doc.expires_at.endswith("Z") and doc.status == JobStatus.RUNNING
        assert await client.exists("t:j") == 1
    finally:
        await client.aclose()
