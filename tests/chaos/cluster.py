"""The service as separate processes that can be killed the hard way.

Roles run as ``python -m inferq.cli <role>`` subprocesses (as in production), nats-server and
redis-server as children on free loopback ports. A supervisor restarts crashed roles, as Nomad
would, and counts the crashes.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from core.config import Settings
from inferq.embedded import ServerProcess, free_port, nats_server, redis_server
from tests.chaos.nats_cluster import NatsCluster
from tests.e2e.harness import KEYS, make_settings, role_env


@dataclass
class Role:
    """One role process (``python -m inferq.cli <name>``): started, killed or stopped; its
    starts and the crashes its supervisor saw are counted."""

    name: str
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen | None = None
    crashes: int = 0
    starts: int = 0

    def start(self) -> None:
        env = dict(self.env)
        if "INFERQ_FAULTS_SEED" in env:  # reproducible, yet not the same draw every restart
            env["INFERQ_FAULTS_SEED"] = str(int(env["INFERQ_FAULTS_SEED"]) + self.starts)
        out = open(self.log, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "inferq.cli", self.name],
                                     env=env, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        out.close()
        self.starts += 1

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self, grace: float = 30) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class Cluster:
    """nats + redis + gateway + schedulers + runners, each killable and restartable."""

    tmp: Path
    settings: Settings
    nats: ServerProcess
    redis: ServerProcess
    roles: list[Role] = field(default_factory=list)
    nats_cluster: NatsCluster | None = None
    """With ``nats_nodes > 1``: the JetStream cluster (``nats`` is then its first node)."""
    _supervisor: asyncio.Task | None = None

    @classmethod
    def create(cls, tmp: Path, model_repo: Path, *, nats_nodes: int = 1,
               **overrides) -> Cluster:
        """Servers on free loopback ports; ``nats_nodes=3`` makes a 3-node JetStream cluster
        whose streams are R3 (``stream_replicas`` may override), the roles given every node."""
        (tmp / "logs").mkdir(parents=True, exist_ok=True)
        nats_cluster = None
        if nats_nodes > 1:
            nats_cluster = NatsCluster(tmp / "nats", nats_nodes, log_dir=tmp / "logs").start()
            nats, nats_url = nats_cluster.nodes[0].server, nats_cluster.url
            overrides.setdefault("stream_replicas", nats_nodes)
        else:
            nats = nats_server(tmp / "nats", log_path=tmp / "logs" / "nats.log").start()
            nats_url = f"nats://127.0.0.1:{nats.port}"
        redis = redis_server(tmp / "redis", log_path=tmp / "logs" / "redis.log").start()
        settings = make_settings(tmp, nats_url, f"redis://127.0.0.1:{redis.port}/0",
                                 model_repo, **overrides)
        return cls(tmp, settings, nats, redis, nats_cluster=nats_cluster)

    def add(self, name: str, **env: str) -> Role:
        extra = {"INFERQ_BATCH_ACK_WAIT_S": str(self.settings.batch_ack_wait_s),
                 "INFERQ_CHUNK_ACK_WAIT_S": str(self.settings.chunk_ack_wait_s),
                 "INFERQ_CHUNK_ITEMS": str(self.settings.chunk_items),
                 "INFERQ_STREAM_REPLICAS": str(self.settings.stream_replicas)}
        if name != "gateway":
            extra["INFERQ_HTTP_PORT"] = str(free_port())
        role = Role(name, role_env(self.settings, **extra, **env),
                    self.tmp / "logs" / f"{name}-{len(self.roles)}.log")
        role.start()
        self.roles.append(role)
        return role

    def of(self, name: str) -> list[Role]:
        return [r for r in self.roles if r.name == name]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.http_port}"

    async def ready(self, within: float = 120) -> None:
        deadline = time.monotonic() + within
        async with httpx.AsyncClient() as c:
            while time.monotonic() < deadline:
                try:
                    if (await c.get(f"{self.url}/readyz", timeout=2)).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        raise AssertionError("gateway not ready")

    async def started(self, within: float = 120) -> None:
        """Every role got through its start-up (it logs ``<Role> started``): the runner has
        loaded its model and joined its consumer. A role whose start-up fails exits, to be
        restarted by its supervisor, so chaos that must find running roles waits for this."""
        deadline = time.monotonic() + within
        for r in self.roles:
            while True:
                text = r.log.read_text(errors="replace") if r.log.exists() else ""
                if text.count("Role started") >= r.starts:
                    break
                assert time.monotonic() < deadline, f"{r.log.name}: not started in {within}s"
                await asyncio.sleep(0.2)

    def supervise(self) -> None:
        """Restart any role that died (crash points, poison items, kills)."""

        async def loop() -> None:
            while True:
                for r in self.roles:
                    if r.proc is not None and r.proc.poll() is not None:
                        r.crashes += 1
                        r.start()
                await asyncio.sleep(0.2)

        self._supervisor = asyncio.create_task(loop())

    async def shutdown(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
        for r in self.roles:
            r.stop(grace=10)
        self.redis.stop()
        if self.nats_cluster is not None:
            self.nats_cluster.stop()
        else:
            self.nats.stop()

    @property
    def crashes(self) -> dict[str, int]:
        """Restarts the supervisor made, per role (``runner-2``: the role added third)."""
        return {f"{r.name}-{i}": r.crashes for i, r in enumerate(self.roles) if r.crashes}

    def log_lines(self, needle: str, role: str | None = None) -> int:
        """Lines containing ``needle`` in the roles' logs (all roles, or one kind)."""
        n = 0
        for path in sorted((self.tmp / "logs").glob(f"{role or ''}*.log")):
            with open(path, errors="replace") as fh:
                n += sum(needle in line for line in fh)
        return n

    def client(self, tenant: str = "alpha") -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=30,
                                 headers={"Authorization": f"Bearer {KEYS[tenant]}"})
