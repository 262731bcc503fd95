"""Late formation: a batch is formed when a runner asks for one, and the scheduler learns that
from the runners instead of busy-polling the BATCHES consumer."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import nats

from schemas import subjects
from tests.e2e.harness import Service, wait_terminal

SENTENCE = "Late formation keeps fairness decisions in the job queue until a runner has room."


def texts(n: int) -> list[dict]:
    return [{"text": f"{i}. {SENTENCE}"} for i in range(n)]


async def test_with_no_runner_asking_nothing_is_formed_and_the_scheduler_does_not_spin(
        settings) -> None:
    svc = await Service(settings).start(runners=0)
    try:
        scheduler = svc.schedulers[0].scheduler
        async with svc.client("alpha") as a:
            await a.post("/v1/jobs", json={"model": "minilm", "inputs": texts(1000)})
            for _ in range(200):
                if scheduler.held_items >= scheduler.hold_limit:
                    break
                await asyncio.sleep(0.05)
        assert scheduler.held_items >= scheduler.hold_limit  # the rest waits in JOBS
        assert scheduler.published_batches == 0  # no runner asked: no batch
        checks = 0
        credit = scheduler._credit

        async def counted(pipe):
            nonlocal checks
            checks += 1
            return await credit(pipe)

        scheduler._credit = counted
        await asyncio.sleep(1.0)  # at its hold limit, items overdue: nothing to do but wait
    finally:
        await svc.stop()
    print(f"credit checks in 1 s without room: {checks}")
    assert 1 <= checks <= 40  # ~5 at the 200 ms poll; a spinning loop makes hundreds


async def test_a_runner_asking_for_a_batch_tells_the_schedulers(service, nats_url) -> None:
    nc = await nats.connect(nats_url)
    seen: list[str] = []

    async def on_signal(msg) -> None:
        seen.append(msg.subject)

    await nc.subscribe(subjects.BATCH_WANTED_FILTER, cb=on_signal)
    await nc.flush()
    try:
        async with service.client("alpha") as a:
            job = (await a.post("/v1/jobs", json={"model": "minilm",
                                                  "inputs": texts(40)})).json()["job_id"]
            done = await wait_terminal(a, job)
        await nc.flush()
    finally:
        await nc.close()
    assert done["counts"]["succeeded"] == 40
    batches = service.runners[0].runner.batches_done
    assert seen and set(seen) == {subjects.batch_wanted_subject("minilm", 1)}
    assert len(seen) >= batches


async def test_a_lone_interactive_item_does_not_wait_out_its_queue_delay(settings) -> None:
    # A queue delay far longer than the test: only "nothing more can come now" fires it.
    slow = replace(settings, max_queue_delay_s=600.0)
    svc = await Service(slow).start()
    try:
        async with svc.client("alpha") as a:
            job = (await a.post("/v1/jobs", json={"model": "minilm", "priority": "interactive",
                                                  "input": {"text": SENTENCE}})).json()
            doc = await wait_terminal(a, job["job_id"], within=60)
        assert doc["status"] == "succeeded"
    finally:
        await svc.stop()


async def test_items_held_in_a_former_still_count_in_the_oldest_queue_age(settings) -> None:
    from core import metrics

    svc = await Service(replace(settings, queue_observe_s=0.1)).start(runners=0)
    try:
        scheduler = svc.schedulers[0].scheduler
        async with svc.client("alpha") as a:
            await a.post("/v1/jobs", json={"model": "minilm", "inputs": texts(50)})
            for _ in range(100):  # all 50 pulled into the former: nothing left in the lane
                if scheduler.held_items == 50:
                    break
                await asyncio.sleep(0.05)
            assert scheduler.held_items == 50
            await asyncio.sleep(1.5)
        age = metrics.QUEUE_OLDEST_AGE.labels("minilm", "batch")._value.get()
        assert age >= 1.0  # the held chunk waits, and the gauge says so
    finally:
        await svc.stop()
