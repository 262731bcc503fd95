"""Cancel and deadlines end jobs with exact counts: Redis's counts and item markers always
equal the store's rows, whatever races a batch in flight, and an end cut short by a dying
gateway is finished by a retry or by the sweeper. Another tenant's job is a 404 everywhere."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from schemas.api import EmbeddingOutput
from schemas.errors import ErrorCode
from store.results.base import ItemRecord
from store.results.codec import encode_output
from tests.e2e.harness import all_results, wait_terminal
from tests.gateway.support import assert_problem, running, services

VEC = encode_output(EmbeddingOutput([0.6, 0.8], 3))


def job(n: int) -> dict:
    return {"model": "minilm", "inputs": [{"text": f"item {i}: " + "lorem ipsum " * (i % 9),
                                           "id": f"c{i}"} for i in range(n)]}


async def assert_exact(svc, c, job_id: str) -> dict:
    """Terminal with exact counts; the results API lists every item once, agreeing with them
    at once; the store's rows come to equal Redis's item markers (an end writes them right
    after it counts; until then the API reports a missing row as Redis counted it)."""
    doc = (await c.get(f"/v1/jobs/{job_id}")).json()
    counts = doc["counts"]
    assert counts["pending"] == counts["running"] == 0
    assert counts["succeeded"] + counts["failed"] == counts["total"]
    items = await all_results(c, job_id)
    assert [i["index"] for i in items] == list(range(counts["total"]))
    by_status = Counter(i["status"] for i in items)
    assert (by_status["succeeded"], by_status["failed"]) == (counts["succeeded"],
                                                             counts["failed"])
    lines = (await c.get(f"/v1/jobs/{job_id}/results.jsonl")).content.splitlines()
    assert len(lines) == counts["total"]
    gw = services(svc)
    states = await gw.cache.item_states(job_id)
    deadline = time.monotonic() + 10
    while True:
        rows = dict(await gw.store.done_indexes(job_id))
        if rows == states:
            return doc
        assert time.monotonic() < deadline, "store rows never came to match Redis"
        await asyncio.sleep(0.05)


async def test_cancelling_a_queued_job_fails_every_item_with_exact_counts(settings) -> None:
    async with running(settings) as svc, svc.client() as c:
        job_id = (await c.post("/v1/jobs", json=job(300))).json()["job_id"]
        r = await c.post(f"/v1/jobs/{job_id}/cancel")
        assert r.status_code == 200
        doc = r.json()
        assert (doc["status"], doc["outcome"], doc["error"]["code"]) == (
            "failed", "all_failed", "cancelled")
        assert doc["counts"]["failed"] == 300 and doc["finished_at"] and not doc["started_at"]
        assert "retry-after" not in r.headers  # terminal: nothing more to poll for
        await assert_exact(svc, c, job_id)
        items = await all_results(c, job_id)
        assert {(i["error"]["code"], i["error"]["retryable"]) for i in items} == {
            ("cancelled", False)}
        assert await services(svc).cache.tenant_backlog("alpha") == 0  # the quota is free
        # Cancelling again changes nothing: a terminal job never changes.
        again = await c.post(f"/v1/jobs/{job_id}/cancel")
        assert again.status_code == 200 and again.json() == doc
        assert again.headers["etag"] == r.headers["etag"]


async def test_cancelling_a_running_job_keeps_what_is_done_with_exact_counts(settings) -> None:
    async with running(settings, runners=1, schedulers=1) as svc, svc.client() as c:
        job_id = (await c.post("/v1/jobs", json=job(2000))).json()["job_id"]
        while (await c.get(f"/v1/jobs/{job_id}")).json()["counts"]["succeeded"] < 40:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        doc = (await c.post(f"/v1/jobs/{job_id}/cancel")).json()
        assert (doc["status"], doc["outcome"], doc["error"]["code"]) == (
            "failed", "partial", "cancelled")
        assert 40 <= doc["counts"]["succeeded"] < 2000
        await assert_exact(svc, c, job_id)
        await asyncio.sleep(1.0)  # batches in flight come back: counted never, rows unchanged
        later = await assert_exact(svc, c, job_id)
        assert later["counts"] == doc["counts"]
        done = await all_results(c, job_id, status="succeeded")
        assert all(i["output"]["embedding"] and i["id"] == f"c{i['index']}" for i in done)


async def test_a_row_a_racing_batch_wrote_is_replaced_because_redis_counted_it_failed(
        settings) -> None:
    async with running(settings) as svc, svc.client() as c:
        job_id = (await c.post("/v1/jobs", json=job(3))).json()["job_id"]
        gw = services(svc)
        # A runner's step 1 for item 1 (row upserted), then the cancel before its step 2.
        row = ItemRecord(job_id, 1, "succeeded", 1, client_id="c1", output=VEC,
                         finished_at=time.time())
        await gw.store.upsert_items([row])
        doc = (await c.post(f"/v1/jobs/{job_id}/cancel")).json()
        assert doc["counts"]["failed"] == 3  # Redis had not counted item 1: it is cancelled
        # The runner's step 2 comes late and counts nothing: the job is terminal.
        out = await gw.cache.record_results(job_id, [(1, "s")], time.time())
        assert out.newly_counted == 0
        await assert_exact(svc, c, job_id)
        [item] = [i for i in await all_results(c, job_id) if i["index"] == 1]
        assert (item["status"], item["error"]["code"], item["id"]) == ("failed", "cancelled",
                                                                       "c1")


async def test_a_racing_row_reads_as_redis_counted_it_before_the_end_replaces_it(
        settings, monkeypatch) -> None:
    async with running(settings) as svc, svc.client() as c:
        job_id = (await c.post("/v1/jobs", json=job(3))).json()["job_id"]
        gw = services(svc)
        row = ItemRecord(job_id, 1, "succeeded", 1, client_id="c1", output=VEC,
                         finished_at=time.time())
        await gw.store.upsert_items([row])

        async def slow(*_a, **_k):
            raise RuntimeError("the end has not replaced the rows yet (simulated)")

        monkeypatch.setattr(gw.store, "replace_items", slow)
        assert_problem(await c.post(f"/v1/jobs/{job_id}/cancel"), 500, "internal_error")
        doc = (await c.get(f"/v1/jobs/{job_id}")).json()
        assert (doc["status"], doc["counts"]["failed"]) == ("failed", 3)
        items = await all_results(c, job_id)
        assert [(i["status"], i["error"]["code"]) for i in items] == [("failed", "cancelled")] * 3
        assert items[1]["id"] == "c1"
        page = (await c.get(f"/v1/jobs/{job_id}/results?status=succeeded")).json()
        assert page["items"] == []


async def test_a_cancel_cut_short_is_completed_by_a_retry(settings, monkeypatch) -> None:
    async with running(settings) as svc, svc.client() as c:
        job_id = (await c.post("/v1/jobs", json=job(5))).json()["job_id"]
        cache = services(svc).cache
        fail_remaining = cache.fail_remaining

        async def dies(*_a, **_k):
            raise RuntimeError("gateway died after the store write (simulated)")

        monkeypatch.setattr(cache, "fail_remaining", dies)
        assert_problem(await c.post(f"/v1/jobs/{job_id}/cancel"), 500, "internal_error")
        assert (await services(svc).store.get_job(job_id)).error_code == "cancelled"
        assert (await c.get(f"/v1/jobs/{job_id}")).json()["status"] == "queued"
        monkeypatch.setattr(cache, "fail_remaining", fail_remaining)
        doc = (await c.post(f"/v1/jobs/{job_id}/cancel")).json()
        assert (doc["status"], doc["error"]["code"], doc["counts"]["failed"]) == (
            "failed", "cancelled", 5)
        await assert_exact(svc, c, job_id)


async def test_a_cancel_cut_short_is_completed_by_the_sweeper(settings, monkeypatch) -> None:
    async with running(settings, job_end_lease_s=0.5, sweep_interval_s=0.1) as svc, \
            svc.client() as c:
        job_id = (await c.post("/v1/jobs", json=job(4))).json()["job_id"]
        gw = services(svc)
        # Rows the cancel wrote before dying: missing. The store's record: written.
        replace_items = gw.store.replace_items
        calls = {"n": 0}

        async def dies_once(items):
            calls["n"] += 1
            if calls["n"] == 1:
                raise RuntimeError("gateway died before writing the rows (simulated)")
            await replace_items(items)

        monkeypatch.setattr(gw.store, "replace_items", dies_once)
        assert (await c.post(f"/v1/jobs/{job_id}/cancel")).status_code == 500
        assert await gw.store.done_indexes(job_id) == []
        deadline = time.monotonic() + 10
        while len(await gw.store.done_indexes(job_id)) < 4:
            assert time.monotonic() < deadline, "the sweeper did not repair the rows"
            await asyncio.sleep(0.1)
        await assert_exact(svc, c, job_id)


async def test_a_cancel_that_lost_the_race_to_completion_leaves_the_job_succeeded(
        settings) -> None:
    async with running(settings) as svc, svc.client() as c:
        job_id = (await c.post("/v1/jobs", json=job(2))).json()["job_id"]
        gw = services(svc)
        now = time.time()
        # The cancel wrote the store's record (step 1) and died; meanwhile the runner finished.
        assert await gw.store.finish_job(job_id, status="failed", outcome="all_failed",
                                         finished_at=now, error_code="cancelled",
                                         error_message="cancelled")
        await gw.store.upsert_items([ItemRecord(job_id, i, "succeeded", 1, output=VEC,
                                                finished_at=now) for i in range(2)])
        out = await gw.cache.record_results(job_id, [(0, "s"), (1, "s")], now)
        assert out.status == "succeeded"
        doc = (await c.post(f"/v1/jobs/{job_id}/cancel")).json()
        assert (doc["status"], doc["outcome"], doc["error"]) == ("succeeded", "all_succeeded",
                                                                 None)
        stored = await gw.store.get_job(job_id)
        assert (stored.status, stored.outcome, stored.error_code) == ("succeeded",
                                                                      "all_succeeded", None)
        await assert_exact(svc, c, job_id)


async def test_another_tenants_job_is_a_404_everywhere_including_cancel(settings) -> None:
    async with running(settings) as svc, svc.client("alpha") as a, svc.client("beta") as b:
        job_id = (await a.post("/v1/jobs", json=job(2))).json()["job_id"]
        for method, path in (("GET", f"/v1/jobs/{job_id}"), ("GET", f"/v1/jobs/{job_id}/results"),
                             ("GET", f"/v1/jobs/{job_id}/results.jsonl"),
                             ("POST", f"/v1/jobs/{job_id}/cancel")):
            assert_problem(await b.request(method, path), 404, "job_not_found")
        assert (await b.get("/v1/jobs")).json()["jobs"] == []
        assert (await a.get(f"/v1/jobs/{job_id}")).json()["status"] == "queued"  # untouched


async def test_a_job_past_its_deadline_ends_even_if_nothing_runs(settings) -> None:
    async with running(settings, sweep_interval_s=0.1) as svc, svc.client() as c:
        job_id = (await c.post("/v1/jobs", json={**job(20), "timeout_s": 0.5})).json()["job_id"]
        assert (await c.get(f"/v1/jobs/{job_id}")).json()["status"] == "queued"
        doc = await wait_terminal(c, job_id, within=10)
        assert (doc["status"], doc["outcome"], doc["error"]["code"]) == (
            "failed", "all_failed", "deadline_exceeded")
        await assert_exact(svc, c, job_id)
        items = await all_results(c, job_id)
        assert {(i["error"]["code"], i["error"]["retryable"]) for i in items} == {
            ("deadline_exceeded", True)}


async def test_a_deadline_mid_run_keeps_what_finished_in_time(settings) -> None:
    async with running(settings, runners=1, schedulers=1, sweep_interval_s=0.1) as svc, \
            svc.client() as c:
        r = await c.post("/v1/jobs", json={**job(3000), "timeout_s": 1.5})
        doc = await wait_terminal(c, r.json()["job_id"], within=30)
        assert doc["status"] in ("failed", "succeeded")
        if doc["status"] == "failed":  # (a very fast machine could finish in time)
            assert doc["error"]["code"] == "deadline_exceeded"
            assert doc["counts"]["failed"] > 0
        await assert_exact(svc, c, doc["job_id"])
        codes = {i["error"]["code"] for i in await all_results(c, doc["job_id"], "failed")}
        assert codes <= {ErrorCode.DEADLINE_EXCEEDED.value}


async def test_items_met_past_the_deadline_wait_for_the_job_level_end(settings) -> None:
    # The sweeper runs seldom here, so the scheduler and runner meet most of the job's items
    # after its deadline and before its end. They leave those items to that end rather than
    # failing them one by one: otherwise the job's last item would be counted first and the
    # job would end by its counts ("succeeded", partial) without the deadline's error.
    async with running(settings, runners=1, schedulers=1, sweep_interval_s=3.0) as svc, \
            svc.client() as c:
        r = await c.post("/v1/jobs", json={**job(2000), "timeout_s": 1.0})
        job_id = r.json()["job_id"]
        doc = await wait_terminal(c, job_id, within=30)
        assert (doc["status"], doc["error"] and doc["error"]["code"]) == (
            "failed", "deadline_exceeded"), doc
        await assert_exact(svc, c, job_id)
        failed = await all_results(c, job_id, "failed")
        assert failed and {i["error"]["code"] for i in failed} == {"deadline_exceeded"}
