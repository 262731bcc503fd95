"""A terminal job's results.jsonl is a fixed artifact: its length, ETag and Repr-Digest (RFC
9530) are known before the first byte, a Range is a 206 of exactly those bytes, the manifest
agrees, and the client resumes an interrupted download and checks the digest."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from pathlib import Path

import pytest

from inferq.client import Client, InferqError
from tests.e2e.harness import KEYS, wait_terminal
from tests.gateway.support import assert_problem, running


def job(n: int) -> dict:
    return {"model": "minilm", "inputs": [{"text": f"item {i} " * (1 + i % 4), "id": f"i{i}"}
                                          for i in range(n)] + [{"text": ""}]}


def leave_part(dest: Path, data: bytes, etag: str) -> None:
    """What an interrupted ``download_results`` leaves behind."""
    Path(f"{dest}.part").write_bytes(data)
    Path(f"{dest}.part.etag").write_text(etag)


def part_exists(dest: Path) -> bool:
    return Path(f"{dest}.part").exists()


async def test_a_terminal_artifact_is_byte_stable_ranged_and_digested(settings,
                                                                      tmp_path: Path) -> None:
    sim = dataclasses.replace(settings, backend="simulated")
    async with running(sim, runners=1, schedulers=1) as svc, svc.client() as c:
        job_id = (await c.post("/v1/jobs", json=job(300))).json()["job_id"]
        await wait_terminal(c, job_id)
        full = await c.get(f"/v1/jobs/{job_id}/results.jsonl")
        body = full.content
        assert full.status_code == 200
        sha = hashlib.sha256(body)
        assert full.headers["content-length"] == str(len(body))
        assert full.headers["repr-digest"] == f"sha-256=:{base64.b64encode(sha.digest()).decode()}:"
        assert full.headers["accept-ranges"] == "bytes"
        etag = full.headers["etag"]
        assert (await c.get(f"/v1/jobs/{job_id}/results.jsonl")).content == body  # stable
        m = (await c.get(f"/v1/jobs/{job_id}/results/manifest")).json()
        assert m == {"lines": 301, "bytes": len(body), "sha256": sha.hexdigest(),
                     "succeeded": 300, "failed": 1}

        for rng, want in ((f"bytes=100-{len(body) + 50}", body[100:]),
                          ("bytes=1000-1999", body[1000:2000]), ("bytes=-77", body[-77:])):
            r = await c.get(f"/v1/jobs/{job_id}/results.jsonl", headers={"Range": rng})
            assert r.status_code == 206, rng
            assert r.content == want
            assert r.headers["content-length"] == str(len(want))
            start = len(body) - len(want) if rng.startswith("bytes=-") else int(
                rng[6:].split("-")[0])
            assert r.headers["content-range"] == (
                f"bytes {start}-{start + len(want) - 1}/{len(body)}")
        r = await c.get(f"/v1/jobs/{job_id}/results.jsonl",
                        headers={"Range": "bytes=10-", "If-Range": '"another"'})
        assert r.status_code == 200 and r.content == body  # a stale partial: the whole thing
        r = await c.get(f"/v1/jobs/{job_id}/results.jsonl",
                        headers={"Range": f"bytes={len(body)}-"})
        assert_problem(r, 416)
        assert r.headers["content-range"] == f"bytes */{len(body)}"
        r = await c.get(f"/v1/jobs/{job_id}/results.jsonl", headers={"If-None-Match": etag})
        assert r.status_code == 304

        async with Client(svc.url, KEYS["alpha"]) as client:
            dest = tmp_path / "results.jsonl"
            leave_part(dest, body[:5000], etag)  # an interrupted download
            before = client.attempts
            got = await client.download_results(job_id, dest)
            assert got == m and dest.read_bytes() == body
            assert client.attempts - before == 2  # the manifest, then one ranged request
            assert not part_exists(dest)
            corrupt = tmp_path / "bad.jsonl"
            leave_part(corrupt, b"X" * 5000, etag)  # a corrupt partial copy
            with pytest.raises(InferqError) as err:
                await client.download_results(job_id, corrupt)
            assert err.value.code == "digest_mismatch"
            assert not part_exists(corrupt)  # the next try starts afresh
            assert (await client.download_results(job_id, corrupt)) == m
            assert corrupt.read_bytes() == body


async def test_a_running_job_has_no_manifest_yet(settings) -> None:
    async with running(settings) as svc, svc.client() as c:  # no runner: it stays queued
        job_id = (await c.post("/v1/jobs", json=job(3))).json()["job_id"]
        assert_problem(await c.get(f"/v1/jobs/{job_id}/results/manifest"), 409,
                       "job_not_terminal")
        r = await c.get(f"/v1/jobs/{job_id}/results.jsonl")
        assert r.status_code == 200 and "repr-digest" not in r.headers
