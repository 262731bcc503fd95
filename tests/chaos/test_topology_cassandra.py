"""Cassandra failing under a running job, on the production topology with results in
Cassandra: the node SIGKILLed and restarted (same ports, same data), and the node paused
(SIGSTOP) then resumed. While it is out, submits and result reads answer 503 ``unavailable``
(status polls still 200, from Redis) and nothing is counted; after, every item exists exactly
once, the counts equal the rows, nothing was dead-lettered and no role was restarted. A
submit made during the outage is retried with its Idempotency-Key and makes exactly one job.

CI: one role of each kind, one nats-server, a 4 s pause and a kill of a few seconds (plus the
node's ~15 s restart). ``INFERQ_CHAOS_SCALE=long``: the full topology, a 10 s pause.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import httpx
import pytest

from inferq.cassandra_node import start_node
from loadtest.topology import Topology, pause, resume
from tests.chaos.invariants import dlq_messages, inferred
from tests.chaos.on_topology import (
    check_cassandra_invariants,
    client,
    jobs_per_key,
    log_lines,
    restarts,
    running,
    spec,
    submit_retrying,
)
from tests.chaos.watch import StatusWatch, answer, done_items, until_all_terminal, until_done
from tests.chaos.workload import corpus, scaled

pytestmark = [pytest.mark.chaos, pytest.mark.live_cassandra]
SEED = 20261130


async def probe(c: httpx.AsyncClient, job: str) -> dict[str, str]:
    """What the gateway answers now, per route (the submit carries no key: it is only asked)."""
    out = {}
    t0 = time.monotonic()
    r = await c.post("/v1/jobs", json={"model": "minilm", "inputs": corpus(2, SEED)},
                     headers={"Idempotency-Key": f"probe-{time.monotonic_ns()}"})
    out["POST /v1/jobs"] = answer(r)
    out["POST took"] = f"{time.monotonic() - t0:.1f}s"
    for path in (f"/v1/jobs/{job}", f"/v1/jobs/{job}/results?limit=5", "/readyz"):
        out[f"GET {path.split('?')[0].replace(job, '{id}')}"] = answer(await c.get(path))
    return out


async def results_served(c: httpx.AsyncClient, job: str, within: float = 90) -> float:
    """Seconds until a result page reads again (the driver reconnected by itself)."""
    t0 = time.monotonic()
    while (await c.get(f"/v1/jobs/{job}/results?limit=1")).status_code != 200:
        assert time.monotonic() - t0 < within, "results not served again"
        await asyncio.sleep(0.2)
    return time.monotonic() - t0


async def finish(topo: Topology, c: httpx.AsyncClient, watch: StatusWatch,
                 jobs: dict[str, int], keyed: list[str]) -> None:
    """Every job succeeded with exact counts, one job per key, no dead letter, no restart,
    and no 5xx on status polls but 503 ``unavailable``."""
    await until_all_terminal(c, jobs, within=scaled(180, 600), stall_s=60)
    await watch.until_terminal(within=10)
    watch.assert_monotonic()
    assert {a for a in watch.answers if a.startswith("5")} <= {"503 unavailable"}, watch.answers
    docs = await check_cassandra_invariants(topo, jobs)
    for job_id, total in jobs.items():
        assert docs[job_id]["status"] == "succeeded", docs[job_id]
        assert docs[job_id]["counts"]["succeeded"] == total
    per_key = await jobs_per_key(topo)
    for key in keyed:
        assert len(per_key.get(key, [])) == 1, (key, per_key.get(key))
    assert await dlq_messages(topo) == 0
    assert restarts(topo) == {}  # every role rode it out


async def test_cassandra_sigkilled_mid_job_and_restarted_loses_nothing_and_counts_exactly(
        tmp_path, model_repo, chaos_cassandra) -> None:
    node = chaos_cassandra
    async with running(tmp_path, spec("chaos_kill"), model_repo=model_repo, node=node,
                       batch_ack_wait_s=10.0) as topo:
        total, down_s = scaled(1000, 10_000), scaled(3, 15)
        urls = topo.gateway_urls
        first = await submit_retrying(urls, {"model": "minilm",
                                             "inputs": corpus(total, SEED)}, "kill-main")
        job = first.job_id
        jobs = {job: total}
        async with client(urls[-1]) as c:
            watch = StatusWatch(c, job)
            before = await until_done(c, job, total // 4)
            t_kill = time.monotonic()
            await asyncio.to_thread(node.kill)
            await asyncio.sleep(1.0)
            counted = await done_items(c, job)
            during = await probe(c, job)
            await asyncio.sleep(max(0.0, down_s - (time.monotonic() - t_kill)))
            counted = await done_items(c, job) - counted
            # A client that submitted while the node was down retries with its key.
            retry_body = {"model": "minilm", "inputs": corpus(20, SEED + 1)}
            retrying = asyncio.create_task(
                submit_retrying(urls, retry_body, "kill-retry", within=180))
            await asyncio.to_thread(start_node, node)
            back = time.monotonic() - t_kill
            served = await results_served(c, job)
            after = await probe(c, job)
            sub = await retrying
            jobs[sub.job_id] = 20
            await finish(topo, c, watch, jobs, ["kill-main", "kill-retry"])
            done = time.monotonic() - t_kill
        ran = await inferred(topo)
    dup = (ran - sum(jobs.values())) / sum(jobs.values())
    print(f"\ncassandra SIGKILL at {before}/{total} done, CQL back after {back:.1f}s, results "
          f"served {served:.1f}s later, all done {done:.1f}s after the kill: during {during}; "
          f"items counted while down {counted}; after {after}; polls {dict(watch.answers)}; "
          f"retried submit answers {dict(Counter(sub.answers))}; runner naks "
          f"{log_lines(topo, 'transient error', 'runner')}; duplicates executed {dup:.3f}")
    assert {v for k, v in during.items() if k in ("POST /v1/jobs", "GET /v1/jobs/{id}/results",
                                                   "GET /readyz")} == {"503 unavailable"}, during
    assert during["GET /v1/jobs/{id}"] == "200", during  # status comes from Redis
    assert counted == 0  # nothing is counted without its row
    assert "503 unavailable" in sub.answers, sub.answers  # it did meet the outage
    assert {v for k, v in after.items() if k != "POST took"} <= {"200", "202"}, after


async def test_cassandra_paused_mid_job_times_out_then_completes_without_double_counts(
        tmp_path, model_repo, chaos_cassandra) -> None:
    node = chaos_cassandra
    # A 2 s query timeout: the pause shows as timeouts (unknown outcomes included) within it.
    async with running(tmp_path, spec("chaos_pause", cassandra_timeout_s=2.0),
                       model_repo=model_repo, node=node, batch_ack_wait_s=10.0) as topo:
        total, pause_s = scaled(1000, 10_000), scaled(4, 10)
        urls = topo.gateway_urls
        first = await submit_retrying(urls, {"model": "minilm",
                                             "inputs": corpus(total, SEED + 2)}, "pause-main")
        job = first.job_id
        jobs = {job: total}
        async with client(urls[-1]) as c:
            watch = StatusWatch(c, job)
            before = await until_done(c, job, total // 4)
            t_pause = time.monotonic()
            pause(node)
            try:
                retry_body = {"model": "minilm", "inputs": corpus(20, SEED + 3)}
                retrying = asyncio.create_task(
                    submit_retrying(urls, retry_body, "pause-retry", within=180))
                await asyncio.sleep(0.5)
                during = await probe(c, job)
                await asyncio.sleep(max(0.0, pause_s - (time.monotonic() - t_pause)))
            finally:
                resume(node)
            served = await results_served(c, job)
            sub = await retrying
            jobs[sub.job_id] = 20
            await finish(topo, c, watch, jobs, ["pause-main", "pause-retry"])
            done = time.monotonic() - t_pause
        ran = await inferred(topo)
    timeouts = log_lines(topo, "Timeout|TimedOut", "runner") + log_lines(topo, "Timeout|TimedOut",
                                                                        "gateway")
    dup = (ran - sum(jobs.values())) / sum(jobs.values())
    print(f"\ncassandra SIGSTOP {pause_s}s at {before}/{total} done: during {during}; results "
          f"served {served:.1f}s after SIGCONT, all done {done:.1f}s after the pause; polls "
          f"{dict(watch.answers)}; retried submit answers {dict(Counter(sub.answers))} "
          f"(replayed {sub.replayed}); log lines with timeouts {timeouts}; runner naks "
          f"{log_lines(topo, 'transient error', 'runner')}; duplicates executed {dup:.3f}")
    assert during["POST /v1/jobs"] == "503 unavailable", during
    assert during["GET /v1/jobs/{id}/results"] == "503 unavailable", during
    assert during["GET /v1/jobs/{id}"] == "200", during
    assert timeouts >= 1  # the pause was met as timeouts

