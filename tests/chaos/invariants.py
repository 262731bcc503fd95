"""What must hold after every chaos scenario, read straight from the stores: one result row
per item, Redis counts equal to the store's and the API's, every accepted job finished; and
the counters scenarios assert on (dead-lettered batches, items inferred, error codes)."""

from __future__ import annotations

import sqlite3
from collections import Counter

import redis.asyncio as aioredis

from schemas.states import TERMINAL_JOB
from tests.chaos.cluster import Cluster


async def dlq_messages(cluster: Cluster) -> int:
    """Batches dead-lettered (the DLQ stream's message count)."""
    import nats

    nc = await nats.connect(cluster.settings.nats_url.split(","))
    try:
        return (await nc.jetstream().stream_info("DLQ")).state.messages
    finally:
        await nc.close()


def item_error_codes(cluster: Cluster, job_id: str) -> Counter[str]:
    """The error codes of a job's failed item rows."""
    db = sqlite3.connect(cluster.settings.results_url.removeprefix("sqlite:///"))
    try:
        return Counter(code for (code,) in db.execute(
            "select error_code from items where job_id = ? and status = 'failed'", (job_id,)))
    finally:
        db.close()


async def check_invariants(cluster: Cluster, jobs: dict[str, int]) -> dict[str, dict]:
    """After a scenario: one result row per item; succeeded + failed == total; Redis counts ==
    store counts == API counts; every accepted job (its chunks got a PubAck) finished."""
    db = sqlite3.connect(cluster.settings.results_url.removeprefix("sqlite:///"))
    redis = aioredis.Redis.from_url(cluster.settings.redis_url)
    out = {}
    try:
        for job_id, total in jobs.items():
            tenant = (await redis.hget(f"inferq:job:{job_id}", "tenant") or b"alpha").decode()
            async with cluster.client(tenant) as c:
                rows, distinct, ok, bad = db.execute(
                    "select count(*), count(distinct idx), sum(status = 'succeeded'), "
                    "sum(status = 'failed') from items where job_id = ?", (job_id,)).fetchone()
                assert rows == distinct == total, (job_id, rows, distinct, total)
                assert ok + bad == total
                h = await redis.hmget(f"inferq:job:{job_id}", "succeeded", "failed", "running")
                assert [int(x) for x in h] == [ok, bad, 0], (job_id, h, ok, bad)
                doc = (await c.get(f"/v1/jobs/{job_id}")).json()
                assert doc["status"] in TERMINAL_JOB, doc
                assert (doc["counts"]["succeeded"], doc["counts"]["failed"]) == (ok, bad)
                stored = db.execute("select status from jobs where job_id = ?",
                                    (job_id,)).fetchone()[0]
                assert stored == doc["status"], (stored, doc["status"])
                out[job_id] = doc
    finally:
        db.close()
        await redis.aclose()
    return out


async def inferred(cluster: Cluster) -> int:
    """Items the runners ran through the model (the registry's counter)."""
    redis = aioredis.Redis.from_url(cluster.settings.redis_url)
    try:
        return int(await redis.get("inferq:runners:minilm:1:inferred") or 0)
    finally:
        await redis.aclose()
