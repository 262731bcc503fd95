"""A running inferq in one event loop: gateway (uvicorn), scheduler and runners, on real
nats-server and redis-server processes, a real SQLite file and the real default model."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from core import bus
from core.config import Settings
from core.tenants import Tenant, hash_key, write_tenants_file
from inferq.embedded import free_port
from inferq.nats_users import NatsUsers
from inferq.roles.gateway import GatewayRole
from inferq.roles.runner import RunnerRole
from inferq.roles.scheduler import SchedulerRole
from schemas.states import TERMINAL_JOB

KEYS = {"alpha": "key-alpha-0123456789", "beta": "key-beta-0123456789",
        "gamma": "key-gamma-0123456789"}


def write_tenants(path: Path, weights: dict[str, float] | None = None) -> Path:
    weights = weights or {}
    write_tenants_file(path, {
        name: Tenant(name=name, weight=weights.get(name, 1.0), api_key_sha256=[hash_key(k)])
        for name, k in KEYS.items()
    })
    return path


def make_settings(tmp: Path, nats_url: str, redis_url: str, model_repo: Path,
                  **overrides) -> Settings:
    base = dict(
        nats_url=nats_url, redis_url=redis_url,
        results_url=f"sqlite:///{tmp / 'results.db'}", model_repo=str(model_repo),
        tenants_file=str(write_tenants(tmp / "tenants.toml", overrides.pop("weights", None))),
        http_host="127.0.0.1", http_port=free_port(), backend="onnxruntime",
        backend_threads=2, max_queue_delay_s=0.02,
    )
    base.update(overrides)
    return Settings(**base)


NATS_USERS: dict[str, NatsUsers] = {}
"""The users of each permissioned nats-server the tests started, by URL (tests/conftest.py,
``--nats-users``): a Service on one provisions the streams as its admin, then runs each role
as its own user, as ``inferq dev`` does."""


@dataclass
class Service:
    settings: Settings
    gateway: GatewayRole | None = None
    schedulers: list[SchedulerRole] = field(default_factory=list)
    runners: list[RunnerRole] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.settings.http_host}:{self.settings.http_port}"

    def role_settings(self, role: str) -> Settings:
        """The settings a role runs with: its own NATS user on a permissioned server."""
        users = NATS_USERS.get(self.settings.nats_url)
        return users.settings(self.settings, role) if users else self.settings

    async def start(self, *, schedulers: int = 1, runners: int = 1) -> Service:
        if self.settings.nats_url in NATS_USERS:  # the roles may not create the streams
            await bus.provision(self.role_settings("admin"))
        self.gateway = GatewayRole(self.role_settings("gateway"))
        await self.gateway.start()
        for _ in range(schedulers):
            await self.add_scheduler()
        for _ in range(runners):
            await self.add_runner()
        return self

    async def add_scheduler(self) -> SchedulerRole:
        role = SchedulerRole(self.role_settings("scheduler"))
        await role.start()
        self.schedulers.append(role)
        return role

    async def add_runner(self) -> RunnerRole:
        role = RunnerRole(self.role_settings("runner"))
        await role.start()
        self.runners.append(role)
        return role

    async def stop(self) -> None:
        for r in self.runners:
            await r.stop()
        for s in self.schedulers:
            await s.stop()
        if self.gateway:
            await self.gateway.stop()

    def client(self, tenant: str = "alpha") -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=30.0,
                                 headers={"Authorization": f"Bearer {KEYS[tenant]}"})


async def wait_terminal(client: httpx.AsyncClient, job_id: str, within: float = 120.0) -> dict:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        r = await client.get(f"/v1/jobs/{job_id}")
        assert r.status_code == 200, r.text
        doc = r.json()
        if doc["status"] in TERMINAL_JOB:
            return doc
        await asyncio.sleep(0.1)
    raise AssertionError(f"job {job_id} not terminal after {within}s: {doc}")


async def all_results(client: httpx.AsyncClient, job_id: str, status: str | None = None,
                      limit: int = 1000) -> list[dict]:
    items, cursor = [], None
    while True:
        params = {"limit": limit}
        if status:
            params["status"] = status
        if cursor:
            params["cursor"] = cursor
        r = await client.get(f"/v1/jobs/{job_id}/results", params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return items


def role_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment a role subprocess needs to join this service."""
    import os

    env = dict(os.environ)
    for name in ("nats_url", "redis_url", "results_url", "model_repo", "tenants_file",
                 "backend", "backend_threads", "backend_streams", "max_queue_delay_s", "http_port",
                 "redis_username", "redis_password"):
        value = getattr(settings, name)
        if value is not None:
            env[f"INFERQ_{name.upper()}"] = str(value)
    env.update(extra)
    return env


async def metric_value(client: httpx.AsyncClient, name: str) -> float:
    """Sum of a metric's samples on the gateway's /metrics."""
    text = (await client.get("/metrics")).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total
