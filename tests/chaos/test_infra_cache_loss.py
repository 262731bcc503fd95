"""Redis FLUSHALL mid-job: Redis is a cache, so the job's counters and item markers are
rebuilt from the result store; the gateway never answers 5xx, the counts end exact, and the
terminal transition happens exactly once.
"""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
import redis.asyncio as aioredis

from tests.chaos.invariants import check_invariants, inferred
from tests.chaos.watch import StatusWatch, answer, until_done
from tests.chaos.workload import corpus, scaled

pytestmark = [pytest.mark.chaos]
SEED = 20261209


async def test_flushall_at_half_and_near_the_end_rebuilds_exact_counts_without_5xx(
        make_cluster) -> None:
    cluster = make_cluster(batch_ack_wait_s=5.0)
    cluster.add("gateway")
    cluster.add("scheduler")
    cluster.add("runner")
    await cluster.ready()
    cluster.supervise()
    total = scaled(1000, 5000)
    redis = aioredis.Redis.from_url(cluster.settings.redis_url)
    flushed_at, ran, answers = [], 0, []
    try:
        async with cluster.client() as c:
            r = await c.post("/v1/jobs", json={"model": "minilm", "inputs": corpus(total, SEED)})
            job = r.json()["job_id"]
            jobs = {job: total}
            watch = StatusWatch(c, job)
            for fraction in (0.5, 0.9):
                flushed_at.append(await until_done(c, job, int(total * fraction)))
                ran += await inferred(cluster)  # the duplicates statistic goes with the flush
                await redis.flushall()
                # A burst of polls races the runner to rebuild the hash, and a submit finds its
                # rate-limit buckets and backlog counters gone.
                polls = await asyncio.gather(*(c.get(f"/v1/jobs/{job}") for _ in range(20)))
                answers += [answer(p) for p in polls]
                r = await c.post("/v1/jobs", json={"model": "minilm",
                                                   "inputs": corpus(20, SEED + len(jobs))})
                answers.append(answer(r))
                if r.status_code == 202:
                    jobs[r.json()["job_id"]] = 20
            await watch.until_terminal(within=scaled(180, 600))
            watch.assert_monotonic()
            for j in jobs:
                if j != job:
                    await StatusWatch(c, j).until_terminal(within=60)
        assert watch.errors_5xx == 0, watch.answers
        assert set(answers) <= {"200", "202"}, answers
        docs = await check_invariants(cluster, jobs)
        assert docs[job]["status"] == "succeeded" and docs[job]["counts"]["succeeded"] == total
        assert len(jobs) == 3
        # Exactly one terminal transition: Redis and the store carry the same finished_at
        # (each transition writes its own clock; the store keeps the first writer's).
        db = sqlite3.connect(cluster.settings.results_url.removeprefix("sqlite:///"))
        try:
            for j in jobs:
                stored = db.execute("select finished_at from jobs where job_id = ?",
                                    (j,)).fetchone()[0]
                cached = float(await redis.hget(f"inferq:job:{j}", "finished_at"))
                assert abs(stored - cached) < 1e-6, (j, stored, cached)
        finally:
            db.close()
        # The backlog counters behind quotas and overload were rebuilt with the jobs: nothing
        # is left queued or running.
        backlog = {k.decode(): int(v) for k, v in (await redis.hgetall("inferq:backlog")).items()}
        assert all(v == 0 for v in backlog.values()), backlog
        ran += await inferred(cluster)
    finally:
        await redis.aclose()
    print(f"\nFLUSHALL at {flushed_at} of {total} done: polls and submits right after "
          f"{sorted(set(answers))}, poll answers {dict(watch.answers)}; backlog {backlog}; "
          f"duplicates executed ~{(ran - total - 40) / total:.3f}; restarts {cluster.crashes}")
    assert cluster.crashes == {}
