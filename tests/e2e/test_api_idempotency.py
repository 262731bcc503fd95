"""Idempotency as DESIGN.md has it: scope (tenant, key), same key + body -> the same job
replayed, another body -> 422, 409 while the first is unfinished, a new job once the key has
expired, and a submission cut short after its record is completed by a retry — or failed
honestly by the sweeper when no retry comes."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from inferq.client import Client
from tests.e2e.harness import KEYS, all_results, wait_terminal
from tests.gateway.support import assert_problem, running, services

BODY = {"model": "minilm", "inputs": [{"text": "once only", "id": "a"}, {"text": "twice?"}]}


def job_rows(settings, tenant: str) -> list[tuple]:
    db = sqlite3.connect(settings.results_url.removeprefix("sqlite:///"))
    try:
        return db.execute("SELECT job_id, published, status FROM jobs WHERE tenant = ?",
                          (tenant,)).fetchall()
    finally:
        db.close()


async def test_fifty_concurrent_posts_with_one_key_create_exactly_one_job(settings) -> None:
    async with running(settings) as svc, svc.client() as c:
        answers = await asyncio.gather(*(
            c.post("/v1/jobs", json=BODY, headers={"Idempotency-Key": "fifty"})
            for _ in range(50)))
        ids = {r.json()["job_id"] for r in answers if r.status_code == 202}
        busy = [r for r in answers if r.status_code == 409]
        assert len(ids) == 1 and len(busy) + sum(r.status_code == 202 for r in answers) == 50
        [job] = ids
        fresh = [r for r in answers if r.status_code == 202
                 and r.headers.get("idempotency-replayed") != "true"]
        assert len(fresh) == 1 and fresh[0].headers["location"] == f"/v1/jobs/{job}"
        for r in busy:
            assert_problem(r, 409, "idempotency_in_progress")
        # Each 409, retried through the client, ends with the same job.
        async with Client(svc.url, KEYS["alpha"]) as client:
            for _ in busy:
                doc = await client.submit(BODY["inputs"], model="minilm",
                                          idempotency_key="fifty")
                assert doc["job_id"] == job
        assert [r[0] for r in job_rows(svc.settings, "alpha")] == [job]
        assert [j["job_id"] for j in (await c.get("/v1/jobs")).json()["jobs"]] == [job]


async def test_same_key_same_body_replays_another_body_is_a_422(settings) -> None:
    async with running(settings) as svc, svc.client("alpha") as a, svc.client("beta") as b:
        first = await a.post("/v1/jobs", json=BODY, headers={"Idempotency-Key": "k-1"})
        again = await a.post("/v1/jobs", json=BODY, headers={"Idempotency-Key": "k-1"})
        assert first.status_code == again.status_code == 202
        assert again.json()["job_id"] == first.json()["job_id"]
        assert again.headers["idempotency-replayed"] == "true"
        assert "idempotency-replayed" not in first.headers
        other = {**BODY, "priority": "interactive"}
        body = assert_problem(await a.post("/v1/jobs", json=other,
                                           headers={"Idempotency-Key": "k-1"}),
                              422, "idempotency_key_reused")
        assert body["retryable"] is False
        # The scope is (tenant, key): another tenant's same key is another job.
        theirs = await b.post("/v1/jobs", json=BODY, headers={"Idempotency-Key": "k-1"})
        assert theirs.status_code == 202 and theirs.json()["job_id"] != first.json()["job_id"]
        # Without a key, every POST is a new job.
        one = await a.post("/v1/jobs", json=BODY)
        two = await a.post("/v1/jobs", json=BODY)
        assert one.json()["job_id"] != two.json()["job_id"]


async def test_the_same_key_after_its_ttl_makes_a_new_job(settings) -> None:
    async with running(settings, idempotency_ttl_s=0.5) as svc, svc.client() as c:
        first = (await c.post("/v1/jobs", json=BODY,
                              headers={"Idempotency-Key": "short"})).json()["job_id"]
        await asyncio.sleep(0.6)
        r = await c.post("/v1/jobs", json=BODY, headers={"Idempotency-Key": "short"})
        assert r.status_code == 202 and "idempotency-replayed" not in r.headers
        assert r.json()["job_id"] != first
        # The key now holds the new job's record: a third body is compared with the second.
        r3 = await c.post("/v1/jobs", json={**BODY, "priority": "interactive"},
                          headers={"Idempotency-Key": "short"})
        assert_problem(r3, 422, "idempotency_key_reused")


async def test_a_409_while_the_first_is_unfinished_then_the_client_gets_the_job(
        settings, monkeypatch) -> None:
    async with running(settings) as svc, svc.client() as c:
        submitter = services(svc).submitter
        release, entered = asyncio.Event(), asyncio.Event()
        publish = submitter.publish

        async def slow_publish(job, req, **kw):
            entered.set()
            await release.wait()
            await publish(job, req, **kw)

        monkeypatch.setattr(submitter, "publish", slow_publish)
        first = asyncio.create_task(c.post("/v1/jobs", json=BODY,
                                           headers={"Idempotency-Key": "slow"}))
        await entered.wait()
        r = await c.post("/v1/jobs", json=BODY, headers={"Idempotency-Key": "slow"})
        body = assert_problem(r, 409, "idempotency_in_progress")
        assert body["retryable"] is True and r.headers["retry-after"] == "1"
        async with Client(svc.url, KEYS["alpha"]) as client:
            retry = asyncio.create_task(client.submit(BODY["inputs"], model="minilm",
                                                      idempotency_key="slow"))
            await asyncio.sleep(0.3)
            assert not retry.done()  # still being told 409 and waiting
            release.set()
            doc = await retry
            assert client.attempts >= 2
        assert doc["job_id"] == (await first).json()["job_id"]


@pytest.fixture
def crash_once(monkeypatch):
    """The next publish dies as a crashed gateway would: after the idempotency record, the
    job record and its Redis hash exist; no chunk reached JetStream."""

    def arm(svc) -> None:
        submitter = services(svc).submitter
        publish = submitter.publish
        state = {"armed": True}

        async def crashing(job, req, **kw):
            if state.pop("armed", False):
                raise RuntimeError("gateway crashed mid-submit (simulated)")
            await publish(job, req, **kw)

        monkeypatch.setattr(submitter, "publish", crashing)
    return arm


async def test_a_crash_between_record_and_publish_is_completed_by_the_retry(
        settings, crash_once) -> None:
    async with running(settings, runners=1, schedulers=1, idempotency_grace_s=0.3,
                       submit_recovery_grace_s=30) as svc, svc.client() as c:
        crash_once(svc)
        r = await c.post("/v1/jobs", json=BODY, headers={"Idempotency-Key": "crash"})
        assert_problem(r, 500, "internal_error")
        [(job, published, status)] = job_rows(svc.settings, "alpha")
        assert (published, status) == (0, "queued")  # the key points at an unpublished job
        async with Client(svc.url, KEYS["alpha"]) as client:  # 409 until the grace, then done
            doc = await client.submit(BODY["inputs"], model="minilm", idempotency_key="crash")
        assert doc["job_id"] == job
        done = await wait_terminal(c, job)
        assert done["status"] == "succeeded" and done["counts"]["succeeded"] == 2
        assert job_rows(svc.settings, "alpha") == [(job, 1, "succeeded")]


async def test_a_crashed_submission_no_one_retries_is_failed_by_the_sweeper(
        settings, crash_once) -> None:
    async with running(settings, idempotency_grace_s=0.2, submit_recovery_grace_s=0.5,
                       recovery_interval_s=0.2) as svc, svc.client() as c:
        crash_once(svc)
        r = await c.post("/v1/jobs", json=BODY, headers={"Idempotency-Key": "orphan"})
        assert r.status_code == 500
        [(job, _, _)] = job_rows(svc.settings, "alpha")
        done = await wait_terminal(c, job, within=10)
        assert done["status"] == "failed" and done["error"]["code"] == "submission_interrupted"
        assert done["counts"] == {"total": 2, "pending": 0, "running": 0, "succeeded": 0,
                                  "failed": 2}
        items = await all_results(c, job)
        assert [(i["index"], i["error"]["code"], i["error"]["retryable"]) for i in items] == [
            (0, "submission_interrupted", True), (1, "submission_interrupted", True)]
        # A late retry with the key gets the failed job, honestly, and publishes nothing.
        r = await c.post("/v1/jobs", json=BODY, headers={"Idempotency-Key": "orphan"})
        assert r.status_code == 202 and r.json()["job_id"] == job
        assert r.json()["status"] == "failed"
        assert job_rows(svc.settings, "alpha") == [(job, 0, "failed")]
