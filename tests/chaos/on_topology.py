"""Chaos on the production topology (``loadtest/topology``) with results in Cassandra: the
chaos suite's own Cassandra node (its scenarios kill and pause it; the store tests' node is
never touched), a topology per scenario in its own keyspace, a client that retries with the
same Idempotency-Key and fails over between gateways, and the invariants read from Cassandra.

CI runs a small topology (one nats-server, one role of each kind unless a scenario needs
more); ``INFERQ_CHAOS_SCALE=long`` runs the full one: a 3-node NATS cluster with R3 streams,
two gateways, two schedulers, two runners.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis

from inferq.cassandra_node import cassandra_node, start_node
from inferq.embedded import ServerProcess
from loadtest.topology import Topology, TopologySpec, resume
from schemas.states import TERMINAL_JOB
from tests.chaos.watch import answer
from tests.chaos.workload import LONG
from tests.e2e.harness import KEYS


def chaos_node(data: Path, home: Path, java: Path) -> Iterator[ServerProcess]:
    """The chaos suite's Cassandra node for the session (the ``chaos_cassandra`` fixture),
    with group commit, as the topology's own node (see ``TopologySpec.cassandra_commitlog``)."""
    node = cassandra_node(data, home, java=java, log_path=data / "stdout.log", durable=True)
    start_node(node)
    try:
        yield node
    finally:
        resume(node)
        node.stop(grace=30.0)


def ensure_up(node: ServerProcess) -> None:
    """Running and not paused, whatever an earlier scenario left it in."""
    resume(node)
    if not node.running:
        start_node(node)


def spec(keyspace: str, short: dict[str, int] | None = None, **always: Any) -> TopologySpec:
    """The full topology in the long runs; in CI one nats-server and one role of each kind,
    with ``short`` overrides (``{"gateways": 2}``). ``always``: other fields, in both.
    Simulated runners at 100 us per padded token (a 32-item batch ~0.15 s, one item alone a
    few ms, as on a device): a job lasts long enough for a fault to land in the middle of
    it, and the CPU stays free."""
    base = TopologySpec(**{"keyspace": keyspace, "sim_batch_ms": 5.0, "sim_token_us": 100.0,
                           **always})
    if LONG:
        return base
    small = {"nats_nodes": 1, "gateways": 1, "schedulers": 1, "runners": 1, **(short or {})}
    return dataclasses.replace(base, **small)


@contextlib.asynccontextmanager
async def running(tmp: Path, topo_spec: TopologySpec, *, model_repo: Path,
                  node: ServerProcess, **overrides: Any) -> AsyncIterator[Topology]:
    """A started, ready, supervised topology on ``node`` for the block; stopped after."""
    ensure_up(node)
    topo = Topology(tmp, topo_spec, keys=KEYS, model_repo=model_repo, cassandra=node,
                    **overrides)
    supervisor: asyncio.Task | None = None
    try:
        await asyncio.to_thread(topo.start)
        await topo.ready()
        supervisor = asyncio.create_task(topo.supervise())
        yield topo
    finally:
        if supervisor is not None:
            supervisor.cancel()
        await asyncio.to_thread(topo.stop)


def client(url: str, tenant: str = "alpha") -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, timeout=30,
                             headers={"Authorization": f"Bearer {KEYS[tenant]}"})


def log_lines(topo: Topology, pattern: str, role: str) -> int:
    """Lines matching the regular expression ``pattern`` in the logs of one kind of role."""
    found = re.compile(pattern).search
    n = 0
    for path in sorted(topo.logs.glob(f"{role}-*.log")):
        with open(path, errors="replace") as fh:
            n += sum(1 for line in fh if found(line))
    return n


def restarts(topo: Topology) -> dict[str, int]:
    """Restarts the supervisor made, per role process (``gateway-1``: the second gateway)."""
    return {r.name: r.crashes for r in topo.roles if r.crashes}


@dataclasses.dataclass
class Submission:
    """What a retrying client saw for one Idempotency-Key: every answer, in order, and the job
    it was finally given."""

    key: str
    answers: list[str] = dataclasses.field(default_factory=list)
    job_id: str | None = None
    replayed: bool = False
    """The 202 that ended it said ``Idempotency-Replayed: true`` (an earlier attempt, perhaps
    cut off by a dying gateway, had created the job)."""


async def submit_retrying(urls: list[str], body: dict, key: str, *, first: int = 0,
                          within: float = 120, tenant: str = "alpha") -> Submission:
    """A well-behaved client: the same Idempotency-Key on every attempt; on a connection error
    the next attempt goes to the next gateway at once, on a retryable answer (503, 409) after
    a short wait; anything else is a failure."""
    sub, g, refused = Submission(key), first, 0
    deadline = time.monotonic() + within
    while True:
        async with client(urls[g % len(urls)], tenant) as c:
            try:
                r = await c.post("/v1/jobs", json=body, headers={"Idempotency-Key": key})
            except httpx.TransportError as exc:
                sub.answers.append(type(exc).__name__)
                g, refused = g + 1, refused + 1  # fail over
                if refused >= len(urls):  # every gateway down: wait for one to come back
                    await asyncio.sleep(0.2)
            else:
                refused = 0
                sub.answers.append(answer(r))
                if r.status_code == 202:
                    sub.job_id = r.json()["job_id"]
                    sub.replayed = r.headers.get("Idempotency-Replayed") == "true"
                    return sub
                assert r.status_code in (409, 503) and r.json()["retryable"], r.text
                await asyncio.sleep(0.3)
        assert time.monotonic() < deadline, f"{key} not accepted in {within}s: {sub.answers}"


class CassandraView:
    """The topology's keyspace read directly (the store's own connection settings)."""

    def __init__(self, results_url: str) -> None:
        from store.results.cassandra.session import connect
        from store.results.config import CassandraConfig

        self.config = CassandraConfig.from_url(results_url)
        self.ks = self.config.keyspace
        self._cluster, self._session = connect(self.config)

    def close(self) -> None:
        self._cluster.shutdown()

    def item_counts(self, job_id: str, total: int) -> tuple[int, int, int, int]:
        """Rows, distinct indexes, succeeded and failed rows of a job (every item bucket)."""
        from store.results.cassandra.statements import ITEM_BUCKET

        rows = []
        for bucket in range(-(-total // ITEM_BUCKET)):
            rows += self._session.execute(
                f"SELECT idx, status FROM {self.ks}.items WHERE job_id = %s AND bucket = %s",
                (job_id, bucket)).all()
        statuses = [r["status"] for r in rows]
        return (len(rows), len({r["idx"] for r in rows}), statuses.count("succeeded"),
                statuses.count("failed"))

    def jobs(self) -> list[dict]:
        """Every job row of the keyspace (a test keyspace: a handful of rows)."""
        return self._session.execute(
            f"SELECT job_id, idempotency_key, status, published FROM {self.ks}.jobs").all()


async def check_cassandra_invariants(topo: Topology, jobs: dict[str, int]) -> dict[str, dict]:
    """As ``invariants.check_invariants``, with the rows read from Cassandra: one row per item;
    succeeded + failed == total; Redis counts == row counts == API counts; every job terminal,
    its stored status the API's."""
    assert topo.settings is not None
    view = await asyncio.to_thread(CassandraView, topo.settings.results_url)
    redis = aioredis.Redis.from_url(topo.settings.redis_url)
    stored = {j["job_id"]: j for j in await asyncio.to_thread(view.jobs)}
    out = {}
    try:
        async with client(topo.gateway_urls[0]) as c:
            for job_id, total in jobs.items():
                rows, distinct, ok, bad = await asyncio.to_thread(view.item_counts, job_id, total)
                assert rows == distinct == total, (job_id, rows, distinct, total)
                assert ok + bad == total
                h = await redis.hmget(f"inferq:job:{job_id}", "succeeded", "failed", "running")
                assert [int(x) for x in h] == [ok, bad, 0], (job_id, h, ok, bad)
                doc = (await c.get(f"/v1/jobs/{job_id}")).json()
                assert doc["status"] in TERMINAL_JOB, doc
                assert (doc["counts"]["succeeded"], doc["counts"]["failed"]) == (ok, bad)
                assert stored[job_id]["status"] == doc["status"], (stored[job_id], doc)
                out[job_id] = doc
    finally:
        await redis.aclose()
        await asyncio.to_thread(view.close)
    return out


async def jobs_per_key(topo: Topology) -> dict[str | None, list[str]]:
    """The stored jobs by Idempotency-Key (None: submitted without one)."""
    assert topo.settings is not None
    view = await asyncio.to_thread(CassandraView, topo.settings.results_url)
    try:
        rows = await asyncio.to_thread(view.jobs)
    finally:
        await asyncio.to_thread(view.close)
    out: dict[str | None, list[str]] = {}
    for r in rows:
        out.setdefault(r["idempotency_key"], []).append(r["job_id"])
    return out
