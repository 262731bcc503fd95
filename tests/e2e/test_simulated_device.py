"""On the simulated accelerator at full speed, with several batches in flight and two
runners sharing the work, every item's output is its own: derived from its own tokens. A new
runner tells the schedulers its speed as soon as it has measured it."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import numpy as np

from gpu_runner.backends.simulated import token_vectors
from gpu_runner.service import HEARTBEAT_S
from models.bucketing import pad_batch
from models.repository import ModelRepository
from models.tokenize import TextTokenizer
from store.redis_client import open_configured_redis
from store.runners import RunnerRegistry
from tests.e2e.harness import Service, all_results, wait_terminal


async def test_every_item_gets_the_vector_of_its_own_text(settings, model_repo, golden_items
                                                          ) -> None:
    sim = dataclasses.replace(settings, backend="simulated", runner_queue_s=1.0)
    texts = [f"{g['text']} #{i}" for i, g in enumerate(golden_items * 15)]  # 600 distinct
    texts += texts[:50]  # and 50 repeats, far apart in the job
    svc = Service(sim)
    await svc.start(runners=2)
    try:
        async with svc.client() as c:
            inputs = [{"text": t, "id": str(i)} for i, t in enumerate(texts)]
            r = await c.post("/v1/jobs", json={"model": "minilm", "inputs": inputs})
            assert r.status_code == 202, r.text
            job = r.json()["job_id"]
            doc = await wait_terminal(c, job)
            assert doc["counts"]["succeeded"] == len(texts), doc
            items = await all_results(c, job)
    finally:
        await svc.stop()
    repo = ModelRepository(model_repo)
    tok = TextTokenizer.from_dir(repo.version_dir("minilm", 1), repo.config("minilm", 1))
    expected = [token_vectors(*pad_batch([e.ids], len(e.ids)), 384)[0] for e in tok.encode(texts)]
    assert [it["index"] for it in items] == list(range(len(texts)))
    for it in items:
        assert it["id"] == str(it["index"])
        assert it["simulated"] is True  # no model ran, and the result says so
        got = np.asarray(it["output"]["embedding"], dtype=np.float32)
        np.testing.assert_array_equal(got, expected[it["index"]], err_msg=f"item {it['index']}")
    repeat = items[len(texts) - 1]["output"]["embedding"]
    assert repeat == items[49]["output"]["embedding"]


async def test_a_new_runner_tells_the_schedulers_its_speed_soon_after_its_first_batch(
        settings) -> None:
    """The schedulers form work ahead for a runner from its measured capacity: a new runner
    reports it within a beat of ``FIRST_MEASURE_S`` of its first batch, not at its next
    regular heartbeat (``HEARTBEAT_S``, seconds later)."""
    svc = Service(dataclasses.replace(settings, backend="simulated"))
    await svc.start(runners=1)
    redis = open_configured_redis(settings)
    registry = RunnerRegistry(redis)
    try:
        assert (await registry.pool("minilm", 1)).capacity is None
        async with svc.client() as c:
            r = await c.post("/v1/jobs", json={"model": "minilm", "inputs": [{"text": "hi"}]})
            await wait_terminal(c, r.json()["job_id"])
        done = time.monotonic()
        while (await registry.pool("minilm", 1)).capacity is None:
            assert time.monotonic() - done < HEARTBEAT_S / 3, "capacity not reported"
            await asyncio.sleep(0.05)
    finally:
        await redis.aclose()
        await svc.stop()
