"""Cancel and deadline with hundreds of items in flight (in the scheduler's buckets, in
BATCHES, in the runner's hands): exactly one terminal transition, every item terminal,
nothing stuck in ``running``, Redis's item markers equal to the store's rows, and late
completions of batches in flight change nothing.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import Counter

import httpx
import pytest
import redis.asyncio as aioredis

from tests.chaos.cluster import Cluster
from tests.chaos.invariants import check_invariants, item_error_codes
from tests.chaos.watch import StatusWatch
from tests.chaos.workload import corpus, scaled

pytestmark = [pytest.mark.chaos]
SEED = 20261211


async def markers_match_rows(cluster: Cluster, job_id: str, within: float = 10) -> dict:
    """Every item has a terminal marker in Redis equal to its row in the store (an end
    writes its rows right after counting them, so allow it a moment)."""
    redis = aioredis.Redis.from_url(cluster.settings.redis_url)
    db = sqlite3.connect(cluster.settings.results_url.removeprefix("sqlite:///"))
    deadline = time.monotonic() + within
    try:
        while True:
            raw = await redis.hgetall(f"inferq:job:{job_id}")
            marks = {int(k[2:]): v.decode() for k, v in raw.items() if k.startswith(b"i:")}
            rows = {i: s[0] for i, s in db.execute(
                "select idx, status from items where job_id = ?", (job_id,))}
            if marks == rows:
                assert "r" not in marks.values()
                return Counter(marks.values())
            assert time.monotonic() < deadline, (
                f"{job_id}: markers {Counter(marks.values())} vs rows {Counter(rows.values())}")
            await asyncio.sleep(0.1)
    finally:
        db.close()
        await redis.aclose()


def last_success_after_end(cluster: Cluster, job_id: str) -> float:
    """How long after the job's recorded end its last succeeded item finished (<= 0: none
    after; a late completion that changed the job would be > 0)."""
    db = sqlite3.connect(cluster.settings.results_url.removeprefix("sqlite:///"))
    try:
        (ended,) = db.execute("select finished_at from jobs where job_id = ?",
                              (job_id,)).fetchone()
        (last,) = db.execute("select max(finished_at) from items where job_id = ? and "
                             "status = 'succeeded'", (job_id,)).fetchone()
        return last - ended
    finally:
        db.close()


async def in_flight(c: httpx.AsyncClient, job_id: str) -> dict:
    return (await c.get(f"/v1/jobs/{job_id}")).json()["counts"]


async def test_cancel_and_deadline_with_items_in_flight_end_exactly_once(make_cluster) -> None:
    cluster = make_cluster(batch_ack_wait_s=5.0, sweep_interval_s=0.2)
    cluster.add("gateway")
    cluster.add("scheduler")
    cluster.add("runner")
    await cluster.ready()
    await cluster.started()  # the runner has its model: the deadline clock is not start-up
    cluster.supervise()
    # The deadline job is far more than the runner gets through before its deadline, so the
    # deadline falls while it is processed (and the scheduler and runner meet its items
    # after it: they leave them to the job-level end, which this test pins).
    n_cancel, n_deadline, timeout_s = scaled(1500, 5000), scaled(8000, 10_000), scaled(6, 20)
    async with cluster.client("alpha") as a, cluster.client("beta") as b:
        r = await a.post("/v1/jobs", json={"model": "minilm", "inputs": corpus(n_cancel, SEED)})
        cancelled = r.json()["job_id"]
        r = await b.post("/v1/jobs", json={"model": "minilm", "timeout_s": timeout_s,
                                           "inputs": corpus(n_deadline, SEED + 1)})
        timed = r.json()["job_id"]
        ends_at = time.monotonic() + timeout_s
        wa, wb = StatusWatch(a, cancelled), StatusWatch(b, timed)
        # Cancel once the job is well under way with a batch in the runner's hands.
        while True:
            counts = await in_flight(a, cancelled)
            if counts["succeeded"] >= n_cancel // 10 and counts["running"] > 0:
                break
            await asyncio.sleep(0.02)
        replies = await asyncio.gather(*(a.post(f"/v1/jobs/{cancelled}/cancel")
                                         for _ in range(10)))
        assert {r.status_code for r in replies} == {200}, [r.text for r in replies]
        ends = {(r.json()["status"], r.json()["error"]["code"], r.json()["finished_at"])
                for r in replies}
        assert len(ends) == 1, ends  # ten racing cancels, one end
        etag = replies[0].headers["etag"]
        # The deadline falls while the other job is being processed.
        await asyncio.sleep(max(0.0, ends_at - time.monotonic() - 0.5))
        before_deadline = await in_flight(b, timed)
        await wa.until_terminal(within=30)
        await wb.until_terminal(within=60)
        wa.assert_monotonic()
        wb.assert_monotonic()
        assert wa.errors_5xx == wb.errors_5xx == 0
        await asyncio.sleep(3)  # batches that were in flight finish meanwhile ...
        late = await a.get(f"/v1/jobs/{cancelled}", headers={"If-None-Match": etag})
        assert late.status_code == 304  # ... and change nothing in the cancelled job
    docs = await check_invariants(cluster, {cancelled: n_cancel, timed: n_deadline})
    c_doc, d_doc = docs[cancelled], docs[timed]
    assert (c_doc["status"], c_doc["error"]["code"]) == ("failed", "cancelled"), c_doc
    assert (d_doc["status"], d_doc["error"]["code"]) == ("failed", "deadline_exceeded"), d_doc
    c_marks = await markers_match_rows(cluster, cancelled)
    d_marks = await markers_match_rows(cluster, timed)
    assert set(item_error_codes(cluster, cancelled)) == {"cancelled"}
    assert set(item_error_codes(cluster, timed)) == {"deadline_exceeded"}
    # The cancel came with items done (we waited for them); how many of the deadline job's
    # items ran before its deadline depends on the machine's speed, so it is reported, not
    # asserted: either way every other item failed deadline_exceeded.
    assert c_doc["counts"]["succeeded"] >= n_cancel // 10
    lateness = {j: last_success_after_end(cluster, j) for j in (cancelled, timed)}
    assert all(v <= 0 for v in lateness.values()), lateness
    print(f"\ncancel: 10 racing cancels -> one end {ends}; items then "
          f"{c_doc['counts']['total'] - c_doc['counts']['succeeded']} not done; markers=rows "
          f"{dict(c_marks)}\ndeadline {timeout_s}s: 0.5 s before it {before_deadline}; end "
          f"{d_doc['counts']}; markers=rows {dict(d_marks)}; last success before the end by "
          f"{ {k[-6:]: round(-v, 3) for k, v in lateness.items()} } s; restarts {cluster.crashes}")
    assert cluster.crashes == {}
