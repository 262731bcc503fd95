"""Status polls are O(1) from Redis; a lost cache is rebuilt exactly from the result store."""

from __future__ import annotations

import redis.asyncio as aioredis

from tests.e2e.harness import metric_value, wait_terminal


async def test_polling_does_not_read_the_store_while_redis_holds_the_job(service) -> None:
    async with service.client() as c:
        job = (await c.post("/v1/jobs", json={"model": "minilm", "inputs": [
            {"text": f"sentence number {i}"} for i in range(50)]})).json()["job_id"]
        before = await metric_value(c, "inferq_status_store_reads_total")
        for _ in range(30):
            assert (await c.get(f"/v1/jobs/{job}")).status_code == 200
        await wait_terminal(c, job)
        assert await metric_value(c, "inferq_status_store_reads_total") == before


async def test_a_deleted_cache_entry_is_rebuilt_exactly(service) -> None:
    async with service.client() as c:
        job = (await c.post("/v1/jobs", json={"model": "minilm", "inputs": [
            {"text": "fine"}, {"text": ""}, {"text": "also fine"}]})).json()["job_id"]
        done = await wait_terminal(c, job)
        redis = aioredis.Redis.from_url(service.settings.redis_url)
        try:
            assert await redis.delete(f"inferq:job:{job}") == 1
            before = await metric_value(c, "inferq_status_store_reads_total")
            rebuilt = (await c.get(f"/v1/jobs/{job}")).json()
            assert await metric_value(c, "inferq_status_store_reads_total") == before + 1
            for key in ("status", "outcome", "counts", "model", "model_version", "priority",
                        "created_at", "expires_at", "finished_at", "error"):
                assert rebuilt[key] == done[key], key
            assert await redis.exists(f"inferq:job:{job}") == 1  # cached again
            # Markers came back too: a replayed completion is not counted twice.
            assert await redis.hget(f"inferq:job:{job}", "i:1") == b"f"
        finally:
            await redis.aclose()


async def test_a_304_answers_an_unchanged_status(service) -> None:
    async with service.client() as c:
        job = (await c.post("/v1/jobs", json={"model": "minilm",
                                              "input": {"text": "etag me"}})).json()["job_id"]
        await wait_terminal(c, job)
        r = await c.get(f"/v1/jobs/{job}")
        etag = r.headers["etag"]
        r2 = await c.get(f"/v1/jobs/{job}", headers={"If-None-Match": etag})
        assert r2.status_code == 304 and r2.content == b"" and r2.headers["etag"] == etag
