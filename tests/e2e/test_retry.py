"""Retrying a terminal job's failed items, through the real stack: ``POST
/v1/jobs/{id}/retry`` makes a new job of exactly the items that failed with ``retryable:
true`` (or every failed one with ``all_failed=true``), read back from the inputs kept at
submit (inline jobs) or from the file (file jobs, even once the file is deleted); the new job
names its parent, and each of its items keeps its id and says its index in the parent.

Items fail retryably here through the runner's fault point (``core.faults``): a batch holding
a "flaky" client id raises in the backend, the runner splits it down to that item, which
fails ``internal_error`` (retryable); the retry runs once the fault is off."""

from __future__ import annotations

import dataclasses
import json

import pytest

from core import faults
from inferq.client import Client
from tests.e2e.harness import KEYS, all_results, wait_terminal
from tests.gateway.support import assert_problem, running, services

FLAKY = {"c3", "c10", "c11", "c37"}


@pytest.fixture
def flaky(monkeypatch):
    """Items whose id is in the returned set fail in the backend while it is non-empty."""
    ids = set(FLAKY)
    real = faults.crash_if_poison

    def fail_flaky(client_ids):
        if ids & set(client_ids):
            raise RuntimeError("injected backend failure")
        real(client_ids)

    monkeypatch.setattr(faults, "crash_if_poison", fail_flaky)
    return ids


@pytest.fixture
def sim(settings):
    return dataclasses.replace(settings, backend="simulated", tokenizer_parallel=False)


def job(n: int) -> dict:
    """``n`` items ``c<i>``; ``c5`` is empty (it fails ``empty_text``: not retryable)."""
    return {"model": "minilm", "metadata": {"run": "r1"}, "inputs": [
        {"text": "" if i == 5 else f"item {i}: " + "lorem ipsum " * (i % 7), "id": f"c{i}"}
        for i in range(n)]}


async def retry(c, job_id: str, **params):
    headers = {"Idempotency-Key": params.pop("key")} if "key" in params else {}
    return await c.post(f"/v1/jobs/{job_id}/retry", params=params, headers=headers)


async def finished_with_failures(c, body: dict) -> str:
    r = await c.post("/v1/jobs", json=body)
    assert r.status_code == 202, r.text
    doc = await wait_terminal(c, r.json()["job_id"])
    assert (doc["status"], doc["outcome"]) == ("succeeded", "partial"), doc
    return doc["job_id"]


async def test_a_retry_runs_exactly_the_items_that_failed_retryably(sim, flaky) -> None:
    async with running(sim, runners=1, schedulers=1) as svc, svc.client() as c:
        parent = await finished_with_failures(c, job(40))
        failed = {i["id"]: i["error"] for i in await all_results(c, parent, "failed")}
        assert {k: (v["code"], v["retryable"]) for k, v in failed.items()} == {
            **{k: ("internal_error", True) for k in FLAKY}, "c5": ("empty_text", False)}
        flaky.clear()  # the backend recovers

        r = await retry(c, parent)
        assert r.status_code == 202, r.text
        doc = r.json()
        assert r.headers["location"] == f"/v1/jobs/{doc['job_id']}"
        assert doc["parent_job_id"] == parent and doc["counts"]["total"] == 4
        done = await wait_terminal(c, doc["job_id"])
        assert (done["status"], done["outcome"], done["parent_job_id"]) == (
            "succeeded", "all_succeeded", parent)
        items = await all_results(c, doc["job_id"])
        expected = sorted(FLAKY, key=lambda x: int(x[1:]))
        assert [i["id"] for i in items] == expected  # each keeps its id ...
        assert [i["index"] for i in items] == [0, 1, 2, 3]  # ... its place in the retry ...
        assert [i["parent_index"] for i in items] == [int(x[1:]) for x in expected]  # parent's
        assert all(len(i["output"]["embedding"]) == 384 for i in items)
        lines = [json.loads(x) for x in
                 (await c.get(f"/v1/jobs/{doc['job_id']}/results.jsonl")).content.splitlines()]
        assert [(x["index"], x["parent_index"], x["id"]) for x in lines] == [
            (i["index"], i["parent_index"], i["id"]) for i in items]
        # The parent is untouched and names no parent; its results carry no parent_index.
        assert (await c.get(f"/v1/jobs/{parent}")).json()["parent_job_id"] is None
        assert all("parent_index" not in i for i in await all_results(c, parent))
        # The retry kept the parent's model version, priority and metadata.
        stored = await services(svc).store.get_job(doc["job_id"])
        first = await services(svc).store.get_job(parent)
        assert (stored.model_version, stored.priority, stored.metadata, stored.parent_job_id
                ) == (first.model_version, first.priority, {"run": "r1"}, parent)

        # all_failed=true: the non-retryable item too (it fails again, as it must).
        r = await retry(c, parent, all_failed="true")
        assert r.status_code == 202, r.text
        done = await wait_terminal(c, r.json()["job_id"])
        items = await all_results(c, done["job_id"])
        assert [(i["parent_index"], i["status"]) for i in items] == [
            (3, "succeeded"), (5, "failed"), (10, "succeeded"), (11, "succeeded"),
            (37, "succeeded")]
        assert items[1]["error"]["code"] == "empty_text"

        # A retry of a retry points at its own parent (index 1 there is parent item 5).
        r = await retry(c, done["job_id"], all_failed="true")
        assert r.status_code == 202, r.text
        again = await wait_terminal(c, r.json()["job_id"])
        assert again["parent_job_id"] == done["job_id"]
        assert [(i["id"], i["parent_index"]) for i in await all_results(c, again["job_id"])
                ] == [("c5", 1)]


async def test_nothing_to_retry_running_jobs_and_other_tenants(sim, flaky) -> None:
    flaky.clear()
    async with running(sim, runners=1, schedulers=1) as svc, svc.client() as c, \
            svc.client("beta") as other:
        parent = await finished_with_failures(c, job(8))  # only c5 fails: not retryable
        err = assert_problem(await retry(c, parent), 409, "nothing_to_retry")
        assert not err["retryable"] and "all_failed" in err["detail"]
        assert (await retry(c, parent, all_failed="true")).status_code == 202
        assert_problem(await retry(other, parent), 404, "job_not_found")
        assert_problem(await retry(c, "0" * 32), 404, "job_not_found")
        ok = (await c.post("/v1/jobs", json={"model": "minilm", "input": {"text": "x"}})).json()
        await wait_terminal(c, ok["job_id"])
        assert_problem(await retry(c, ok["job_id"], all_failed="true"), 409,
                       "nothing_to_retry")
    async with running(sim) as svc, svc.client() as c:  # no runner: the job stays queued
        queued = (await c.post("/v1/jobs", json=job(3))).json()["job_id"]
        err = assert_problem(await retry(c, queued), 409, "job_not_terminal")
        assert err["retryable"]


async def test_an_idempotency_key_replays_the_same_retry(sim, flaky) -> None:
    async with running(sim, runners=1, schedulers=1) as svc, svc.client() as c:
        parent = await finished_with_failures(c, job(12))
        flaky.clear()
        first = await retry(c, parent, key="retry-1")
        assert first.status_code == 202 and "idempotency-replayed" not in first.headers
        again = await retry(c, parent, key="retry-1")
        assert again.status_code == 202, again.text
        assert again.headers["idempotency-replayed"] == "true"
        assert again.json()["job_id"] == first.json()["job_id"]
        # The same key for another retry (another mode) is a reuse.
        assert_problem(await retry(c, parent, key="retry-1", all_failed="true"), 422,
                       "idempotency_key_reused")
        # The Python client: one key per call, resent on its own retries.
        async with Client(svc.url, KEYS["alpha"]) as client:
            a = await client.retry(parent, all_failed=True, idempotency_key="retry-2")
            b = await client.retry(parent, all_failed=True, idempotency_key="retry-2")
            assert a["job_id"] == b["job_id"] and a["parent_job_id"] == parent
            done = await client.wait(a["job_id"])
            assert done["counts"]["total"] == len(FLAKY & {f"c{i}" for i in range(12)}) + 1
        jobs = (await c.get("/v1/jobs")).json()["jobs"]
        assert sum(1 for j in jobs if j["parent_job_id"] == parent) == 2


async def test_a_file_jobs_failed_lines_are_retried_from_the_file_even_once_deleted(
        sim, flaky) -> None:
    lines = [json.dumps({"text": f"line {i}", "id": f"c{i}"}) if i % 2
             else json.dumps(f"bare line {i}") for i in range(40)]
    async with running(sim, runners=1, schedulers=1) as svc, svc.client() as c:
        f = (await c.post("/v1/files", content=("\n".join(lines) + "\n").encode(),
                          headers={"Content-Type": "application/x-ndjson"})).json()
        r = await c.post("/v1/jobs", json={"model": "minilm", "input_file_id": f["file_id"]})
        assert r.status_code == 202, r.text
        parent = r.json()["job_id"]
        doc = await wait_terminal(c, parent)
        assert doc["counts"]["failed"] == 3  # c3, c11, c37 (c10 is a bare string: no id)
        assert (await c.delete(f"/v1/files/{f['file_id']}")).status_code == 204
        assert_problem(await c.get(f"/v1/files/{f['file_id']}"), 404, "file_not_found")
        flaky.clear()

        r = await retry(c, parent)
        assert r.status_code == 202, r.text
        done = await wait_terminal(c, r.json()["job_id"])
        assert (done["outcome"], done["parent_job_id"]) == ("all_succeeded", parent)
        items = await all_results(c, done["job_id"])
        assert [(i["id"], i["parent_index"]) for i in items] == [
            ("c3", 3), ("c11", 11), ("c37", 37)]


async def test_jobs_cut_short_by_their_deadline_are_retried_with_their_ids(sim) -> None:
    """Items a job-level end failed have no row and no id in the parent's results; the retry
    reads them from the kept inputs, ids included."""
    async with running(sim, sweep_interval_s=0.1) as svc, svc.client() as c:
        body = {**job(6), "timeout_s": 4.0}
        parent = (await c.post("/v1/jobs", json=body)).json()["job_id"]
        doc = await wait_terminal(c, parent, within=20)  # no runner: the deadline ends it
        assert (doc["status"], doc["error"]["code"]) == ("failed", "deadline_exceeded")
        assert all("id" not in i for i in await all_results(c, parent))
        await svc.add_scheduler()
        await svc.add_runner()
        r = await retry(c, parent)
        assert r.status_code == 202, r.text
        done = await wait_terminal(c, r.json()["job_id"], within=30)
        items = await all_results(c, done["job_id"])
        assert [(i["id"], i["parent_index"]) for i in items] == [(f"c{i}", i) for i in range(6)]
        assert {i["status"] for i in items if i["id"] != "c5"} == {"succeeded"}


async def test_without_kept_inputs_an_inline_job_cannot_be_retried(sim) -> None:
    async with running(sim, sweep_interval_s=0.1, keep_inputs=False) as svc, svc.client() as c:
        parent = (await c.post("/v1/jobs", json={**job(3), "timeout_s": 0.5})).json()["job_id"]
        await wait_terminal(c, parent, within=20)
        assert_problem(await retry(c, parent), 409, "inputs_not_kept")


async def test_the_openapi_document_describes_the_retry_route(sim) -> None:
    async with running(sim) as svc, svc.client() as c:
        doc = (await c.get("/schema/openapi.json")).json()
    op = doc["paths"]["/v1/jobs/{job_id}/retry"]["post"]
    params = {p["name"]: p for p in op["parameters"]}
    assert params["all_failed"]["in"] == "query" and not params["all_failed"]["required"]
    assert params["Idempotency-Key"]["schema"]["pattern"]
    assert {"202", "404", "409", "422", "429"} <= set(op["responses"])
    for code in ("job_not_terminal", "nothing_to_retry", "inputs_not_kept"):
        assert code in op["responses"]["409"]["description"]
    status = op["responses"]["202"]["content"]["application/json"]["schema"]["$ref"]
    name = status.rsplit("/", 1)[1]
    assert "parent_job_id" in doc["components"]["schemas"][name]["properties"]
    assert "parent_index" in doc["components"]["schemas"]["ResultItem"]["properties"]
    links = doc["paths"]["/v1/jobs"]["post"]["responses"]["202"]["links"]
    assert links["RetryJob"]["operationId"] == op["operationId"]
