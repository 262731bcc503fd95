"""The security checklist, one test each (SECURITY.md names them): tenant isolation on every
route, API keys as peppered HMACs compared as digests and never logged, and an HTTP server
that a slow or bloated client cannot monopolise."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time

import httpx

from core.tenants import Tenant, TenantDirectory, hash_key, hmac_key, write_tenants_file
from tests.e2e.harness import KEYS
from tests.gateway.support import assert_problem, running

JOB = {"model": "minilm", "inputs": [{"text": "mine", "id": "a"}, {"text": "also mine"}]}


async def test_another_tenants_job_is_a_404_on_every_route_and_method(settings) -> None:
    async with running(settings) as svc, svc.client("alpha") as a, svc.client("beta") as b:
        r = await a.post("/v1/jobs", json=JOB)
        job_id, etag = r.json()["job_id"], r.headers["etag"]
        cursor = "WzBd"  # a well-formed results cursor
        for method, path, headers in (
                ("GET", f"/v1/jobs/{job_id}", {}),
                ("GET", f"/v1/jobs/{job_id}", {"If-None-Match": etag}),  # no 304 oracle
                ("GET", f"/v1/jobs/{job_id}/results", {}),
                ("GET", f"/v1/jobs/{job_id}/results?status=failed&cursor={cursor}", {}),
                ("GET", f"/v1/jobs/{job_id}/results.jsonl", {}),
                ("POST", f"/v1/jobs/{job_id}/cancel", {})):
            assert_problem(await b.request(method, path, headers=headers), 404,
                           "job_not_found")
            head = await b.request("HEAD", path, headers=headers) if method == "GET" else None
            assert head is None or head.status_code == 404
        # The answer is the same as for a job that never existed (no existence oracle).
        ghost_id = job_id[:-4] + "beef"
        ghost = (await b.get(f"/v1/jobs/{ghost_id}")).text.replace(ghost_id, "ID")
        mine = (await b.get(f"/v1/jobs/{job_id}")).text.replace(job_id, "ID")
        assert ghost.split('"request_id"')[0] == mine.split('"request_id"')[0]
        assert (await b.get("/v1/jobs")).json()["jobs"] == []
        listed = (await a.get("/v1/jobs")).json()["jobs"]
        assert [j["job_id"] for j in listed] == [job_id]
        assert listed[0]["status"] == "queued"  # beta's cancel changed nothing


async def test_keys_are_peppered_hmacs_and_legacy_sha256_still_loads(tmp_path, caplog) -> None:
    pepper, key = "pepper-0123456789", "iq_secret_key_0123456789"
    path = tmp_path / "tenants.toml"
    write_tenants_file(path, {"acme": Tenant(name="acme", api_key_hmac=[hmac_key(key, pepper)]),
                              "old": Tenant(name="old", api_key_sha256=[hash_key("legacy")])})
    text = path.read_text()
    assert key not in text and hash_key(key) not in text  # neither the key nor its plain hash
    with caplog.at_level(logging.WARNING, "inferq.tenants"):
        tenants = TenantDirectory.load(path, pepper)
    assert "plain SHA-256" in caplog.text
    found = tenants.identify(key)
    assert found is not None and found[0].name == "acme" and key not in found[1]
    assert tenants.authenticate("legacy").name == "old"
    assert tenants.authenticate(key[:-1]) is None
    assert TenantDirectory.load(path, "another-pepper").authenticate(key) is None
    assert TenantDirectory.load(path, None).authenticate(key) is None


async def test_raw_keys_never_reach_logs_or_metrics(settings, tmp_path, caplog) -> None:
    pepper = "test-pepper-not-a-secret"
    path = tmp_path / "hmac-tenants.toml"
    write_tenants_file(path, {name: Tenant(name=name, api_key_hmac=[hmac_key(k, pepper)])
                              for name, k in KEYS.items()})
    wrong = "iq_wrong_key_that_must_not_be_logged"
    caplog.set_level(logging.DEBUG)
    async with running(settings, tenants_file=str(path), api_key_pepper=pepper) as svc:
        async with svc.client("alpha") as c:
            job = (await c.post("/v1/jobs", json=JOB)).json()["job_id"]
            await c.get(f"/v1/jobs/{job}")
            await c.post(f"/v1/jobs/{job}/cancel")
            assert_problem(await c.get("/v1/jobs", headers={"Authorization": f"Bearer {wrong}"}),
                           401, "unauthenticated")
            assert_problem(await c.post("/v1/jobs", content=b"{", headers={
                "content-type": "application/json"}), 400)
            metrics = (await c.get("/metrics")).text
    assert repr(dataclasses.replace(settings, api_key_pepper=pepper)).count(pepper) == 0
    for secret in (*KEYS.values(), wrong, pepper):
        assert secret not in caplog.text, secret
        assert secret not in metrics, secret


async def test_a_slowloris_client_is_cut_off_and_others_are_served(settings) -> None:
    async with running(settings, http_head_timeout_s=1.0) as svc:
        host, port = svc.settings.http_host, svc.settings.http_port
        slow = []
        for _ in range(50):  # each sends a request head one byte at a time
            r, w = await asyncio.open_connection(host, port)
            w.write(b"GET /v1/jobs HTTP/1.1\r\nHost: x\r\n")
            slow.append((r, w))

        async def dribble() -> None:
            for _, w in slow:
                w.write(b"X")

        async with svc.client() as c:
            t0 = time.perf_counter()
            for _ in range(20):  # served at once while the slow heads hang
                assert (await c.get("/v1/jobs")).status_code == 200
                await dribble()
            assert time.perf_counter() - t0 < 5
        await asyncio.sleep(1.5)
        answers = []
        for r, w in slow:
            answers.append(await asyncio.wait_for(r.read(), 5))  # then EOF: closed by us
            w.close()
        assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers), answers[:2]
        assert b'"code":"invalid_request"' in answers[0]


async def test_an_oversized_request_head_is_a_431_problem(settings) -> None:
    async with running(settings, http_max_head_bytes=4096) as svc, svc.client() as c:
        r = await c.get("/v1/jobs", headers={"X-Big": "a" * 5000})
        body = r.json()
        assert r.status_code == 431 and body["code"] == "payload_too_large", r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert (await c.get("/v1/jobs", headers={"X-Ok": "a" * 1000})).status_code == 200
        # The limit holds however the head is split: a 2 MiB header is refused early.
        with httpx.Client(base_url=svc.url, timeout=10) as sync:
            r = await asyncio.to_thread(sync.get, "/healthz", headers={"X-Big": "b" * 2**21})
        assert r.status_code == 431
