"""Runners and schedulers killed the hard way: nothing lost, nothing counted twice.

Short versions run in CI; ``INFERQ_CHAOS_SCALE=long python -m pytest -m chaos`` runs the long
ones. Seeds are fixed, so a failure replays.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from tests.chaos.invariants import check_invariants, inferred
from tests.chaos.watch import StatusWatch
from tests.chaos.workload import corpus, scaled

pytestmark = [pytest.mark.chaos]
SEED = 20261128


async def submit(cluster, items: list[dict], tenant: str = "alpha") -> str:
    async with cluster.client(tenant) as c:
        r = await c.post("/v1/jobs", json={"model": "minilm", "inputs": items})
        assert r.status_code == 202, r.text
        return r.json()["job_id"]


async def test_runner_sigkilled_at_random_moments_loses_and_double_counts_nothing(
        make_cluster) -> None:
    cluster = make_cluster(batch_ack_wait_s=5.0)
    cluster.add("gateway")
    cluster.add("scheduler")
    runner = cluster.add("runner")
    await cluster.ready()
    cluster.supervise()
    total, kills = scaled(800, 2000), scaled(3, 20)
    job = await submit(cluster, corpus(total, SEED))
    rng = random.Random(SEED)
    async with cluster.client() as c:
        watch = StatusWatch(c, job)
        last = 0
        for _ in range(kills):
            while True:  # kill a runner that is making progress, at a random moment
                counts = (await c.get(f"/v1/jobs/{job}")).json()["counts"]
                done = counts["succeeded"] + counts["failed"]
                if done > last or done == total:
                    break
                await asyncio.sleep(0.05)
            last = done
            if done == total:
                break
            await asyncio.sleep(rng.uniform(0.05, 0.8))
            runner.kill()  # SIGKILL; the supervisor restarts it
        await watch.until_terminal(within=scaled(240, 900))
        watch.assert_monotonic()
        assert watch.errors_5xx == 0
    [doc] = (await check_invariants(cluster, {job: total})).values()
    assert doc["status"] == "succeeded" and doc["counts"]["succeeded"] == total
    ran = await inferred(cluster)
    print(f"\nrunner SIGKILL x{kills}: {total} items, {ran} inferred, "
          f"duplicates executed {(ran - total) / total:.3f}, restarts {runner.crashes}")
    assert runner.crashes >= 1


@pytest.mark.parametrize("point", ["runner.after_inference", "runner.after_upsert",
                                   "runner.after_redis", "runner.after_ack"])
async def test_each_runner_crash_point_fired_repeatedly_ends_with_exact_counts(
        make_cluster, point: str) -> None:
    cluster = make_cluster(batch_ack_wait_s=4.0)
    cluster.add("gateway")
    cluster.add("scheduler")
    runner = cluster.add("runner", INFERQ_FAULTS=f"{point}:0.2",
                         INFERQ_FAULTS_SEED=str(SEED))
    await cluster.ready()
    cluster.supervise()
    total = scaled(300, 2000)
    job = await submit(cluster, corpus(total, SEED + 1))
    async with cluster.client() as c:
        watch = StatusWatch(c, job)
        await watch.until_terminal(within=scaled(300, 900))
        watch.assert_monotonic()
    [doc] = (await check_invariants(cluster, {job: total})).values()
    assert doc["counts"]["succeeded"] == total
    ran = await inferred(cluster)
    print(f"\n{point} @0.2: crashes {runner.crashes}, duplicates executed "
          f"{(ran - total) / total:.3f}")
    assert runner.crashes >= 2  # the point fired repeatedly


async def test_scheduler_killed_between_publish_and_ack_counts_duplicates_once(
        make_cluster) -> None:
    cluster = make_cluster(chunk_ack_wait_s=3.0, chunk_items=64)
    cluster.add("gateway")
    # Per batch published / chunk acked. (At 10% per publish a scheduler holding ~100 batches'
    # worth of chunks never finishes a life: a livelock by construction, not a finding.)
    sched = cluster.add("scheduler",
                        INFERQ_FAULTS="scheduler.after_publish:0.03,scheduler.before_ack:0.05",
                        INFERQ_FAULTS_SEED=str(SEED))
    cluster.add("runner")
    await cluster.ready()
    cluster.supervise()
    total = scaled(600, 3000)
    job = await submit(cluster, corpus(total, SEED + 2))
    async with cluster.client() as c:
        watch = StatusWatch(c, job)
        await watch.until_terminal(within=scaled(300, 900))
        watch.assert_monotonic()
    [doc] = (await check_invariants(cluster, {job: total})).values()
    assert doc["counts"]["succeeded"] == total
    ran = await inferred(cluster)
    print(f"\nscheduler crash after publish x{sched.crashes}: {ran} inferred for {total}, "
          f"duplicates executed {(ran - total) / total:.3f} (none counted twice)")
    assert sched.crashes >= 1


async def test_a_poison_item_is_isolated_and_fails_alone_without_starving_others(
        make_cluster) -> None:
    import nats

    cluster = make_cluster(batch_ack_wait_s=2.0)
    cluster.add("gateway")
    cluster.add("scheduler")
    runner = cluster.add("runner", INFERQ_FAULTS_POISON_IDS="i37")
    await cluster.ready()
    cluster.supervise()
    poisoned = await submit(cluster, corpus(100, SEED + 3))
    others = [dict(it, id=f"beta-{it['id']}") for it in corpus(50, SEED + 4)]
    other = await submit(cluster, others, tenant="beta")
    async with cluster.client() as a, cluster.client("beta") as b:
        w1, w2 = StatusWatch(a, poisoned), StatusWatch(b, other)
        await w2.until_terminal(within=120)
        await w1.until_terminal(within=180)
        failed = (await a.get(f"/v1/jobs/{poisoned}/results",
                              params={"status": "failed"})).json()["items"]
    docs = await check_invariants(cluster, {poisoned: 100, other: 50})
    assert docs[poisoned]["status"] == "succeeded" and docs[poisoned]["outcome"] == "partial"
    assert [(f["index"], f["error"]["code"]) for f in failed] == [(37, "internal_error")]
    assert docs[other]["outcome"] == "all_succeeded"
    nc = await nats.connect(cluster.settings.nats_url)
    try:
        info = await nc.jetstream().stream_info("DLQ")
        assert info.state.messages == 1
    finally:
        await nc.close()
    print(f"\npoison item: runner crashed {runner.crashes} times, isolated, DLQ 1")
