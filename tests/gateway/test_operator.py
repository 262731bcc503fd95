"""The operator overview: only the operator key reads it (a tenant key is a 403), and it
reports queues, runners, dead letters and each tenant's share of the items finished."""

from __future__ import annotations

import asyncio

import httpx

from core.tenants import hmac_key
from gateway.operator import ThroughputWindow
from tests.e2e.harness import wait_terminal
from tests.gateway.support import assert_problem, running

PEPPER = "operator-test-pepper"
OPERATOR_KEY = "op-key-0123456789abcdef"


def operator_settings() -> dict:
    return {"api_key_pepper": PEPPER, "operator_api_key_hmac":
            "  ," + hmac_key("old-rotated-out-key", PEPPER) + ", " + hmac_key(OPERATOR_KEY, PEPPER)}


def test_the_window_counts_what_each_job_finished_between_samples() -> None:
    w = ThroughputWindow(window_s=10)
    w.observe(100.0, [("j1", "a", 5)])  # the baseline: nothing counted
    assert w.finished() == {} and w.covered_s(100.0) == 0
    assert w.vanished(["j2"]) == ["j1"]
    # j1 ended with 20 (passed in as ended); j2 is new since the baseline: all of it counts.
    w.observe(102.0, [("j2", "b", 7)], ended=[("j1", "a", 20)])
    assert w.finished() == {"a": 15, "b": 7} and w.covered_s(102.0) == 2
    w.observe(104.0, [("j2", "b", 9)])
    assert w.finished() == {"a": 15, "b": 9}
    w.observe(113.0, [("j2", "b", 9)])  # the samples of 102 fell out of the window
    assert w.finished() == {"b": 2} and w.covered_s(113.0) == 10


async def test_only_the_operator_key_reads_the_overview(settings) -> None:
    async with running(settings, **operator_settings()) as svc:
        async with httpx.AsyncClient(base_url=svc.url) as anon, svc.client("alpha") as tenant:
            assert_problem(await anon.get("/v1/operator/overview"), 401, "unauthenticated")
            r = await anon.get("/v1/operator/overview",
                               headers={"Authorization": "Bearer not-a-key"})
            body = assert_problem(r, 401, "unauthenticated")
            assert "not-a-key" not in r.text, body
            assert_problem(await tenant.get("/v1/operator/overview"), 403, "forbidden")
            r = await anon.get("/v1/operator/overview",
                               headers={"Authorization": f"Bearer {OPERATOR_KEY}"})
            assert r.status_code == 200, r.text
            # The operator key is no tenant key.
            r = await anon.get("/v1/jobs", headers={"Authorization": f"Bearer {OPERATOR_KEY}"})
            assert_problem(r, 401, "unauthenticated")
            doc = (await anon.get("/schema/openapi.json")).json()
            op = doc["paths"]["/v1/operator/overview"]["get"]
            assert {"200", "401", "403"} <= set(op["responses"])


async def test_without_an_operator_key_configured_nobody_is_an_operator(settings) -> None:
    async with running(settings, api_key_pepper=PEPPER) as svc:
        async with httpx.AsyncClient(base_url=svc.url) as anon:
            r = await anon.get("/v1/operator/overview",
                               headers={"Authorization": f"Bearer {OPERATOR_KEY}"})
            assert_problem(r, 401, "unauthenticated")


async def test_the_overview_shows_runners_queues_and_each_tenants_share(settings) -> None:
    async with running(settings, runners=1, schedulers=1, backend="simulated",
                       sim_batch_ms=1500.0, **operator_settings()) as svc:
        op = httpx.AsyncClient(base_url=svc.url,
                               headers={"Authorization": f"Bearer {OPERATOR_KEY}"})
        async with op, svc.client("alpha") as alpha, svc.client("beta") as beta:
            first = (await op.get("/v1/operator/overview")).json()
            assert first["dead_letters"] == 0 and first["throughput_window_s"] == 0
            assert {t["tenant"] for t in first["tenants"]} == {"alpha", "beta", "gamma"}
            jobs = []
            for client, n in ((alpha, 120), (beta, 40)):
                r = await client.post("/v1/jobs", json={"model": "minilm", "inputs": [
                    {"text": f"item {i} of a job the operator watches"} for i in range(n)]})
                assert r.status_code == 202, r.text
                jobs.append((client, r.json()["job_id"]))
            seen_queue = False
            for _ in range(60):
                await asyncio.sleep(1.05)  # one sample per second at most
                doc = (await op.get("/v1/operator/overview")).json()
                seen_queue |= any(q["model"] == "minilm" and q["depth"] > 0
                                  for q in doc["queues"])
                statuses = [(await c.get(f"/v1/jobs/{j}")).json()["status"] for c, j in jobs]
                if all(s in ("succeeded", "failed") for s in statuses):
                    break
            for c, j in jobs:
                await wait_terminal(c, j)
            await asyncio.sleep(1.05)
            doc = (await op.get("/v1/operator/overview")).json()
    assert seen_queue
    assert [r["model"] for r in doc["runners"]] == ["minilm"]
    assert 0.0 <= doc["runners"][0]["busy_ratio"] <= 1.0
    shares = {t["tenant"]: t for t in doc["tenants"]}
    assert shares["alpha"]["items_finished"] == 120 and shares["beta"]["items_finished"] == 40
    assert shares["alpha"]["throughput_share"] == 0.75
    assert shares["gamma"]["weight_share"] is None and shares["gamma"]["items_finished"] == 0
    assert doc["throughput_window_s"] > 0 and doc["notes"]
