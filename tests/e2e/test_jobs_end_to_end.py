"""A job goes from 202 to terminal through the real topology, with exact counts."""

from __future__ import annotations

import numpy as np

from tests.e2e.harness import all_results, wait_terminal


async def test_a_one_item_job_succeeds_with_its_embedding(service, golden_items) -> None:
    ref = golden_items[3]
    async with service.client() as c:
        r = await c.post("/v1/jobs", json={"model": "minilm",
                                           "input": {"text": ref["text"], "id": "only"}})
        assert r.status_code == 202, r.text
        doc = r.json()
        assert r.headers["location"] == f"/v1/jobs/{doc['job_id']}"
        assert doc["status"] == "queued" and doc["counts"]["total"] == 1
        assert doc["model"] == "minilm" and doc["model_version"] == 1
        done = await wait_terminal(c, doc["job_id"])
        assert done["status"] == "succeeded" and done["outcome"] == "all_succeeded"
        assert done["counts"] == {"total": 1, "pending": 0, "running": 0, "succeeded": 1,
                                  "failed": 0}
        [item] = await all_results(c, doc["job_id"])
        assert item["id"] == "only" and item["index"] == 0 and item["model_version"] == 1
        got = np.array(item["output"]["embedding"], dtype=np.float32)
        assert float(got @ np.array(ref["embedding"], dtype=np.float32)) >= 0.9999
        assert item["output"]["num_tokens"] == ref["num_tokens"]


async def test_a_1000_item_job_counts_exactly_and_returns_results_in_order(service,
                                                                           golden_items) -> None:
    texts = [golden_items[i % len(golden_items)]["text"] for i in range(1000)]
    async with service.client() as c:
        r = await c.post("/v1/jobs", json={"model": "minilm", "inputs": [
            {"text": t, "id": f"c{i}"} for i, t in enumerate(texts)]})
        assert r.status_code == 202, r.text
        job = r.json()["job_id"]
        done = await wait_terminal(c, job, within=300)
        assert done["status"] == "succeeded" and done["outcome"] == "all_succeeded"
        assert done["counts"]["succeeded"] == 1000 and done["counts"]["failed"] == 0
        items = await all_results(c, job, limit=333)
        assert [i["index"] for i in items] == list(range(1000))
        assert [i["id"] for i in items] == [f"c{i}" for i in range(1000)]
        for it in items[:80]:
            ref = golden_items[it["index"] % len(golden_items)]
            got = np.array(it["output"]["embedding"], dtype=np.float32)
            assert float(got @ np.array(ref["embedding"], dtype=np.float32)) >= 0.9999
        r = await c.get(f"/v1/jobs/{job}/results.jsonl")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("application/x-ndjson")
        lines = r.content.splitlines()
        assert len(lines) == 1000


async def test_a_mixed_job_is_partial_and_lists_exactly_its_failed_items(service) -> None:
    inputs = [{"text": "a good sentence", "id": "ok0"}, {"text": "", "id": "empty"},
              {"text": "another good one", "id": "ok1"}, {"text": "   \t\n ", "id": "blank"}]
    async with service.client() as c:
        job = (await c.post("/v1/jobs", json={"model": "minilm", "inputs": inputs})).json()
        done = await wait_terminal(c, job["job_id"])
        assert done["status"] == "succeeded" and done["outcome"] == "partial"
        assert done["counts"]["succeeded"] == 2 and done["counts"]["failed"] == 2
        failed = await all_results(c, job["job_id"], status="failed")
        assert [(f["index"], f["id"], f["error"]["code"]) for f in failed] == [
            (1, "empty", "empty_text"), (3, "blank", "empty_text")]
        assert all(f["error"]["retryable"] is False for f in failed)


async def test_a_job_whose_items_all_fail_is_failed_all_failed(service) -> None:
    async with service.client() as c:
        job = (await c.post("/v1/jobs", json={"model": "minilm",
                                              "inputs": [{"text": ""}, {"text": " "}]})).json()
        done = await wait_terminal(c, job["job_id"])
        assert done["status"] == "failed" and done["outcome"] == "all_failed"
        assert done["counts"]["failed"] == 2


async def test_another_tenants_job_is_a_404(service) -> None:
    async with service.client("alpha") as a, service.client("beta") as b:
        job = (await a.post("/v1/jobs", json={"model": "minilm",
                                              "input": {"text": "mine"}})).json()["job_id"]
        for path in (f"/v1/jobs/{job}", f"/v1/jobs/{job}/results",
                     f"/v1/jobs/{job}/results.jsonl"):
            r = await b.get(path)
            assert r.status_code == 404, path
            assert r.json()["code"] == "job_not_found"
