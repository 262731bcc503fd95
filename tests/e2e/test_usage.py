"""``GET /v1/usage`` through the real stack: a job's items, tokens, inference time and end are
counted once when results are written (a replayed write-back adds nothing), a cancelled job
counts as failed, each tenant sees only its own usage, and bad ranges are a 400 with a
pointer."""

from __future__ import annotations

import datetime as dt
import time

from gpu_runner.writeback import WriteBack
from inferq.client import Client
from schemas.api import EmbeddingOutput
from schemas.states import ItemStatus
from store.results.base import ItemRecord
from store.results.codec import encode_output
from store.usage import ItemUsage
from tests.e2e.harness import KEYS, all_results, wait_terminal
from tests.gateway.support import assert_problem, running, services

ZERO = {"jobs": {"succeeded": 0, "failed": 0}, "items": {"succeeded": 0, "failed": 0},
        "input_tokens": 0, "inference_seconds": 0.0}


def today(offset_days: int = 0) -> str:
    return (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=offset_days)).isoformat()


def counts(row: dict) -> dict:
    """A row's counts without its name (day or model)."""
    return {k: v for k, v in row.items() if k not in ("day", "model")}


async def test_a_job_is_counted_by_day_and_by_model_for_its_tenant_only(service) -> None:
    texts = ["the quick brown fox", "", "jumps over the lazy dog " * 5, "hello", "world"]
    async with service.client() as c, service.client("beta") as other:
        job_id = (await c.post("/v1/jobs", json={
            "model": "minilm", "inputs": [{"text": t} for t in texts]})).json()["job_id"]
        doc = await wait_terminal(c, job_id)
        assert (doc["status"], doc["outcome"]) == ("succeeded", "partial")  # "" fails alone
        ok = await all_results(c, job_id, status="succeeded")
        tokens = sum(item["output"]["num_tokens"] for item in ok)

        r = await c.get("/v1/usage")
        assert r.status_code == 200, r.text
        by_day = r.json()
        assert (by_day["tenant"], by_day["group_by"]) == ("alpha", "day")
        assert (by_day["start"], by_day["end"]) == (today(-6), today())
        assert [row["day"] for row in by_day["data"]] == [today(n) for n in range(-6, 1)]
        assert all(counts(row) == ZERO for row in by_day["data"][:-1])
        mine = counts(by_day["data"][-1])
        assert mine["jobs"] == {"succeeded": 1, "failed": 0}
        assert mine["items"] == {"succeeded": 4, "failed": 1}
        assert mine["input_tokens"] == tokens > 4
        assert mine["inference_seconds"] > 0
        assert by_day["totals"] == mine

        by_model = (await c.get("/v1/usage", params={"group_by": "model", "start": today(),
                                                     "end": today() + "T23:59:59Z"})).json()
        assert [row["model"] for row in by_model["data"]] == ["minilm"]
        assert counts(by_model["data"][0]) == mine == by_model["totals"]

        theirs = (await other.get("/v1/usage", params={"group_by": "model"})).json()
        assert (theirs["tenant"], theirs["data"], theirs["totals"]) == ("beta", [], ZERO)

    async with Client(service.url, KEYS["alpha"]) as client:
        assert await client.usage(group_by="model") == {**by_model, "start": today(-6)}
        assert (await client.usage(start=today(-1), end=today()))["totals"] == mine


async def test_a_replayed_write_back_is_counted_once(settings) -> None:
    """The runner's write-back, called again with the same items (a redelivered batch), adds
    nothing to usage, mid-job or after the job ended."""
    async with running(settings) as svc, svc.client() as c:
        job_id = (await c.post("/v1/jobs", json={"model": "minilm", "inputs": [
            {"text": t} for t in ("a", "b", "c")]})).json()["job_id"]
        gw = services(svc)
        write_back = WriteBack(gw.store, gw.cache, "minilm", gw.redis)
        rows = [ItemRecord(job_id=job_id, index=i, status=ItemStatus.SUCCEEDED, model_version=1,
                           output=encode_output(EmbeddingOutput([0.6, 0.8], 3)),
                           finished_at=time.time()) for i in range(3)]
        cost = {(job_id, i): ItemUsage(input_tokens=3, inference_us=250_000) for i in range(3)}
        for _ in range(2):  # the batch of items 0 and 1, delivered twice
            await write_back.commit(rows[:2], time.time(), cost)
        await write_back.commit(rows[1:], time.time(), cost)  # overlaps: only item 2 is new
        await write_back.commit(rows, time.time(), cost)  # after the job ended
        assert (await wait_terminal(c, job_id))["counts"]["succeeded"] == 3
        totals = (await c.get("/v1/usage")).json()["totals"]
        assert totals == {"jobs": {"succeeded": 1, "failed": 0},
                          "items": {"succeeded": 3, "failed": 0},
                          "input_tokens": 9, "inference_seconds": 0.75}


async def test_a_cancelled_job_counts_as_one_failed_job_with_its_items_failed(settings) -> None:
    async with running(settings) as svc, svc.client() as c:
        job_id = (await c.post("/v1/jobs", json={"model": "minilm", "inputs": [
            {"text": f"item {i}"} for i in range(10)]})).json()["job_id"]
        for _ in range(2):  # a second cancel changes nothing
            assert (await c.post(f"/v1/jobs/{job_id}/cancel")).status_code == 200
        usage = (await c.get("/v1/usage", params={"group_by": "model"})).json()
        assert usage["data"] == [{"model": "minilm", "jobs": {"succeeded": 0, "failed": 1},
                                  "items": {"succeeded": 0, "failed": 10},
                                  "input_tokens": 0, "inference_seconds": 0.0}]


async def test_bad_parameters_are_a_400_pointing_at_the_parameter(settings) -> None:
    async with running(settings) as svc, svc.client() as c:
        cases = [
            ({"start": "yesterday"}, "query:start"),
            ({"start": "2024-02-30"}, "query:start"),
            ({"end": "2024-05-01T12:00:00"}, "query:end"),  # a date-time needs its offset
            ({"start": today(), "end": today(-1)}, "query:end"),
            ({"start": today(-8), "end": today()}, "query:start"),  # retention 7 d: 8 days
            ({"group_by": "week"}, "query:group_by"),
        ]
        for params, pointer in cases:
            body = assert_problem(await c.get("/v1/usage", params=params), 400,
                                  "invalid_request")
            assert [e["pointer"] for e in body["errors"]] == [pointer], (params, body)
        longest = await c.get("/v1/usage", params={"start": today(-7)})
        assert longest.status_code == 200 and len(longest.json()["data"]) == 8
        assert_problem(await c.get("/v1/usage", headers={"Authorization": "Bearer nope"}), 401)
        schema = (await c.get("/schema/openapi.json")).json()
        params = schema["paths"]["/v1/usage"]["get"]["parameters"]
        assert {p["name"] for p in params} >= {"start", "end", "group_by"}
