"""nats-server killed the hard way: a single server SIGKILLed and restarted (same port, same
store directory) again and again during ingest and processing, and a 3-node JetStream
cluster with R3 streams losing nodes during a job. Every accepted job completes exactly, the
clients reconnect by themselves (no role restarts), and the replicas agree afterwards. Last,
the deterministic form of the failure those kills first exposed: BATCHES refusing publishes
for a moment must strand no item in the scheduler.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import nats
import pytest

from schemas import subjects
from tests.chaos.cluster import Cluster
from tests.chaos.invariants import check_invariants, dlq_messages, inferred
from tests.chaos.outages import down_for
from tests.chaos.watch import StatusWatch, answer, done_items, until_all_terminal, until_done
from tests.chaos.workload import corpus, scaled

pytestmark = [pytest.mark.chaos]
SEED = 20261207



def requeued_batches(cluster: Cluster) -> int:
    """Streaks of batch publishes JetStream refused, whose items the scheduler put back in its
    buckets (logged once per streak; before 4c71d1e such items were dropped and their chunks
    held forever: a stalled job)."""
    return cluster.log_lines("item(s) requeued", "scheduler")


async def drained(url: str, within: float) -> bool:
    """JOBS and BATCHES empty (every PubAck'd chunk consumed and acked), within ``within``."""
    deadline = time.monotonic() + within
    while True:
        streams = await stream_messages(url)
        if streams["JOBS"] == streams["BATCHES"] == 0:
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.5)


async def settle(cluster: Cluster, c: httpx.AsyncClient, jobs: dict[str, int],
                 within: float) -> None:
    """Every job ends (no stall longer than any AckWait) and the work streams drain: every
    PubAck'd chunk and batch was consumed and acked."""
    await until_all_terminal(c, jobs, within, stall_s=20)
    url = cluster.settings.nats_url
    assert await drained(url, within=20), await stream_messages(url)


async def submit_until_accepted(c: httpx.AsyncClient, items: list[dict], key: str,
                                answers: list[str], within: float = 120) -> str:
    """A well-behaved client: resend the same Idempotency-Key on every retryable answer
    (503 while NATS is down, 409 while a half-done first attempt is in its grace period)."""
    deadline = time.monotonic() + within
    while True:
        try:
            r = await c.post("/v1/jobs", json={"model": "minilm", "inputs": items},
                             headers={"Idempotency-Key": key})
            answers.append(answer(r))
            if r.status_code == 202:
                return r.json()["job_id"]
            assert r.status_code in (409, 503) and r.json()["retryable"], r.text
        except httpx.TransportError as exc:
            answers.append(type(exc).__name__)
        assert time.monotonic() < deadline, f"{key} not accepted in {within}s: {answers}"
        await asyncio.sleep(0.3)


async def stream_messages(url: str) -> dict[str, int]:
    nc = await nats.connect(url.split(","))
    try:
        js = nc.jetstream()
        return {s: (await js.stream_info(s)).state.messages
                for s in (subjects.JOBS_STREAM, subjects.BATCHES_STREAM, subjects.DLQ_STREAM)}
    finally:
        await nc.close()


def jobs_per_key(cluster: Cluster) -> dict[str, int]:
    db = sqlite3.connect(cluster.settings.results_url.removeprefix("sqlite:///"))
    try:
        return dict(db.execute("select coalesce(idempotency_key, job_id), count(*) from jobs "
                               "group by 1").fetchall())
    finally:
        db.close()


async def test_nats_sigkilled_and_restarted_repeatedly_every_accepted_job_completes(
        make_cluster) -> None:
    cluster = make_cluster(batch_ack_wait_s=5.0, chunk_ack_wait_s=5.0, chunk_items=64)
    cluster.add("gateway", INFERQ_IDEMPOTENCY_GRACE_S="2")
    cluster.add("scheduler")
    cluster.add("runner")
    await cluster.ready()
    await cluster.started()  # (a role whose start-up meets no NATS exits, to be restarted)
    cluster.supervise()
    pace, kill_at = random.Random(SEED), random.Random(SEED + 1)  # one stream each: replayable
    n_jobs, per_job, kills = scaled(12, 40), scaled(50, 100), scaled(3, 10)
    answers: list[str] = []
    watches: list[StatusWatch] = []
    jobs: dict[str, int] = {}
    outages: list[tuple[float, float]] = []

    async def ingest(c: httpx.AsyncClient) -> None:
        for j in range(n_jobs):
            items = [dict(it, id=f"j{j}-{it['id']}") for it in corpus(per_job, SEED + j)]
            job = await submit_until_accepted(c, items, f"nats-chaos-{j}", answers)
            jobs[job] = per_job
            watches.append(StatusWatch(c, job, interval=0.5))
            await asyncio.sleep(pace.uniform(0.1, 0.5))

    async def killer(c: httpx.AsyncClient) -> None:
        for _ in range(kills):
            await asyncio.sleep(kill_at.uniform(0.5, 2.0))
            down = kill_at.uniform(0.5, 2.0)
            done = sum([await done_items(c, j) for j in list(jobs)])
            outages.append((round(down, 2), done))
            await down_for(cluster.nats, down, kill=True)

    async with cluster.client() as c:
        await asyncio.gather(ingest(c), killer(c))
        await settle(cluster, c, jobs, within=scaled(180, 600))
        for w in watches:
            await w.until_terminal(within=10)
            w.assert_monotonic()
            assert w.errors_5xx == 0, w.answers  # status polls never need NATS
    docs = await check_invariants(cluster, jobs)
    assert all(d["counts"]["succeeded"] == per_job for d in docs.values())
    assert sorted(jobs_per_key(cluster).values()) == [1] * n_jobs  # one job per key, no orphan
    assert await dlq_messages(cluster) == 0
    ran, total = await inferred(cluster), n_jobs * per_job
    reconnects = cluster.log_lines("nats reconnected")
    print(f"\nnats SIGKILL x{kills} (down s, items done at kill: {outages}): {n_jobs} jobs, "
          f"{total} items; submit answers {dict(sorted(Counter(answers).items()))}; role "
          f"reconnects logged {reconnects}; batch publishes requeued "
          f"{requeued_batches(cluster)}; crash restarts {cluster.crashes}; duplicates executed "
          f"{(ran - total) / total:.3f}")
    assert cluster.crashes == {}  # the roles reconnected by themselves


async def test_a_three_node_cluster_losing_nodes_mid_job_keeps_every_invariant_and_replicas_agree(
        make_cluster) -> None:
    cluster = make_cluster(nats_nodes=3, batch_ack_wait_s=5.0, chunk_ack_wait_s=5.0)
    assert cluster.nats_cluster is not None
    await cluster.nats_cluster.healthy()
    cluster.add("gateway")
    cluster.add("scheduler")
    cluster.add("runner")
    await cluster.ready()
    cluster.supervise()
    nodes = cluster.nats_cluster.nodes
    states = await cluster.nats_cluster.replicas_agree()
    assert set(states) == {"JOBS", "BATCHES", "DLQ"}  # R3: a replica on every node
    rng = random.Random(SEED + 100)
    total, kills = scaled(2000, 10_000), scaled(2, 8)
    async with cluster.client() as c:
        r = await c.post("/v1/jobs", json={"model": "minilm", "inputs": corpus(total, SEED)})
        assert r.status_code == 202, r.text
        job = r.json()["job_id"]
        watch = StatusWatch(c, job)
        killed = []
        for k in range(kills):
            await until_done(c, job, total * (k + 1) // (kills + 2), within=scaled(120, 600))
            # Alternate between the hot stream's leader and a node drawn by the seed.
            leader = (await cluster.nats_cluster.replica_states())[nodes[0].name].get(
                "BATCHES", {}).get("cluster", {}).get("leader")
            victim = next((n for n in nodes if n.name == leader), None) if k % 2 == 0 else None
            victim = victim or rng.choice(nodes)
            killed.append(f"{victim.name}{' (BATCHES leader)' if victim.name == leader else ''}")
            await down_for(victim.server, rng.uniform(1.0, 3.0), kill=True)
            await cluster.nats_cluster.healthy()
        await settle(cluster, c, {job: total}, within=scaled(240, 900))
        await watch.until_terminal(within=10)
        watch.assert_monotonic()
        assert watch.errors_5xx == 0
    [doc] = (await check_invariants(cluster, {job: total})).values()
    assert doc["status"] == "succeeded" and doc["counts"]["succeeded"] == total
    agreed = await cluster.nats_cluster.replicas_agree()
    # Work streams drained; object-store streams (a job's kept inputs) agree but stay.
    assert {s: v["messages"] for s, v in agreed.items() if not s.startswith("OBJ_")} == \
        {"JOBS": 0, "BATCHES": 0, "DLQ": 0}
    ran = await inferred(cluster)
    print(f"\n3-node cluster, R3, SIGKILLed {killed}: {total} items, replicas agree {agreed}; "
          f"batch publishes requeued {requeued_batches(cluster)}; crash restarts "
          f"{cluster.crashes}; duplicates executed {(ran - total) / total:.3f}")
    assert cluster.crashes == {}


@contextlib.asynccontextmanager
async def batches_refused(cluster: Cluster) -> AsyncIterator[None]:
    """BATCHES refuses every publish while the block runs (its max message size set to one
    byte), as JetStream does during a leader election or with a full store; then restored."""
    nc = await nats.connect(cluster.settings.nats_url.split(","))
    js = nc.jetstream()
    try:
        cfg = (await js.stream_info(subjects.BATCHES_STREAM)).config
        await js.update_stream(dataclasses.replace(cfg, max_msg_size=1))
        try:
            yield
        finally:
            await js.update_stream(cfg)
    finally:
        await nc.close()


async def test_batch_publishes_refused_for_a_moment_strand_no_item(make_cluster) -> None:
    """The deterministic form of what the NATS kills above hit by chance: a publish to
    BATCHES that raises must leave its items to be formed again, not dropped while their
    chunks are held (and heartbeated) forever."""
    cluster = make_cluster(batch_ack_wait_s=5.0, chunk_ack_wait_s=5.0)
    cluster.add("gateway")
    cluster.add("scheduler")
    cluster.add("runner")
    await cluster.ready()
    cluster.supervise()
    total = 600
    async with cluster.client() as c:
        r = await c.post("/v1/jobs", json={"model": "minilm", "inputs": corpus(total, SEED)})
        job = r.json()["job_id"]
        watch = StatusWatch(c, job)
        await until_done(c, job, total // 4)
        async with batches_refused(cluster):
            await asyncio.sleep(3)
        refused = requeued_batches(cluster)
        await settle(cluster, c, {job: total}, within=90)
        await watch.until_terminal(within=10)
        watch.assert_monotonic()
        assert watch.errors_5xx == 0
    [doc] = (await check_invariants(cluster, {job: total})).values()
    assert doc["counts"]["succeeded"] == total
    assert await dlq_messages(cluster) == 0
    ran = await inferred(cluster)
    print(f"\nBATCHES refused publishes for 3 s: {refused} batch publishes refused and "
          f"requeued; duplicates executed {(ran - total) / total:.3f}")
    assert refused >= 1  # the fault did fire
    assert cluster.crashes == {}
