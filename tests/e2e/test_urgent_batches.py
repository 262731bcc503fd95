"""Urgent batches: interactive-led batches go to their own BATCHES subject, formed as soon as a
runner pulls there and taken ahead of the batch work a runner holds — without losing or
repeating any item of the batch job they overtake."""

from __future__ import annotations

import asyncio
import dataclasses

import nats

from schemas import subjects
from schemas.bus import BATCH_DECODER
from tests.e2e.harness import Service, wait_terminal

SENTENCE = "An urgent batch overtakes the batch work that a runner already holds."


async def _watch_batches(nats_url: str) -> tuple[nats.NATS, dict[str, list[str]]]:
    """Every batch published, by subject: the job ids of its items."""
    nc = await nats.connect(nats_url)
    seen: dict[str, list[str]] = {}

    async def on_batch(msg) -> None:
        batch = BATCH_DECODER.decode(msg.data)
        seen.setdefault(msg.subject, []).extend(i.job_id for i in batch.items)

    await nc.subscribe(f"{subjects.BATCHES_PREFIX}.>", cb=on_batch)
    await nc.flush()
    return nc, seen


async def _probes_during_a_batch_job(svc: Service, n_batch: int, n_probes: int
                                     ) -> tuple[dict, list[dict], list[str]]:
    """A batch job from one tenant and, while it runs, 1-item interactive jobs one after the
    other from another: the batch job's final document, the probes' and their ids."""
    async with svc.client("alpha") as a, svc.client("beta") as b:
        inputs = [{"text": f"{i}. {SENTENCE}"} for i in range(n_batch)]
        big = (await a.post("/v1/jobs", json={"model": "minilm", "inputs": inputs})).json()
        probes, ids = [], []
        for k in range(n_probes):
            r = await b.post("/v1/jobs", json={"model": "minilm", "priority": "interactive",
                                               "input": {"text": f"probe {k}: {SENTENCE}"}})
            assert r.status_code == 202, r.text
            ids.append(r.json()["job_id"])
            probes.append(await wait_terminal(b, ids[-1], within=60))
        return await wait_terminal(a, big["job_id"]), probes, ids


async def test_interactive_items_overtake_a_running_batch_job_and_it_still_finishes_exactly(
        settings, nats_url) -> None:
    # A slow simulated device: batch work queues up at the runner, so the probes can overtake.
    sim = dataclasses.replace(settings, backend="simulated", sim_batch_ms=20.0)
    nc, seen = await _watch_batches(nats_url)
    svc = await Service(sim).start()
    try:
        big, probes, ids = await _probes_during_a_batch_job(svc, 3000, 8)
    finally:
        await svc.stop()
        await nc.close()
    assert [p["status"] for p in probes] == ["succeeded"] * 8
    assert big["counts"] == {"total": 3000, "pending": 0, "running": 0, "succeeded": 3000,
                             "failed": 0}, big
    urgent = seen.get(subjects.batch_subject("minilm", 1, urgent=True), [])
    bulk = seen.get(subjects.batch_subject("minilm", 1), [])
    assert set(ids) <= set(urgent)  # every probe rode an urgent batch
    assert len(urgent) + len(bulk) == 3000 + 8  # every item published exactly once


async def test_with_urgent_batches_off_interactive_items_queue_with_the_batch_work(
        settings, nats_url) -> None:
    off = dataclasses.replace(settings, backend="simulated", urgent_batches=False)
    nc, seen = await _watch_batches(nats_url)
    svc = await Service(off).start()
    try:
        big, probes, ids = await _probes_during_a_batch_job(svc, 500, 3)
    finally:
        await svc.stop()
        await nc.close()
    assert [p["status"] for p in probes] == ["succeeded"] * 3
    assert big["counts"]["succeeded"] == 500
    assert subjects.batch_subject("minilm", 1, urgent=True) not in seen
    assert set(ids) <= set(seen[subjects.batch_subject("minilm", 1)])


async def test_a_scheduler_falls_back_to_the_batch_subject_for_runners_without_urgent_pulls(
        settings, nats_url) -> None:
    # Runners of an older version (urgent batches off) never pull the urgent subject: the
    # scheduler, with it on, finds no urgent consumer and sends interactive items with the rest.
    on = dataclasses.replace(settings, backend="simulated")
    svc = Service(on)
    svc.role_settings = lambda role, _own=svc.role_settings: (  # type: ignore[method-assign]
        dataclasses.replace(_own(role), urgent_batches=False) if role == "runner"
        else _own(role))
    nc, seen = await _watch_batches(nats_url)
    await svc.start()
    try:
        big, probes, ids = await _probes_during_a_batch_job(svc, 300, 2)
    finally:
        await svc.stop()
        await nc.close()
    assert [p["status"] for p in probes] == ["succeeded"] * 2
    assert big["counts"]["succeeded"] == 300
    assert set(ids) <= set(seen[subjects.batch_subject("minilm", 1)])


async def test_urgent_batches_published_while_none_is_pulled_wait_for_a_runner_to_ask(
        settings) -> None:
    # No runner: no urgent consumer, no credit; the item waits in the former, nothing is lost.
    svc = await Service(dataclasses.replace(settings, backend="simulated")).start(runners=0)
    try:
        scheduler = svc.schedulers[0].scheduler
        async with svc.client("beta") as b:
            r = await b.post("/v1/jobs", json={"model": "minilm", "priority": "interactive",
                                               "input": {"text": SENTENCE}})
            job = r.json()["job_id"]
            for _ in range(100):
                if scheduler.held_items:
                    break
                await asyncio.sleep(0.05)
            assert scheduler.held_items == 1 and scheduler.published_batches == 0
            await svc.add_runner()
            assert (await wait_terminal(b, job, within=30))["status"] == "succeeded"
    finally:
        await svc.stop()
