"""The metrics behind the dependency, durability and fair-share alerts and panels, read from real
servers: ``inferq_dependency_up`` follows a Redis outage and its end in every role,
``inferq_jetstream_sync_always`` is what the NATS server says, and each tenant's batched items
and weight are exported."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

from prometheus_client import REGISTRY

from core.dependencies import JetStreamSync
from inferq.embedded import free_port, nats_server
from inferq.roles.scheduler import SchedulerRole
from tests.e2e.harness import Service, wait_terminal, write_tenants


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


async def eventually(condition, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def up(role: str, dependency: str) -> float | None:
    return sample("inferq_dependency_up", role=role, dependency=dependency)


async def test_dependency_up_drops_to_0_while_redis_is_stopped_and_comes_back(
        settings, redis_proc) -> None:
    svc = Service(dataclasses.replace(settings, dependency_check_s=0.2))
    await svc.start()
    try:
        pairs = [("gateway", "nats"), ("gateway", "redis"), ("gateway", "store"),
                 ("scheduler", "nats"), ("scheduler", "redis"),
                 ("runner", "nats"), ("runner", "redis"), ("runner", "store")]
        await eventually(lambda: all(up(r, d) == 1 for r, d in pairs))
        await asyncio.to_thread(redis_proc.stop)
        try:
            await eventually(lambda: all(up(r, "redis") == 0
                                         for r in ("gateway", "scheduler", "runner")))
            # Only Redis is down: the others stay up.
            assert all(up(r, d) == 1 for r, d in pairs if d != "redis")
        finally:
            await asyncio.to_thread(redis_proc.start)
        await eventually(lambda: all(up(r, d) == 1 for r, d in pairs), within=30)
    finally:
        await svc.stop()


def monitored_nats(tmp: Path, name: str, *, sync_always: bool) -> tuple:
    """A nats-server named ``name`` with its HTTP monitoring port; (process, monitor URL)."""
    monitor = free_port()
    proc = nats_server(tmp, log_path=tmp / "nats.log", sync_always=sync_always,
                       extra=["-m", str(monitor), "-n", name])
    return proc.start(), f"http://127.0.0.1:{monitor}"


async def test_the_jetstream_sync_setting_is_read_from_each_server(tmp_path) -> None:
    always, always_url = monitored_nats(tmp_path / "a", "nats-always", sync_always=True)
    default, default_url = monitored_nats(tmp_path / "b", "nats-default", sync_always=False)
    try:
        await JetStreamSync(f"{always_url}, {default_url}/").read()
    finally:
        always.stop()
        default.stop()
    assert sample("inferq_jetstream_sync_always", server="nats-always") == 1
    assert sample("inferq_jetstream_sync_always", server="nats-default") == 0
    assert sample("inferq_jetstream_sync_interval_seconds", server="nats-default") == 120


async def test_a_scheduler_with_a_monitor_url_exports_the_sync_setting(settings, tmp_path):
    proc, monitor = monitored_nats(tmp_path / "n", "nats-of-a-scheduler", sync_always=True)
    url = f"nats://127.0.0.1:{proc.port}"
    assert sample("inferq_jetstream_sync_always", server="nats-of-a-scheduler") is None
    role = SchedulerRole(dataclasses.replace(settings, nats_url=url, nats_monitor_url=monitor,
                                             dependency_check_s=0.2))
    try:
        await role.start()
        await eventually(lambda: sample("inferq_jetstream_sync_always",
                                        server="nats-of-a-scheduler") == 1)
        assert up("scheduler", "nats") == 1
    finally:
        await role.stop()
        proc.stop()


async def test_each_tenants_batched_items_and_weight_are_exported(settings, tmp_path) -> None:
    s = dataclasses.replace(settings, tenants_file=str(write_tenants(
        tmp_path / "weighted.toml", {"alpha": 3.0, "beta": 1.0})))
    before = {t: sample("inferq_tenant_items_batched_total", model="minilm", tenant=t,
                        priority="batch") or 0.0 for t in ("alpha", "beta")}
    svc = Service(s)
    await svc.start()
    try:
        for tenant, n in (("alpha", 40), ("beta", 7)):
            async with svc.client(tenant) as c:
                r = await c.post("/v1/jobs", json={"model": "minilm", "priority": "batch",
                                                   "inputs": [{"text": f"t {i}"}
                                                              for i in range(n)]})
                assert (await wait_terminal(c, r.json()["job_id"]))["status"] == "succeeded"
    finally:
        await svc.stop()
    after = {t: sample("inferq_tenant_items_batched_total", model="minilm", tenant=t,
                       priority="batch") for t in ("alpha", "beta")}
    assert after["alpha"] - before["alpha"] == 40 and after["beta"] - before["beta"] == 7
    assert sample("inferq_tenant_weight", tenant="alpha") == 3.0
    assert sample("inferq_tenant_weight", tenant="beta") == 1.0
