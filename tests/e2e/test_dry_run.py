"""``POST /v1/jobs?dry_run=true`` through the real stack: validated like a submit, tokenized
by the model's tokenizer, estimated from the runners' measured speed; nothing created, only
the request rate limit spent."""

from __future__ import annotations

import asyncio
import dataclasses
import json

from inferq.client import Client
from tests.e2e.harness import KEYS, Service, wait_terminal
from tests.gateway.support import assert_problem, services, tenants_with


async def test_dry_run_reports_tokens_and_creates_nothing(settings, tmp_path) -> None:
    # items_per_min of 10: a real 150-item submit is refused, a dry run is not charged items
    tenants = tenants_with(tmp_path / "t.toml", alpha={"items_per_min": 10.0,
                                                       "requests_per_s": 1.0})
    svc = Service(dataclasses.replace(settings, tenants_file=tenants, backend="simulated",
                                      load_refresh_s=0.2))
    await svc.start()
    try:
        texts = [f"text number {i}" for i in range(150)]
        texts[3] = "   "                     # empty_text
        texts[5] = "word " * 1000            # truncated at 256 tokens
        body = {"model": "minilm", "inputs": [{"text": t, "id": f"c{i}"}
                                              for i, t in enumerate(texts)]}
        async with svc.client() as c:
            r = await c.post("/v1/jobs", params={"dry_run": "true"}, json=body)
            assert r.status_code == 200, r.text
            rep = r.json()
            assert "ratelimit-remaining" in r.headers
            assert rep["dry_run"] is True and rep["model"] == "minilm"
            assert rep["model_version"] == 1 and rep["priority"] == "batch"
            assert rep["items"] == 150 and rep["items_valid"] == 149
            assert rep["items_truncated"] == 1 and rep["max_seq_len"] == 256
            first = rep["first_items"]
            assert len(first) == 100 and [x["index"] for x in first] == list(range(100))
            assert first[0] == {"index": 0, "tokens": 5, "id": "c0"}  # [CLS] text number 0 [SEP]
            assert first[3]["error"]["code"] == "empty_text" and first[3]["tokens"] == 0
            assert first[5] == {"index": 5, "tokens": 256, "truncated": True, "id": "c5"}
            assert rep["tokens"] == sum(x["tokens"] for x in first) + sum(
                len(f"text number {i}".split()) + 2 for i in range(100, 150))
            assert rep["padded_tokens"] >= rep["tokens"]
            # Nothing was created: no job listed, no backlog.
            assert (await c.get("/v1/jobs")).json()["jobs"] == []
            assert (await services(svc).cache.backlog()).tenants.get("alpha", 0) == 0
            # Only the request bucket was charged (1/s, a burst of 2): the third is 429.
            assert (await c.post("/v1/jobs", params={"dry_run": "true"},
                                 json=body)).status_code == 200
            assert_problem(await c.post("/v1/jobs", params={"dry_run": "true"}, json=body),
                           429, "rate_limited")
            await asyncio.sleep(1.1)
            # ...where a real submit of the same items could never be admitted
            assert_problem(await c.post("/v1/jobs", json=body), 413, "payload_too_large")
            await asyncio.sleep(2.1)
            # An invalid request is the same 400 a real submit gets.
            bad = await c.post("/v1/jobs", params={"dry_run": "true"},
                               json={"model": "nope", "input": {"text": "x"}})
            assert_problem(bad, 400, "model_not_found")
            await asyncio.sleep(1.1)
            # Once the runner has measured its speed, the estimates are filled in.
            job = (await c.post("/v1/jobs", json={"model": "minilm", "input": {
                "text": "warm up"}})).json()["job_id"]
            await wait_terminal(c, job)
            for _ in range(100):
                await asyncio.sleep(1.1)
                rep = (await c.post("/v1/jobs", params={"dry_run": "true"},
                                    json={"model": "minilm", "input": {"text": "x"}})).json()
                if rep["estimated_completion_at"] is not None:
                    break
            assert rep["estimated_completion_at"].endswith("Z")
            async with Client(svc.url, KEYS["alpha"]) as client:  # the Python client's form
                rep = await client.submit(["x", "y"], model="minilm", dry_run=True)
            assert rep["dry_run"] is True and rep["items"] == 2
            assert rep["estimated_inference_s"] is not None and rep["estimated_inference_s"] >= 0
    finally:
        await svc.stop()


async def test_a_dry_run_of_a_file_job_tokenizes_every_line_and_creates_nothing(
        settings) -> None:
    svc = Service(dataclasses.replace(settings, backend="simulated"))
    await svc.start()
    try:
        lines = [json.dumps({"text": f"line number {i}", "id": f"l{i}"}) for i in range(2500)]
        lines[7] = json.dumps("   ")  # empty_text, found by the dry run as by the scheduler
        async with svc.client() as c:
            f = (await c.post("/v1/files", content=("\n".join(lines) + "\n").encode(),
                              headers={"Content-Type": "application/x-ndjson"})).json()
            r = await c.post("/v1/jobs", params={"dry_run": "true"},
                             json={"model": "minilm", "input_file_id": f["file_id"]})
            assert r.status_code == 200, r.text
            rep = r.json()
            assert (rep["items"], rep["items_valid"]) == (2500, 2499)  # past one tokenizer batch
            assert rep["first_items"][1] == {"index": 1, "tokens": 5, "id": "l1"}
            assert rep["first_items"][7]["error"]["code"] == "empty_text"
            assert (await c.get("/v1/jobs")).json()["jobs"] == []
            missing = await c.post("/v1/jobs", params={"dry_run": "true"},
                                   json={"model": "minilm", "input_file_id": "file-" + "0" * 32})
            assert_problem(missing, 404, "file_not_found")
    finally:
        await svc.stop()
