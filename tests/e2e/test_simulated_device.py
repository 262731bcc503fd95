"""On the simulated accelerator at full speed, with several batches in flight and two
runners sharing the work, every item's output is its own: derived from its own tokens."""

from __future__ import annotations

import dataclasses

import numpy as np

from gpu_runner.backends.simulated import token_vectors
from models.bucketing import pad_batch
from models.repository import ModelRepository
from models.tokenize import TextTokenizer
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
