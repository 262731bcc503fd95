"""A gateway SIGKILLed while clients submit, on the production topology with results (and
idempotency keys) in Cassandra, two gateways behind the clients. Each client resends the
same Idempotency-Key until it gets a 202: at once to the other gateway on a connection
error, after a moment on a retryable answer (409 while a dead gateway's claim is within its
grace, 503). Besides the SIGKILLs, the first gateway dies at crash points right after
claiming a key and mid-publish, so some retries must replay or finish a dead gateway's
submission. Every
key ends with exactly one job, the one its client was given, and every job completes with
exact counts; only gateways were restarted.

CI: one nats-server, one scheduler and runner, two gateways, two kills. ``INFERQ_CHAOS_SCALE=
long``: the full topology and six kills.
"""

from __future__ import annotations

import asyncio
import random
import signal
from collections import Counter

import pytest

from core.faults import EXIT_CODE
from tests.chaos.invariants import dlq_messages, inferred
from tests.chaos.on_topology import (
    Submission,
    check_cassandra_invariants,
    client,
    jobs_per_key,
    restarts,
    running,
    spec,
    submit_retrying,
)
from tests.chaos.watch import until_all_terminal
from tests.chaos.workload import corpus, scaled

pytestmark = [pytest.mark.chaos, pytest.mark.live_cassandra]
SEED = 20261201


async def test_gateways_sigkilled_during_submits_make_one_job_per_idempotency_key(
        tmp_path, model_repo, chaos_cassandra) -> None:
    # 1,000-item jobs in 64-item chunks: a submit publishes 16, so a kill can land between
    # them; a 2 s grace: a retry takes over a dead gateway's claim soon; a fast device.
    topo_spec = spec("chaos_gateways", short={"gateways": 2}, sim_token_us=10.0)
    # Besides the SIGKILLs (which land anywhere), the first gateway dies by crash points right
    # after claiming a key and mid-publish: the windows where a retry must replay or take over
    # (on the other gateway, mostly: clients fail over).
    faults = {"INFERQ_FAULTS": "gateway.after_idempotency_record:0.3,gateway.mid_publish:0.2",
              "INFERQ_FAULTS_SEED": str(SEED)}
    async with running(tmp_path, topo_spec, model_repo=model_repo, node=chaos_cassandra,
                       role_env={"gateway-0": faults}, chunk_items=64,
                       idempotency_grace_s=2.0) as topo:
        urls = topo.gateway_urls
        n_jobs, per_job, kills = scaled(16, 120), 1000, scaled(2, 6)
        clients = 4
        subs: list[Submission] = []
        killed: list[str] = []
        rng = random.Random(SEED)
        pending = list(range(n_jobs))
        progress = asyncio.Condition()

        async def submitter() -> None:
            while pending:
                j = pending.pop(0)
                items = [dict(it, id=f"j{j}-{it['id']}") for it in corpus(per_job, SEED + j)]
                sub = await submit_retrying(urls, {"model": "minilm", "inputs": items},
                                            f"gw-chaos-{j}", first=j, within=180)
                async with progress:
                    subs.append(sub)
                    progress.notify_all()

        async def killer() -> None:
            for k in range(kills):
                # Each kill once a further share of the jobs is in, while others are in flight.
                share = n_jobs * (k + 1) // (kills + 1)
                async with progress:
                    await progress.wait_for(lambda share=share: len(subs) >= share)
                await asyncio.sleep(rng.uniform(0.0, 0.2))
                victim = topo.of("gateway")[k % len(urls)]
                killed.append(f"{victim.name} at {len(subs)}/{n_jobs} accepted")
                await asyncio.to_thread(victim.kill)  # the supervisor starts it again

        await asyncio.gather(killer(), *(submitter() for _ in range(clients)))
        await asyncio.sleep(0.5)  # (the supervisor's next look restarts the last one killed)
        await topo.ready()
        jobs = {s.job_id: per_job for s in subs}
        assert len(subs) == n_jobs and len(jobs) == n_jobs  # one distinct job per key
        async with client(urls[-1]) as c:
            await until_all_terminal(c, jobs, within=scaled(180, 600), stall_s=60)
        docs = await check_cassandra_invariants(topo, jobs)
        per_key = await jobs_per_key(topo)
        gateway_restarts = restarts(topo)
        exits = Counter(code for g in topo.of("gateway") for code in g.exit_codes)
        dlq = await dlq_messages(topo)
        ran = await inferred(topo)
    assert all(d["status"] == "succeeded" and d["counts"]["succeeded"] == per_job
               for d in docs.values()), docs
    assert {s.key: [s.job_id] for s in subs} == per_key  # no job beside the clients' own
    assert dlq == 0
    assert set(gateway_restarts) <= {g.name for g in topo.of("gateway")}, gateway_restarts
    assert exits[-signal.SIGKILL] == kills, exits
    answers = Counter(a for s in subs for a in s.answers)
    cut_off = [s for s in subs if len(s.answers) > 1 and s.answers[0] != "202"]
    assert exits[EXIT_CODE] >= 1, exits  # a gateway died holding a claim ...
    assert any(s.replayed for s in cut_off)  # ... and a retry replayed or completed it
    total = n_jobs * per_job
    replayed = sum(s.replayed for s in cut_off)
    print(f"\ngateways SIGKILLed {killed} during {n_jobs} keyed submits of {per_job} items "
          f"({clients} clients): answers {dict(sorted(answers.items()))}; submits retried "
          f"{len(cut_off)}, of which replayed {replayed}; jobs per key "
          f"{dict(Counter(map(len, per_key.values())))}; restarts {gateway_restarts} (exit "
          f"codes {dict(exits)}); duplicates executed {(ran - total) / total:.3f}")
