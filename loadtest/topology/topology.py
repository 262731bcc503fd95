"""The production topology on one machine: what runs, and starting and stopping it.

A 3-node NATS JetStream cluster (streams at R3), Redis, a Cassandra node, two gateways, two
schedulers and two runners, each role its own ``python -m inferq.cli <role>`` process
configured by ``INFERQ_*`` variables, as Nomad runs them; all on free loopback ports, data and
logs under one folder. The NATS cluster is the chaos suite's (``tests/chaos/nats_cluster.py``):
one implementation of a cluster whose nodes can be killed, for the command and the tests.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from core.config import Settings
from core.tenants import Tenant, hash_key, write_tenants_file
from inferq.cassandra_node import cassandra_node, default_home, locate, start_node
from inferq.embedded import ServerProcess, free_port, nats_server, redis_server
from inferq.nats_cluster import NatsCluster
from loadtest.topology.processes import RoleProcess, resume, settings_env


@dataclass(frozen=True)
class TopologySpec:
    """What runs: how many of each process, where results live, what the runners run on."""

    nats_nodes: int = 3
    """nats-servers forming one JetStream cluster; streams get this many replicas (3: R3,
    as production). 1: a single server, R1 (a lighter topology for short chaos tests)."""
    nats_sync_always: bool = False
    """JetStream fsyncs every write (``sync_interval: always``), as production must: a PubAck
    then survives a power loss. ``python -m loadtest.topology up`` turns it on; the chaos
    tests, which kill processes but never the machine, leave it off for speed."""
    gateways: int = 2
    """Gateways, each on its own port: a client may fail over between them."""
    schedulers: int = 2
    runners: int = 2
    results: str = "cassandra"
    """``cassandra``: a local node (``scripts/fetch_cassandra.sh``), keyspace with one replica;
    ``sqlite``: one file the roles share (no JVM: half a core and 0.7 GB lighter)."""
    keyspace: str = "inferq"
    cassandra_commitlog: str = "group"
    """The node's ``commitlog_sync``. ``group``: a write is acknowledged once its commit log
    entry is fsynced (within a 10 ms group window), so killing the node loses nothing
    acknowledged: the one-node stand-in for production's RF3. ``periodic`` (10 s, the local
    dev node's setting) replays only up to the last sync after a SIGKILL: acknowledged, counted
    results are lost (the chaos suite lost 21 of 1,500 rows that way)."""
    cassandra_timeout_s: float | None = None
    """Per-query Cassandra timeout of the roles (the URL's ``timeout_s``; None: the store's
    10 s). Shorter makes a paused node show up as timeouts sooner."""
    backend: str = "simulated"
    """Runner backend. ``simulated`` sleeps for the device time (the CPU stays free for the
    rest of the topology); ``onnxruntime`` runs the model on ``backend_threads`` threads."""
    backend_threads: int = 1
    sim_batch_ms: float = 5.0
    """Simulated device time per batch; with ``sim_token_us``, what a runner's capacity is."""
    sim_token_us: float = 2.0
    """Simulated device time per padded token of a batch."""
    tenant_limits: Mapping[str, float] = field(default_factory=lambda: {
        "requests_per_s": 10_000.0, "polls_per_s": 100_000.0})
    """Tenant rate limits, high so that load tests measure the service, not the limiter."""


class Topology:
    """The servers and role processes of one :class:`TopologySpec` under ``root``.

    ``start()`` brings up the servers, creates the Cassandra tables and starts the roles;
    ``stop()`` (idempotent) stops gateways, schedulers, runners, then the servers. Pass a
    running ``cassandra`` node to share it (the topology then uses its own keyspace on it and
    leaves the node running; ``cassandra_home`` and ``java_home`` say where the fetched node
    and Java 17 are otherwise); ``role_env`` adds variables to one kind of role or one
    process (chaos: ``{"gateway-0": {"INFERQ_FAULTS": ...}}``); ``overrides`` are Settings
    given to every role."""

    def __init__(self, root: Path, spec: TopologySpec, *, keys: Mapping[str, str],
                 model_repo: Path, cassandra: ServerProcess | None = None,
                 cassandra_home: Path | None = None, java_home: Path | None = None,
                 role_env: Mapping[str, Mapping[str, str]] | None = None,
                 **overrides: object) -> None:
        self.root, self.spec, self.keys = root, spec, dict(keys)
        self.logs = root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.model_repo = model_repo
        self.cassandra = cassandra
        self._cassandra_home = cassandra_home or default_home()
        self._java_home = java_home
        self._own_cassandra = cassandra is None and spec.results == "cassandra"
        self.overrides = overrides
        self._role_env = {role: dict(env) for role, env in (role_env or {}).items()}
        self.nats_cluster: NatsCluster | None = None
        self.nats: ServerProcess | None = None
        """The single nats-server (``nats_nodes == 1``) or the cluster's first node."""
        self.redis: ServerProcess | None = None
        self.settings: Settings | None = None
        """What every role runs with (each gets its own port on top)."""
        self.roles: list[RoleProcess] = []
        self._stopped = False

    def start(self) -> Topology:
        """Servers, tables, roles; blocking (Cassandra answers CQL 10-20 s after it starts)."""
        spec = self.spec
        failed: list[BaseException] = []
        node_up = threading.Thread(target=self._start_cassandra, args=(failed,),
                                   name="cassandra-start")
        node_up.start()  # the slowest server: the others start meanwhile
        try:
            if spec.nats_nodes > 1:
                self.nats_cluster = NatsCluster(self.root / "nats", spec.nats_nodes,
                                                log_dir=self.logs,
                                                sync_always=spec.nats_sync_always)
                self.nats = self.nats_cluster.nodes[0].server
                self.nats_cluster.start()
                nats_url = self.nats_cluster.url
                self._cluster_healthy()  # roles started before a meta leader only log errors
            else:
                self.nats = nats_server(self.root / "nats", log_path=self.logs / "nats.log",
                                        sync_always=spec.nats_sync_always)
                self.nats.start()
                nats_url = f"nats://127.0.0.1:{self.nats.port}"
            self.redis = redis_server(self.root / "redis", log_path=self.logs / "redis.log")
            self.redis.start()
        finally:
            node_up.join()  # (so that stop() finds the node to stop)
        if failed:
            raise failed[0]
        tenants = self.root / "tenants.toml"
        write_tenants_file(tenants, {name: Tenant(name=name, api_key_sha256=[hash_key(key)],
                                                  **spec.tenant_limits)
                                     for name, key in self.keys.items()})
        settings = dict(
            nats_url=nats_url, redis_url=f"redis://127.0.0.1:{self.redis.port}/0",
            results_url=self._results_url(), model_repo=str(self.model_repo),
            tenants_file=str(tenants), http_host="127.0.0.1", backend=spec.backend,
            backend_threads=spec.backend_threads, stream_replicas=spec.nats_nodes,
            sim_batch_ms=spec.sim_batch_ms, sim_token_us=spec.sim_token_us)
        if self.nats_cluster is not None:  # the schedulers export each node's sync setting
            settings["nats_monitor_url"] = ",".join(n.monitor for n in self.nats_cluster.nodes)
        settings.update(self.overrides)
        self.settings = Settings(**settings)
        if spec.results == "cassandra":
            self._migrate()
        for role, count in (("scheduler", spec.schedulers), ("runner", spec.runners),
                            ("gateway", spec.gateways)):
            for i in range(count):
                self.add(role, **{**self._role_env.get(role, {}),
                                  **self._role_env.get(f"{role}-{i}", {})})
        return self

    def _cluster_healthy(self, within: float = 60) -> None:
        """Every NATS node's ``/healthz`` 200: JetStream up and current with the meta group."""
        assert self.nats_cluster is not None
        deadline = time.monotonic() + within
        for node in self.nats_cluster.nodes:
            while True:
                try:
                    if httpx.get(f"{node.monitor}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nats node {node.name} not healthy in {within}s")
                time.sleep(0.2)

    def _start_cassandra(self, failed: list[BaseException]) -> None:
        if self.spec.results != "cassandra" or self.cassandra is not None:
            return
        try:
            java, _ = locate(self._cassandra_home, self._java_home)
            node = cassandra_node(self.root / "cassandra", self._cassandra_home, java=java,
                                  log_path=self.logs / "cassandra.log",
                                  durable=self.spec.cassandra_commitlog == "group")
            self.cassandra = start_node(node)
        except Exception as exc:  # noqa: BLE001 - raised again on the starting thread
            failed.append(exc)

    def _results_url(self) -> str:
        if self.spec.results == "sqlite":
            return f"sqlite:///{self.root / 'results.db'}"
        assert self.cassandra is not None
        timeout = self.spec.cassandra_timeout_s
        return (f"cassandra://127.0.0.1:{self.cassandra.port}/{self.spec.keyspace}"
                f"?dc=datacenter1&replication=datacenter1:1"
                + (f"&timeout_s={timeout}" if timeout else ""))

    def _migrate(self) -> None:
        """``inferq store migrate``, as an operator runs it before the first deploy."""
        subprocess.run([sys.executable, "-m", "inferq.cli", "store", "migrate"],
                       env=self.role_env(), check=True, capture_output=True, timeout=120)

    def role_env(self, **extra: str) -> dict[str, str]:
        """The environment of a role process: this one's, plus the topology's settings."""
        assert self.settings is not None, "start() first"
        return {**os.environ, **settings_env(self.settings), **extra}

    def add(self, role: str, **env: str) -> RoleProcess:
        """Start one more role process (``env``: extra ``INFERQ_*`` for it alone)."""
        port = free_port()
        own = {"INFERQ_HTTP_PORT" if role == "gateway" else "INFERQ_METRICS_PORT": str(port)}
        name = f"{role}-{len(self.of(role))}"
        proc = RoleProcess(role, name, self.role_env(**own, **env), self.logs / f"{name}.log",
                           port)
        proc.start()
        self.roles.append(proc)
        return proc

    def of(self, role: str) -> list[RoleProcess]:
        return [r for r in self.roles if r.role == role]

    @property
    def gateway_urls(self) -> list[str]:
        return [g.url for g in self.of("gateway")]

    def restart_dead(self) -> list[RoleProcess]:
        """The supervisor's step: start again every role process that exited."""
        dead = [r for r in self.roles if r.proc is not None and r.proc.poll() is not None]
        for r in dead:
            r.crashes += 1
            r.exit_codes.append(r.proc.returncode)
            r.start()
        return dead

    async def supervise(self, interval: float = 0.2) -> None:
        """Restart dead roles until cancelled."""
        while True:
            self.restart_dead()
            await asyncio.sleep(interval)

    async def ready(self, within: float = 120) -> None:
        """Every role's current process through its start-up and every gateway's ``/readyz``
        200 (its Redis and result store answer)."""
        deadline = time.monotonic() + within
        for r in self.roles:
            while not r.started:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{r.name} not started in {within}s: see {r.log}")
                await asyncio.sleep(0.2)
        async with httpx.AsyncClient(timeout=2) as c:
            for url in self.gateway_urls:
                while True:
                    try:
                        if (await c.get(f"{url}/readyz")).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        raise AssertionError(f"gateway {url} not ready in {within}s")
                    await asyncio.sleep(0.2)

    def stop(self) -> None:
        """Roles (gateways first: no new work), then the servers; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        for role in ("gateway", "scheduler", "runner"):
            for r in self.of(role):
                r.stop(grace=15)
        if self.redis is not None:
            self.redis.stop()
        if self.nats_cluster is not None:
            self.nats_cluster.stop()
        elif self.nats is not None:
            self.nats.stop()
        if self._own_cassandra and self.cassandra is not None:
            resume(self.cassandra)  # a paused JVM would sit out its grace period
            self.cassandra.stop(grace=30)
