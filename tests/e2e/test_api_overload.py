"""The two overload signals. Per API key, 429 "slow down": request and item token buckets and
the tenant's backlog quota, with Retry-After and RateLimit headers and nothing created.
System-wide, 503 "just wait": a model's backlog over its limit, or a dependency down — and
the gateway serves again as soon as it is back, without a restart."""

from __future__ import annotations

import asyncio
import time

from tests.gateway.support import assert_problem, running, services, tenants_with


def job(n: int, text: str = "load") -> dict:
    return {"model": "minilm", "inputs": [{"text": f"{text} {i}"} for i in range(n)]}


async def jobs_of(c) -> int:
    return len((await c.get("/v1/jobs", params={"limit": 100})).json()["jobs"])


async def test_a_burst_over_the_keys_rate_is_a_429_and_creates_no_job(settings, tmp_path) -> None:
    tenants = tenants_with(tmp_path / "t.toml", alpha={"requests_per_s": 1.0},
                           beta={"items_per_min": 60.0})
    async with running(settings, tenants_file=tenants, rate_burst_s=4.0) as svc:
        async with svc.client("alpha") as c:
            answers = [await c.post("/v1/jobs", json=job(1)) for _ in range(6)]
            assert [r.status_code for r in answers] == [202] * 4 + [429] * 2
            ok, refused = answers[3], answers[4]
            assert ok.headers["ratelimit-limit"] == "4"
            assert ok.headers["ratelimit-remaining"] == "0"
            assert 'comment="requests"' in ok.headers["ratelimit-policy"]
            body = assert_problem(refused, 429, "rate_limited")
            assert body["retryable"] is True and 0 < body["retry_after_s"] <= 1.0
            assert refused.headers["retry-after"] == "1"
            assert refused.headers["ratelimit-remaining"] == "0"
            assert await jobs_of(c) == 4  # the refused ones left nothing behind
            await asyncio.sleep(body["retry_after_s"])
            assert (await c.post("/v1/jobs", json=job(1))).status_code == 202
        async with svc.client("beta") as c:  # 60 items per minute
            assert (await c.post("/v1/jobs", json=job(50))).status_code == 202
            r = await c.post("/v1/jobs", json=job(20))
            body = assert_problem(r, 429, "rate_limited")
            assert 9 <= body["retry_after_s"] <= 11  # 10 items short at 1 item/s
            assert r.headers["ratelimit-limit"] == "60"  # the items bucket is the tightest
            big = assert_problem(await c.post("/v1/jobs", json=job(61)), 413,
                                 "payload_too_large")
            assert "can never be admitted" in big["detail"]
            assert await jobs_of(c) == 1


async def test_a_tenant_over_its_backlog_quota_is_429_until_its_backlog_drops(settings,
                                                                          tmp_path) -> None:
    tenants = tenants_with(tmp_path / "t.toml", alpha={"backlog_quota": 100})
    async with running(settings, tenants_file=tenants) as svc, \
            svc.client("alpha") as a, svc.client("beta") as b:
        first = (await a.post("/v1/jobs", json=job(60))).json()["job_id"]
        r = await a.post("/v1/jobs", json=job(50))
        body = assert_problem(r, 429, "quota_exceeded")
        assert "60 items queued or running" in body["detail"] and body["retryable"]
        assert (await b.post("/v1/jobs", json=job(50))).status_code == 202  # others unaffected
        assert (await a.post("/v1/jobs", json=job(40))).status_code == 202  # 100 fits exactly
        assert await jobs_of(a) == 2
        # Items leave the backlog as they end (here: cancelled), and the quota frees up.
        await a.post(f"/v1/jobs/{first}/cancel")
        assert (await a.post("/v1/jobs", json=job(50))).status_code == 202


async def test_a_drifted_backlog_counter_heals_itself(settings, tmp_path) -> None:
    tenants = tenants_with(tmp_path / "t.toml", alpha={"backlog_quota": 100})
    async with running(settings, tenants_file=tenants, backlog_reconcile_s=0.2) as svc, \
            svc.client() as c:
        await c.post("/v1/jobs", json=job(10))
        redis = services(svc).redis
        await redis.hincrby("inferq:backlog", "t:alpha", 1000)  # drift (e.g. a lost update)
        deadline = time.monotonic() + 10
        while (r := await c.post("/v1/jobs", json=job(50))).status_code != 202:
            assert_problem(r, 429, "quota_exceeded")
            assert time.monotonic() < deadline, "the backlog counter never healed"
            await asyncio.sleep(0.1)
        assert await services(svc).cache.tenant_backlog("alpha") == 60


async def test_a_model_backlog_over_its_limit_is_503_overloaded(settings) -> None:
    async with running(settings, model_backlog_limit=100) as svc, \
            svc.client("alpha") as a, svc.client("beta") as b:
        assert (await a.post("/v1/jobs", json=job(80))).status_code == 202
        r = await b.post("/v1/jobs", json=job(30))
        body = assert_problem(r, 503, "overloaded")
        assert body["retryable"] is True and int(r.headers["retry-after"]) >= 1
        assert "80 items queued or running" in body["detail"]
        assert await jobs_of(b) == 0
        assert (await b.post("/v1/jobs", json=job(20))).status_code == 202


async def test_redis_down_is_503_unavailable_and_the_gateway_recovers_by_itself(
        settings, redis_proc) -> None:
    async with running(settings) as svc, svc.client() as c:
        done = (await c.post("/v1/jobs", json=job(2))).json()["job_id"]
        redis_proc.stop()
        try:
            for method, path in (("POST", "/v1/jobs"), ("GET", f"/v1/jobs/{done}"),
                                 ("GET", "/readyz")):
                r = await c.request(method, path, json=job(1) if method == "POST" else None)
                assert_problem(r, 503, "unavailable")
        finally:
            redis_proc.start()
        deadline = time.monotonic() + 10
        while (r := await c.post("/v1/jobs", json=job(1))).status_code != 202:
            assert_problem(r, 503, "unavailable")  # a stale pooled connection, at most
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        assert (await c.get(f"/v1/jobs/{done}")).status_code == 200
        assert (await c.get("/readyz")).status_code == 200


async def test_polls_have_their_own_bucket_and_a_304_costs_half(settings, tmp_path) -> None:
    slow_polls = {"polls_per_s": 0.5}  # 4 tokens (8 s of burst), refilled slowly
    tenants = tenants_with(tmp_path / "t.toml", alpha=slow_polls, beta=slow_polls)
    async with running(settings, tenants_file=tenants, rate_burst_s=8.0) as svc, \
            svc.client("alpha") as a, svc.client("beta") as b:
        job_id = (await a.post("/v1/jobs", json=job(1))).json()["job_id"]
        polls = [await a.get(f"/v1/jobs/{job_id}") for _ in range(5)]  # 1 token each
        assert [p.status_code for p in polls] == [200] * 4 + [429]
        assert polls[0].headers["ratelimit-limit"] == "4"
        assert 'comment="polls"' in polls[0].headers["ratelimit-policy"]
        # Polling spent nothing from the request bucket: submits still go through.
        assert (await a.post("/v1/jobs", json=job(1))).status_code == 202
        r = await b.post("/v1/jobs", json=job(1))
        theirs, etag = r.json()["job_id"], r.headers["etag"]
        cheap = [await b.get(f"/v1/jobs/{theirs}", headers={"If-None-Match": etag})
                 for _ in range(9)]  # half a token each: eight fit in four tokens
        assert [p.status_code for p in cheap] == [304] * 8 + [429]
        assert cheap[0].headers["etag"] == etag and int(cheap[0].headers["retry-after"]) >= 1
