"""Each role's NATS user may do what its role does and nothing else, on a real nats-server
configured as ``inferq dev`` configures it (inferq/nats_users.py); and the whole flow runs
with each role as its own user, the server refusing nothing."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import textwrap
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS
from nats.js import api as jsapi

from core import bus
from core.config import Settings
from inferq.embedded import ServerProcess, free_port, nats_server, nats_server_binary
from inferq.nats_users import ADMIN, ROLES, NatsUsers, permissions
from schemas import subjects
from tests.e2e.harness import NATS_USERS, Service, wait_terminal
from tests.secure import make_pki

NOMAD_NATS = Path(__file__).resolve().parents[2] / "deploy" / "nomad" / "nats.nomad.hcl"
RUNNERS = subjects.runner_consumer("minilm", 1)


@pytest.fixture
def nats_users() -> NatsUsers:
    return NatsUsers.generate()


@pytest.fixture
def nats_proc(tmp_path: Path, nats_users: NatsUsers) -> Iterator[ServerProcess]:
    """This module's server has inferq dev's users (overrides tests/conftest.py's)."""
    proc = nats_server(tmp_path / "nats", log_path=tmp_path / "nats.log",
                       users=nats_users).start()
    NATS_USERS[url := f"nats://{proc.host}:{proc.port}"] = nats_users
    yield proc
    NATS_USERS.pop(url, None)
    proc.stop()


@pytest.fixture
async def connect(nats_url: str, nats_users: NatsUsers) -> AsyncIterator:
    """``await connect(role)``: a connection as that role's user; streams provisioned."""
    base = Settings(nats_url=nats_url)
    await bus.provision(nats_users.settings(base, ADMIN))
    opened: list[NATS] = []

    async def as_role(role: str) -> NATS:
        nc = await bus.connect_role(nats_users.settings(base, role), role)
        opened.append(nc)
        return nc

    yield as_role
    for nc in opened:
        await nc.close()


async def refusals(nc: NATS, count: int) -> list[str]:
    """The server's refusals on this connection once ``count`` have arrived (an -ERR may come
    just after the PONG that ends a flush; 5 s at most). For ``count=0``, after 0.5 s more
    of quiet: nothing late was refused either."""
    await nc.flush()
    for _ in range(250 if count else 25):  # 20 ms each
        if len(bus.denials(nc)) >= max(count, 1):
            break
        await asyncio.sleep(0.02)
    return bus.denials(nc)


async def pending(admin: NATS, stream: str) -> int:
    return (await admin.jetstream().stream_info(stream)).state.messages


async def test_the_gateway_cannot_publish_or_read_batches(connect) -> None:
    admin, gateway = await connect(ADMIN), await connect("gateway")
    batch = subjects.batch_subject("minilm", 1)

    await gateway.publish(batch, b"forged batch")
    assert await refusals(gateway, 1) == [f'nats: permissions violation for publish to "{batch}"']
    with pytest.raises(asyncio.TimeoutError):  # no PubAck: the server dropped it
        await gateway.jetstream().publish(batch, b"forged batch", timeout=0.5)
    assert await pending(admin, subjects.BATCHES_STREAM) == 0

    await gateway.subscribe(f"{subjects.BATCHES_PREFIX}.>")
    await gateway.subscribe("_INBOX.runner.>")  # where pulled batches reach runners
    assert (await refusals(gateway, 4))[-2:] == [
        'nats: permissions violation for subscription to "inferq.batches.>"',
        'nats: permissions violation for subscription to "_inbox.runner.>"']

    # A real batch waits on the runners' consumer: the gateway's pull is refused...
    await admin.jetstream().add_consumer(subjects.BATCHES_STREAM, jsapi.ConsumerConfig(
        durable_name=RUNNERS, filter_subject=batch, ack_policy=jsapi.AckPolicy.EXPLICIT))
    await admin.jetstream().publish(batch, b"real batch")
    stolen = await gateway.jetstream().pull_subscribe_bind(RUNNERS, subjects.BATCHES_STREAM)
    with pytest.raises(asyncio.TimeoutError):
        await stolen.fetch(1, timeout=0.5)
    assert (f'nats: permissions violation for publish to '
            f'"$js.api.consumer.msg.next.batches.{RUNNERS.lower()}"') in await refusals(gateway, 5)
    # ...and a runner's is not: it gets the batch the gateway could not take.
    runner = await connect("runner")
    sub = await runner.jetstream().pull_subscribe_bind(RUNNERS, subjects.BATCHES_STREAM)
    [msg] = await sub.fetch(1, timeout=5)
    assert msg.data == b"real batch"
    await msg.ack_sync()
    assert await refusals(runner, 0) == []


async def test_a_runner_cannot_publish_jobs_or_batches_but_dead_letters(connect) -> None:
    admin, runner = await connect(ADMIN), await connect("runner")
    job = subjects.job_subject("minilm", "interactive", "alpha")
    for subject in (job, subjects.batch_subject("minilm", 1)):
        with pytest.raises(asyncio.TimeoutError):
            await runner.jetstream().publish(subject, b"forged", timeout=0.5)
    assert await refusals(runner, 2) == [
        f'nats: permissions violation for publish to "{job}"',
        'nats: permissions violation for publish to "inferq.batches.minilm.1"']
    assert await pending(admin, subjects.JOBS_STREAM) == 0
    assert await pending(admin, subjects.BATCHES_STREAM) == 0

    ack = await runner.jetstream().publish(subjects.dlq_subject("minilm", 1), b"dead letter")
    assert ack.stream == subjects.DLQ_STREAM and await refusals(runner, 2) == [
        f'nats: permissions violation for publish to "{job}"',
        'nats: permissions violation for publish to "inferq.batches.minilm.1"']


async def test_the_scheduler_cannot_publish_jobs_nor_take_batches(connect) -> None:
    admin, scheduler = await connect(ADMIN), await connect("scheduler")
    with pytest.raises(asyncio.TimeoutError):
        await scheduler.jetstream().publish(subjects.job_subject("m", "batch", "t"), b"x",
                                            timeout=0.5)
    await scheduler.subscribe("_INBOX.gateway.>")
    assert await refusals(scheduler, 2) == [
        'nats: permissions violation for publish to "inferq.jobs.m.batch.t"',
        'nats: permissions violation for subscription to "_inbox.gateway.>"']
    assert await pending(admin, subjects.JOBS_STREAM) == 0


@pytest.mark.parametrize("role", ROLES)
async def test_no_role_may_delete_purge_or_reconfigure_the_streams(connect, role) -> None:
    admin, nc = await connect(ADMIN), await connect(role)
    await admin.jetstream().publish(subjects.dlq_subject("minilm", 1), b"evidence")
    for op in ("DELETE", "PURGE"):
        with pytest.raises(asyncio.TimeoutError):
            await nc.request(f"$JS.API.STREAM.{op}.{subjects.DLQ_STREAM}", b"", timeout=0.5)
    js = nc.jetstream(timeout=0.5)
    with pytest.raises(asyncio.TimeoutError):
        await js.update_stream(jsapi.StreamConfig(name=subjects.DLQ_STREAM,
                                                  subjects=["inferq.dlq.>"], max_age=1.0))
    assert [r.split('"')[1] for r in await refusals(nc, 3)] == [
        "$js.api.stream.delete.dlq", "$js.api.stream.purge.dlq", "$js.api.stream.update.dlq"]
    info = await admin.jetstream().stream_info(subjects.DLQ_STREAM)
    assert info.state.messages == 1 and info.config.max_age > 1.0


async def test_a_role_finds_streams_an_admin_provisioned_but_cannot_create_them(
        nats_url: str, nats_users: NatsUsers) -> None:
    nc = await bus.connect_role(nats_users.settings(Settings(nats_url=nats_url), "runner"),
                                "runner")
    try:
        with pytest.raises(bus.BusError, match="inferq bus provision"):
            await bus.provision_streams(nc.jetstream())
        await bus.provision(nats_users.settings(Settings(nats_url=nats_url), ADMIN))
        await bus.provision_streams(nc.jetstream())  # all in place: no request it may not make
        assert bus.denials(nc) == [
            'nats: permissions violation for publish to "$js.api.stream.create.jobs"']
    finally:
        await nc.close()


async def test_a_wrong_password_fails_the_start_up_at_once(nats_url: str) -> None:
    wrong = Settings(nats_url=nats_url, nats_user="gateway", nats_password="not-it")
    with pytest.raises(bus.BusUnavailable, match="Authorization Violation"):
        await asyncio.wait_for(bus.connect_role(wrong, "gateway"), timeout=10)
    in_url = Settings(nats_url=nats_url.replace("://", "://gateway:guessed-secret@"))
    with pytest.raises(bus.BusUnavailable, match="Authorization Violation") as refused:
        await asyncio.wait_for(bus.connect_role(in_url, "gateway"), timeout=10)
    assert "guessed-secret" not in str(refused.value)  # the message names no credential


async def test_the_whole_flow_runs_with_each_role_as_its_own_user(settings, tmp_path,
                                                                   golden_items) -> None:
    svc = await Service(settings).start()
    try:
        assert {r.settings.nats_user for r in (svc.gateway, *svc.schedulers, *svc.runners)
                } == set(ROLES)
        async with svc.client() as c:
            r = await c.post("/v1/jobs", json={"model": "minilm", "inputs": [
                {"text": it["text"]} for it in golden_items[:20]]})
            assert r.status_code == 202, r.text
            done = await wait_terminal(c, r.json()["job_id"])
            assert done["status"] == "succeeded" and done["counts"]["succeeded"] == 20
            up = await c.post("/v1/files", content=b'{"text": "from a file"}\n',
                              headers={"Content-Type": "application/x-ndjson"})
            assert up.status_code == 201, up.text
            r = await c.post("/v1/jobs", json={"model": "minilm",
                                               "input_file_id": up.json()["file_id"]})
            assert r.status_code == 202, r.text
            done = await wait_terminal(c, r.json()["job_id"])
            assert done["status"] == "succeeded", done
    finally:
        await svc.stop()
    violations = [line for line in (tmp_path / "nats.log").read_text().splitlines()
                  if "Violation" in line]
    assert violations == []


def test_the_nomad_config_grants_each_role_what_the_dev_config_grants() -> None:
    text = NOMAD_NATS.read_text()
    for role in ROLES:
        block = re.search(r'user: "' + role + r'".*?publish: \{allow: \[(.*?)\]\}.*?'
                          r'subscribe: \{allow: \[(.*?)\]\}', text, re.S)
        assert block is not None, f"no user {role} with permissions in {NOMAD_NATS.name}"
        pub, sub = (re.findall(r'"([^"]+)"', part) for part in block.groups())
        assert (pub, sub) == permissions(role), role
    assert re.search(r'user: "admin"', text)


def render_nomad_nats_conf(folder: Path, *, tls: bool, route_to: int = 6222,
                           ports: tuple[int, int, int] = (4222, 8222, 6222),
                           passwords: dict[str, str] | None = None) -> str:
    """nats.conf as the Nomad template of nats.nomad.hcl renders it, with test values for the
    Nomad variables (``pw-<item>`` unless ``passwords`` says), the job's variables, the host
    paths, and loopback ``ports`` (client, monitor, cluster) with one route to ``route_to``."""
    text = NOMAD_NATS.read_text()
    body = text.split('destination   = "secrets/nats.conf"', 1)[1]
    body = textwrap.dedent(body.split("<<-EOT\n", 1)[1].split("\n        EOT", 1)[0])
    body = re.sub(r"%\{ if var\.nats_tls \}(.*?)%\{ endif \}",
                  lambda m: m.group(1) if tls else "", body, flags=re.S)
    client, monitor, cluster = ports
    body = (body.replace("${var.nats_max_file_store}", "1GB")
            .replace("${local.routes}", f'"nats-route://route:{{{{ .nats_route_password }}}}'
                                        f'@127.0.0.1:{route_to}"')
            .replace('"0.0.0.0:4222"', f'"127.0.0.1:{client}"')
            .replace('"0.0.0.0:8222"', f'"127.0.0.1:{monitor}"')
            .replace('"0.0.0.0:6222"', f'"127.0.0.1:{cluster}"')
            .replace('{{ with nomadVar "inferq/secrets" -}}', "").replace("{{- end }}", "")
            .replace('{{ env "node.unique.name" }}', folder.name)
            .replace("/secrets/", f"{folder}/").replace("/data/jetstream", f"{folder}/js"))
    body = re.sub(r"\{\{ \.(\w+) \}\}",
                  lambda m: (passwords or {}).get(m[1], f"pw-{m[1]}"), body)
    assert not re.search(r"\{\{|\$\{|%\{", body), body
    return body


@pytest.mark.parametrize("tls", [False, True])
def test_the_nomad_nats_conf_is_one_nats_server_accepts(tmp_path, tls) -> None:
    conf = tmp_path / "nats.conf"
    conf.write_text(render_nomad_nats_conf(tmp_path, tls=tls))
    if tls:
        pki = make_pki(tmp_path)
        for src, name in ((pki.ca, "ca.pem"), (pki.server_cert, "nats.pem"),
                          (pki.server_key, "nats-key.pem")):
            (tmp_path / name).write_bytes(src.read_bytes())
    checked = subprocess.run([str(nats_server_binary()), "-c", str(conf), "-t"],
                             capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    text = conf.read_text()
    assert 'user: "route"' in text and "nats-route://route:pw-nats_route_password@" in text
    assert ("cert_file" in text) == tls


def peers(monitor_port: int) -> set[str]:
    """The servers this one has routes to (by name; NATS pools several routes per peer)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{monitor_port}/routez", timeout=2) as r:
        return {route["remote_name"] for route in json.load(r)["routes"] or []}


@pytest.mark.parametrize("tls", [False, True])
def test_a_server_joins_the_cluster_only_with_the_route_password(tmp_path, tls) -> None:
    pki = make_pki(tmp_path) if tls else None
    free: list[int] = []
    while len(free) < 9:  # free_port may hand out a port twice in a row
        if (port := free_port()) not in free:
            free.append(port)
    ports = {name: tuple(free[i * 3:i * 3 + 3]) for i, name in enumerate(("a", "b", "intruder"))}
    servers = []
    try:
        for name, password in (("a", "route-secret"), ("b", "route-secret"),
                               ("intruder", "a-guess")):
            folder = tmp_path / name
            folder.mkdir()
            if pki:
                for src, file in ((pki.ca, "ca.pem"), (pki.server_cert, "nats.pem"),
                                  (pki.server_key, "nats-key.pem")):
                    (folder / file).write_bytes(src.read_bytes())
            (folder / "nats.conf").write_text(render_nomad_nats_conf(
                folder, tls=tls, ports=ports[name], route_to=ports["a"][2],
                passwords={"nats_route_password": password}))
            servers.append(ServerProcess(
                f"nats-{name}", [str(nats_server_binary()), "-c", str(folder / "nats.conf")],
                "127.0.0.1", ports[name][0], folder / "nats.log").start())
        deadline = time.monotonic() + 20
        while not peers(ports["b"][1]) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # the intruder has had as long to try
        assert peers(ports["a"][1]) == {"b"} and peers(ports["b"][1]) == {"a"}
        assert peers(ports["intruder"][1]) == set()
    finally:
        for server in servers:
            server.stop()
    assert "authentication error" in (tmp_path / "a" / "nats.log").read_text()
