"""Uploaded files and jobs made from them, through the real stack: every line validated as it
streams in (a bad line is a 400 naming it, and nothing is kept), files scoped to their tenant,
jobs of a file's lines answered at once and published in the background with the same counts,
results and cancel as inline jobs."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys

import pytest

from tests.e2e.harness import all_results, wait_terminal
from tests.gateway.support import assert_problem, running, services


def jsonl(n: int, start: int = 0) -> bytes:
    """``n`` lines, alternating the two accepted forms."""
    out = []
    for i in range(start, start + n):
        text = f"line {i}: " + "lorem ipsum " * (i % 5)
        out.append(json.dumps({"text": text, "id": f"c{i}"}) if i % 2 else json.dumps(text))
    return ("\n".join(out) + "\n").encode()


async def upload(c, body: bytes):
    return await c.post("/v1/files", content=body,
                        headers={"Content-Type": "application/x-ndjson"})


async def chunk_messages(svc) -> int:
    """Messages JOBS ever accepted (a fresh server per test): duplicates would count."""
    info = await services(svc).nc.jetstream().stream_info("JOBS")
    return info.state.last_seq


def start_gateway(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "inferq.cli", "gateway"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.fixture
def sim(settings):
    return dataclasses.replace(settings, backend="simulated", tokenizer_parallel=False)


async def test_a_file_job_gives_every_line_one_result_in_order(sim) -> None:
    async with running(sim, runners=1, schedulers=1) as svc, svc.client() as c:
        body = jsonl(1200) + b'{"text": "last line, no newline", "id": "end"}'
        r = await upload(c, body)
        assert r.status_code == 201, r.text
        f = r.json()
        assert (f["lines"], f["bytes"]) == (1201, len(body))
        assert r.headers["location"] == f"/v1/files/{f['file_id']}"
        import hashlib
        assert f["sha256"] == hashlib.sha256(body).hexdigest()
        assert (await c.get(f"/v1/files/{f['file_id']}")).json() == f

        r = await c.post("/v1/jobs", json={"model": "minilm", "input_file_id": f["file_id"]})
        assert r.status_code == 202, r.text
        job = r.json()["job_id"]
        assert r.json()["counts"]["total"] == 1201
        doc = await wait_terminal(c, job)
        assert (doc["status"], doc["outcome"]) == ("succeeded", "all_succeeded")
        items = await all_results(c, job)
        assert [i["index"] for i in items] == list(range(1201))
        assert [i.get("id") for i in items[:4]] == [None, "c1", None, "c3"]
        assert items[-1]["id"] == "end"
        lines = (await c.get(f"/v1/jobs/{job}/results.jsonl")).content.splitlines()
        assert len(lines) == 1201
        assert (await services(svc).store.get_job(job)).published
        assert await chunk_messages(svc) == 5  # 1201 items in chunks of 256, never twice


async def test_a_bad_line_is_a_400_naming_it_and_nothing_is_kept(sim) -> None:
    async with running(sim) as svc, svc.client() as c:
        bucket = services(svc).files.bucket
        good = jsonl(3)
        for body, pointer in ((good + b'{"text": 5}\n' + jsonl(2), "line:4/text"),
                              (good + b'{"txt": "x"}\n', "line:4/txt"),
                              (good + b"not json\n", "line:4"),
                              (good + b"\n" + jsonl(1), "line:4"),
                              (jsonl(400_00) + b"[1]\n", "line:40001")):
            r = await upload(c, body)
            err = assert_problem(r, 400, "invalid_request")
            assert err["errors"][0]["pointer"] == pointer, err
            assert f"line {pointer.split(':')[1].split('/')[0]}" in err["detail"]
        state = (await services(svc).nc.jetstream().stream_info(bucket.stream)).state
        assert state.messages == 0  # every chunk of the refused uploads was purged
        r = await upload(c, b"")
        assert_problem(r, 400, "invalid_request")


async def test_limits_are_413s(sim) -> None:
    async with running(sim, max_file_lines=10, max_file_bytes=4096, max_text_chars=60
                       ) as svc, svc.client() as c:
        err = assert_problem(await upload(c, jsonl(11)), 413, "payload_too_large")
        assert err["errors"][0]["pointer"] == "line:11"
        assert_problem(await upload(c, b'"x"\n' * 5 + b'"' + b"y" * 5000 + b'"\n'), 413)
        err = assert_problem(await upload(c, b'"' + b"z" * 61 + b'"\n'), 413)
        assert err["errors"][0]["pointer"] == "line:1/text"
        bucket = services(svc).files.bucket
        await bucket.ensure()  # nothing was ever written: the bucket may not exist yet
        assert (await services(svc).nc.jetstream().stream_info(
            bucket.stream)).state.messages == 0


async def test_files_belong_to_their_tenant_and_can_be_deleted(sim) -> None:
    async with running(sim) as svc, svc.client() as c, svc.client("beta") as other:
        f = (await upload(c, jsonl(5))).json()
        fid = f["file_id"]
        assert_problem(await other.get(f"/v1/files/{fid}"), 404, "file_not_found")
        assert_problem(await other.delete(f"/v1/files/{fid}"), 404, "file_not_found")
        r = await other.post("/v1/jobs", json={"model": "minilm", "input_file_id": fid})
        assert_problem(r, 404, "file_not_found")
        r = await c.post("/v1/jobs", json={"model": "minilm", "input_file_id": fid,
                                           "inputs": [{"text": "x"}]})
        assert_problem(r, 400, "invalid_request")
        assert (await c.delete(f"/v1/files/{fid}")).status_code == 204
        assert_problem(await c.get(f"/v1/files/{fid}"), 404, "file_not_found")
        assert_problem(await c.get("/v1/files/file-nope"), 404, "file_not_found")


async def test_cancelling_a_file_job_while_it_is_queued_stops_its_publishing(sim) -> None:
    async with running(sim) as svc, svc.client() as c:  # no runner: nothing completes
        fid = (await upload(c, jsonl(20_000))).json()["file_id"]
        job = (await c.post("/v1/jobs", json={"model": "minilm", "input_file_id": fid})
               ).json()["job_id"]
        doc = (await c.post(f"/v1/jobs/{job}/cancel")).json()
        assert (doc["status"], doc["error"]["code"]) == ("failed", "cancelled")
        assert doc["counts"]["failed"] == 20_000
        queue = services(svc).filejobs.queue
        for _ in range(100):
            if not await queue.pending(job):
                break
            await asyncio.sleep(0.05)
        assert not await queue.pending(job)
        assert await chunk_messages(svc) < 79  # stopped before the end of the file
        assert (await c.delete(f"/v1/files/{fid}")).status_code == 204


async def test_a_gateway_killed_while_publishing_is_finished_by_another_without_duplicates(
        sim) -> None:
    """A gateway process dies (``os._exit``) right after JetStream acknowledged chunk 20 and
    before its checkpoint; the other gateway takes the job over once the lease runs out,
    republishes chunk 20 (JetStream drops it: same message id) and the rest, once each."""
    import httpx

    from inferq.embedded import free_port
    from tests.e2e.harness import KEYS, role_env

    sim = dataclasses.replace(sim, file_publish_lease_s=2.0, file_publish_poll_s=0.2)
    async with running(sim, runners=1, schedulers=1) as svc, svc.client() as c:
        port = free_port()
        env = role_env(sim, INFERQ_HTTP_PORT=str(port), INFERQ_BACKEND="simulated",
                       INFERQ_FAULTS="gateway.file_mid_publish:0.05", INFERQ_FAULTS_SEED="2",
                       INFERQ_FILE_PUBLISH_LEASE_S="2")
        doomed = start_gateway(env)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30,
                                         headers={"Authorization": f"Bearer {KEYS['alpha']}"}
                                         ) as d:
                for _ in range(200):
                    try:
                        if (await d.get("/healthz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.1)
                fid = (await upload(d, jsonl(20_000))).json()["file_id"]
                r = await d.post("/v1/jobs", json={"model": "minilm", "input_file_id": fid})
                assert r.status_code == 202, r.text
                job = r.json()["job_id"]
            assert await asyncio.to_thread(doomed.wait, 60) == 86, doomed.stderr.read()
            assert b"gateway.file_mid_publish" in doomed.stderr.read()
            doc = await wait_terminal(c, job, within=180)
        finally:
            if doomed.poll() is None:
                doomed.kill()
        assert (doc["status"], doc["counts"]["succeeded"]) == ("succeeded", 20_000)
        assert await chunk_messages(svc) == 79  # 20,000 items / 256: each chunk once
        assert (await services(svc).store.get_job(job)).published
        assert not await services(svc).filejobs.queue.pending(job)
        rows = await services(svc).store.done_indexes(job)
        assert len(rows) == 20_000


@pytest.mark.slow
async def test_a_100000_line_file_job_completes_with_exact_counts(sim, tmp_path) -> None:
    """The issue's size class on the simulated device: 100,000 lines (a 7 MB file), one job,
    every item once, results paged and streamed in index order."""
    from core.tenants import Tenant, hash_key, write_tenants_file
    from tests.e2e.harness import KEYS

    tenants = tmp_path / "big-tenants.toml"
    write_tenants_file(tenants, {"alpha": Tenant(name="alpha", backlog_quota=2_000_000,
                                                 api_key_sha256=[hash_key(KEYS["alpha"])])})
    sim = dataclasses.replace(sim, tenants_file=str(tenants), runner_queue_s=1.0)
    async with running(sim, runners=1, schedulers=1) as svc, svc.client() as c:
        fid = (await upload(c, jsonl(100_000))).json()["file_id"]
        r = await c.post("/v1/jobs", json={"model": "minilm", "input_file_id": fid})
        assert r.status_code == 202, r.text
        job = r.json()["job_id"]
        doc = await wait_terminal(c, job, within=900)
        assert doc["counts"] == {"total": 100_000, "pending": 0, "running": 0,
                                 "succeeded": 100_000, "failed": 0}
        assert await chunk_messages(svc) == 391
        n = 0
        async with c.stream("GET", f"/v1/jobs/{job}/results.jsonl") as resp:
            async for line in resp.aiter_lines():
                if line:
                    assert json.loads(line)["index"] == n
                    n += 1
        assert n == 100_000


async def test_the_same_lines_uploaded_again_replay_the_job_of_their_idempotency_key(
        sim) -> None:
    """A key is bound to the file's content, not its id: ``inferq submit`` run twice uploads
    twice and must get one job; other lines under the same key are a 422."""
    async with running(sim) as svc, svc.client() as c:
        first, second = [(await upload(c, jsonl(30))).json()["file_id"] for _ in range(2)]
        assert first != second
        key = {"Idempotency-Key": "file-key-1"}
        a = await c.post("/v1/jobs", json={"model": "minilm", "input_file_id": first},
                         headers=key)
        b = await c.post("/v1/jobs", json={"model": "minilm", "input_file_id": second},
                         headers=key)
        assert a.status_code == b.status_code == 202, b.text
        assert b.json()["job_id"] == a.json()["job_id"]
        assert b.headers["idempotency-replayed"] == "true"
        other = (await upload(c, jsonl(31))).json()["file_id"]
        r = await c.post("/v1/jobs", json={"model": "minilm", "input_file_id": other},
                         headers=key)
        assert_problem(r, 422, "idempotency_key_reused")


async def test_a_deleted_files_bytes_stay_while_a_job_made_from_it_keeps_results(sim) -> None:
    """DELETE hides a file at once; its bytes are purged unless a job made from it still
    keeps results (its retries read them under the job's name)."""
    async with running(sim, runners=1, schedulers=1) as svc, svc.client() as c:
        gw = services(svc)
        bucket = gw.files.bucket
        unused = (await upload(c, jsonl(10))).json()["file_id"]
        chunks = (await bucket.info(unused)).nuid
        assert (await c.delete(f"/v1/files/{unused}")).status_code == 204
        js = gw.nc.jetstream()
        state = await js.stream_info(bucket.stream, subjects_filter=f"$O.{bucket.bucket}.C.>")
        assert f"$O.{bucket.bucket}.C.{chunks}" not in (state.state.subjects or {})

        used = (await upload(c, jsonl(10))).json()["file_id"]
        job = (await c.post("/v1/jobs", json={"model": "minilm", "input_file_id": used})
               ).json()["job_id"]
        await wait_terminal(c, job)
        assert (await c.delete(f"/v1/files/{used}")).status_code == 204
        assert_problem(await c.get(f"/v1/files/{used}"), 404, "file_not_found")
        r = await c.post("/v1/jobs", json={"model": "minilm", "input_file_id": used})
        assert_problem(r, 404, "file_not_found")
        kept = [raw async for raw in gw.files.lines(f"job-{job}")]
        assert b"\n".join(kept) + b"\n" == jsonl(10)
