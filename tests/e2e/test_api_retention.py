"""Retention and listing: an expired job is a 404 on every route (the same answer before and
after the purge), the gateway's purge deletes its rows and idempotency record, its Redis
hash expires with it; ``GET /v1/jobs`` pages a tenant's own jobs, newest first."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import redis.asyncio as aioredis

from tests.gateway.support import assert_problem, running, services


def count_rows(settings, table: str) -> int:
    db = sqlite3.connect(settings.results_url.removeprefix("sqlite:///"))
    try:
        return db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        db.close()


async def test_an_expired_job_is_a_404_everywhere_and_the_purge_removes_it(settings) -> None:
    async with running(settings, result_ttl_s=1.0, idempotency_ttl_s=1.0,
                       purge_interval_s=0.2) as svc, svc.client() as c:
        r = await c.post("/v1/jobs", json={"model": "minilm", "inputs": [{"text": "a"}] * 3},
                         headers={"Idempotency-Key": "keep-a-while"})
        job_id = r.json()["job_id"]
        await c.post(f"/v1/jobs/{job_id}/cancel")  # so that it has item rows
        routes = (("GET", f"/v1/jobs/{job_id}"), ("GET", f"/v1/jobs/{job_id}/results"),
                  ("GET", f"/v1/jobs/{job_id}/results.jsonl"),
                  ("POST", f"/v1/jobs/{job_id}/cancel"))
        for method, path in routes:
            assert (await c.request(method, path)).status_code == 200
        assert count_rows(svc.settings, "items") == 3
        await asyncio.sleep(1.1)
        for method, path in routes:  # before the purge: already gone
            assert_problem(await c.request(method, path), 404, "job_not_found")
        assert (await c.get("/v1/jobs")).json()["jobs"] == []
        redis = aioredis.Redis.from_url(svc.settings.redis_url)
        try:
            assert not await redis.exists(f"inferq:job:{job_id}")
        finally:
            await redis.aclose()
        deadline = time.monotonic() + 10
        while any(count_rows(svc.settings, t) for t in ("jobs", "items", "idempotency")):
            assert time.monotonic() < deadline, "the purge did not run"
            await asyncio.sleep(0.1)
        for method, path in routes:  # after the purge: the same answer
            assert_problem(await c.request(method, path), 404, "job_not_found")
        # The key is free again: the same request makes a new job.
        again = await c.post("/v1/jobs", json={"model": "minilm", "inputs": [{"text": "a"}] * 3},
                             headers={"Idempotency-Key": "keep-a-while"})
        assert again.status_code == 202 and again.json()["job_id"] != job_id


async def test_the_job_list_pages_the_tenants_own_jobs_newest_first(settings) -> None:
    async with running(settings) as svc, svc.client("alpha") as a, svc.client("beta") as b:
        mine = []
        for i in range(5):
            mine.append((await a.post("/v1/jobs", json={"model": "minilm", "input": {
                "text": f"job {i}"}})).json()["job_id"])
        theirs = (await b.post("/v1/jobs", json={"model": "minilm", "input": {
            "text": "beta"}})).json()["job_id"]
        seen, cursor, pages = [], None, 0
        while True:
            params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = (await a.get("/v1/jobs", params=params)).json()
            pages += 1
            seen += [j["job_id"] for j in page["jobs"]]
            assert all(j["status"] == "queued" and j["counts"]["total"] == 1
                       for j in page["jobs"])
            if not (cursor := page["next_cursor"]):
                break
        assert seen == mine[::-1] and pages == 3
        assert [j["job_id"] for j in (await b.get("/v1/jobs")).json()["jobs"]] == [theirs]
        # A page reads status documents from Redis, rebuilding what the cache lost.
        await services(svc).cache.delete(mine[0])
        docs = (await a.get("/v1/jobs", params={"limit": 100})).json()["jobs"]
        assert [d["job_id"] for d in docs] == mine[::-1]
