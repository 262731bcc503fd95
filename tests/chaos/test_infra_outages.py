"""Redis or the result store unavailable for a while mid-job: nothing lost, nothing counted
twice, no batch dead-lettered, and the job completes once they are back, with no restart.

Redis is stopped (SIGTERM: its AOF keeps the data) and started again on the same port; the
SQLite store is made unavailable to writers by another connection holding ``BEGIN
EXCLUSIVE``. Short versions run in CI; ``INFERQ_CHAOS_SCALE=long`` makes the outage 10 s.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter

import httpx
import pytest

from tests.chaos.cluster import Cluster
from tests.chaos.invariants import check_invariants, dlq_messages, inferred, item_error_codes
from tests.chaos.outages import down_for, store_locked
from tests.chaos.watch import StatusWatch, answer, done_items, until_done
from tests.chaos.workload import corpus, scaled

pytestmark = [pytest.mark.chaos]
SEED = 20261205


async def submit(cluster: Cluster, items: list[dict], tenant: str = "alpha") -> str:
    async with cluster.client(tenant) as c:
        r = await c.post("/v1/jobs", json={"model": "minilm", "inputs": items})
        assert r.status_code == 202, r.text
        return r.json()["job_id"]


async def probe(c: httpx.AsyncClient, job: str, accepted: dict[str, int]) -> dict[str, str]:
    """What the gateway answers now, per route; a submit that got through joins ``accepted``."""
    out = {}
    t0 = time.monotonic()
    r = await c.post("/v1/jobs", json={"model": "minilm", "inputs": corpus(3, SEED)})
    out["POST /v1/jobs"] = answer(r)
    out["POST took"] = f"{time.monotonic() - t0:.1f}s"
    if r.status_code == 202:
        accepted[r.json()["job_id"]] = 3
    for path in (f"/v1/jobs/{job}", f"/v1/jobs/{job}/results?limit=5", "/readyz"):
        out[f"GET {path.split('?')[0].replace(job, '{id}')}"] = answer(await c.get(path))
    return out


async def served_again(c: httpx.AsyncClient, job: str, within: float = 20) -> float:
    """Seconds until the gateway, never restarted, answers the status poll with a 200."""
    t0 = time.monotonic()
    while (await c.get(f"/v1/jobs/{job}")).status_code != 200:
        assert time.monotonic() - t0 < within, "the gateway did not recover by itself"
        await asyncio.sleep(0.05)
    return time.monotonic() - t0


def longest_backoff(cluster: Cluster) -> float:
    """The longest nak delay the runners chose (0.5 s doubling per delivery: it says how
    deep into the MaxDeliver schedule an outage went)."""
    delays = [0.0]
    for path in (cluster.tmp / "logs").glob("runner*.log"):
        delays += [float(m) for m in re.findall(r"nak, retry in ([0-9.]+)s", path.read_text())]
    return max(delays)


def start(make_cluster) -> Cluster:
    cluster = make_cluster(batch_ack_wait_s=5.0)
    cluster.add("gateway")
    cluster.add("scheduler")
    cluster.add("runner")
    return cluster


async def assert_clean_finish(cluster: Cluster, watch: StatusWatch, jobs: dict[str, int],
                              job: str) -> dict:
    """The scenario's end: every invariant, every item succeeded, no dead letter, no
    ``internal_error``, no role restarted, only 503 ``unavailable`` as a 5xx."""
    await watch.until_terminal(within=scaled(180, 600))
    watch.assert_monotonic()
    assert {a for a in watch.answers if a.startswith("5")} <= {"503 unavailable"}, watch.answers
    docs = await check_invariants(cluster, jobs)
    for job_id, total in jobs.items():
        assert docs[job_id]["status"] == "succeeded", docs[job_id]
        assert docs[job_id]["counts"]["succeeded"] == total
        assert item_error_codes(cluster, job_id) == Counter()
    assert await dlq_messages(cluster) == 0  # no MaxDeliver exhaustion
    assert cluster.crashes == {}  # every role rode it out: nobody restarted
    return docs[job]


async def test_redis_down_mid_job_then_back_completes_exactly_without_dead_letters(
        make_cluster) -> None:
    cluster = start(make_cluster)
    await cluster.ready()
    cluster.supervise()
    total, outage = scaled(600, 2000), scaled(4, 10)
    job = await submit(cluster, corpus(total, SEED))
    jobs = {job: total}
    async with cluster.client() as c:
        watch = StatusWatch(c, job)
        before = await until_done(c, job, total // 4)
        down = asyncio.create_task(down_for(cluster.redis, outage))
        await asyncio.sleep(1.0)
        during = await probe(c, job, jobs)
        await down
        recovered = await served_again(c, job)
        after = await probe(c, job, jobs)
        await assert_clean_finish(cluster, watch, jobs, job)
    ran = await inferred(cluster)
    naks = cluster.log_lines("transient error", "runner")
    print(f"\nredis down {outage}s at {before}/{total} done: during {during}; served again "
          f"{recovered:.2f}s after restart; after {after}; polls {dict(watch.answers)}; "
          f"runner naks {naks}, longest backoff {longest_backoff(cluster)}s; duplicates "
          f"executed {(ran - total) / total:.3f}")
    assert {v for k, v in during.items() if k != "POST took"} == {"503 unavailable"}, during
    assert {v for k, v in after.items() if k != "POST took"} <= {"200", "202"}, after


async def test_store_locked_mid_job_then_released_completes_exactly_without_dead_letters(
        make_cluster) -> None:
    cluster = start(make_cluster)
    await cluster.ready()
    cluster.supervise()
    # Longer than the store's 5 s busy timeout, or writers would only wait, never fail.
    total, outage = scaled(600, 2000), scaled(7, 10)
    job = await submit(cluster, corpus(total, SEED + 1))
    jobs = {job: total}
    db = cluster.settings.results_url.removeprefix("sqlite:///")
    async with cluster.client() as c:
        watch = StatusWatch(c, job)
        before = await until_done(c, job, total // 4)
        async with store_locked(db):
            t0 = time.monotonic()
            await asyncio.sleep(0.5)  # a write-back whose rows just made it counts them now
            stalled = await done_items(c, job)
            during = await probe(c, job, jobs)  # the submit waits out the busy timeout
            await asyncio.sleep(max(0.0, outage - (time.monotonic() - t0)))
            stalled = await done_items(c, job) - stalled
        after = await probe(c, job, jobs)
        await assert_clean_finish(cluster, watch, jobs, job)
    ran = await inferred(cluster)
    naks = cluster.log_lines("transient error", "runner")
    print(f"\nstore locked {outage}s at {before}/{total} done: during {during}; items counted "
          f"while locked {stalled}; after {after}; polls {dict(watch.answers)}; runner naks "
          f"{naks}, longest backoff {longest_backoff(cluster)}s; duplicates executed "
          f"{(ran - total) / total:.3f}")
    assert during["POST /v1/jobs"] == "503 unavailable", during
    assert during["GET /readyz"] == "503 unavailable", during  # no submit could succeed
    assert during["GET /v1/jobs/{id}"] == "200", during  # status comes from Redis
    assert stalled == 0  # nothing is counted before its row is written
    assert naks >= 1  # the write-back failed and was retried with backoff
    assert {v for k, v in after.items() if k != "POST took"} <= {"200", "202"}, after
