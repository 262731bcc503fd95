"""The service as separate processes that can be killed the hard way, and the invariants
checked after every chaos scenario.

Roles run as ``python -m inferq.cli <role>`` subprocesses (as in production), nats-server and
redis-server as children on free loopback ports. A supervisor restarts crashed roles, as Nomad
would, and counts the crashes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis.asyncio as aioredis

from core.config import Settings
from inferq.embedded import ServerProcess, free_port, nats_server, redis_server
from schemas.states import JOB_RANK, JobStatus
from tests.chaos.nats_cluster import NatsCluster
from tests.e2e.harness import KEYS, make_settings, role_env

SCALE = os.environ.get("INFERQ_CHAOS_SCALE", "short")
LONG = SCALE == "long"


def scaled(short: int, long: int) -> int:
    """The short figure in CI, the long one under ``INFERQ_CHAOS_SCALE=long``."""
    return long if LONG else short


@dataclass
class Role:
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


class StatusWatch:
    """Polls a job and records every status seen: status must never move backwards."""

    def __init__(self, client: httpx.AsyncClient, job_id: str, interval: float = 0.1):
        self.job_id = job_id
        self.interval = interval
        self.seen: list[str] = []
        self.errors_5xx = 0
        self.answers: Counter[str] = Counter()
        """Every answer by status and code, e.g. ``200``, ``503 unavailable``."""
        self._client = client
        self._task = asyncio.create_task(self._poll())

    async def _poll(self) -> None:
        while not self._client.is_closed:  # (a test that failed early closed it)
            try:
                r = await self._client.get(f"/v1/jobs/{self.job_id}")
                self.answers[answer(r)] += 1
                if r.status_code >= 500:
                    self.errors_5xx += 1
                elif r.status_code == 200:
                    s = r.json()["status"]
                    if not self.seen or self.seen[-1] != s:
                        self.seen.append(s)
            except httpx.HTTPError as exc:
                self.answers[type(exc).__name__] += 1
            await asyncio.sleep(self.interval)

    async def until_terminal(self, within: float) -> str:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.seen and self.seen[-1] in ("succeeded", "failed"):
                await asyncio.sleep(0.3)  # a late backwards move would show here
                self._task.cancel()
                return self.seen[-1]
            await asyncio.sleep(0.1)
        self._task.cancel()
        raise AssertionError(f"job {self.job_id} not terminal after {within}s: {self.seen}")

    def assert_monotonic(self) -> None:
        ranks = [JOB_RANK[JobStatus(s)] for s in self.seen]
        assert ranks == sorted(ranks), f"status moved backwards: {self.seen}"
        assert len([s for s in self.seen if s in ("succeeded", "failed")]) == 1, self.seen


def answer(r: httpx.Response) -> str:
    """``200``, or an error's status and envelope code: ``503 unavailable``."""
    if r.status_code < 400:
        return str(r.status_code)
    try:
        return f"{r.status_code} {r.json().get('code')}"
    except ValueError:
        return f"{r.status_code} (no envelope)"


async def down_for(server: ServerProcess, seconds: float, *, kill: bool = False) -> None:
    """An outage: stop the server (SIGTERM; SIGKILL with ``kill``), wait, start it again on
    the same port with the same data directory (its argv and config are unchanged)."""
    await asyncio.to_thread(server.kill if kill else server.stop)
    await asyncio.sleep(seconds)
    await asyncio.to_thread(server.start)


@contextlib.asynccontextmanager
async def store_locked(db_path: str) -> AsyncIterator[None]:
    """The SQLite result store unavailable to writers: another connection holds
    ``BEGIN EXCLUSIVE`` until the block ends (in WAL mode readers still read)."""
    taken, release = threading.Event(), threading.Event()
    failed: list[BaseException] = []

    def hold() -> None:
        conn = sqlite3.connect(db_path, timeout=60, isolation_level=None)
        try:
            try:
                conn.execute("BEGIN EXCLUSIVE")
            except sqlite3.Error as exc:  # reported in the test, not lost in a thread
                failed.append(exc)
                return
            finally:
                taken.set()
            release.wait()
            conn.execute("ROLLBACK")
        finally:
            conn.close()

    thread = threading.Thread(target=hold, name="store-lock", daemon=True)
    thread.start()
    await asyncio.to_thread(taken.wait)
    if failed:
        raise failed[0]
    try:
        yield
    finally:
        release.set()
        await asyncio.to_thread(thread.join)


async def dlq_messages(cluster: Cluster) -> int:
    """Batches dead-lettered (the DLQ stream's message count)."""
    import nats

    nc = await nats.connect(cluster.settings.nats_url.split(","))
    try:
        return (await nc.jetstream().stream_info("DLQ")).state.messages
    finally:
        await nc.close()


def item_error_codes(cluster: Cluster, job_id: str) -> Counter[str]:
    """The error codes of a job's failed item rows."""
    db = sqlite3.connect(cluster.settings.results_url.removeprefix("sqlite:///"))
    try:
        return Counter(code for (code,) in db.execute(
            "select error_code from items where job_id = ? and status = 'failed'", (job_id,)))
    finally:
        db.close()


async def done_items(client: httpx.AsyncClient, job_id: str) -> int:
    """Succeeded + failed, from the status document (0 while it cannot be read)."""
    r = await client.get(f"/v1/jobs/{job_id}")
    if r.status_code != 200:
        return 0
    counts = r.json()["counts"]
    return counts["succeeded"] + counts["failed"]


async def until_done(client: httpx.AsyncClient, job_id: str, at_least: int,
                     within: float = 120) -> int:
    """Wait until the job has at least ``at_least`` items done; returns how many."""
    deadline = time.monotonic() + within
    while (done := await done_items(client, job_id)) < at_least:
        assert time.monotonic() < deadline, f"{job_id}: {done} < {at_least} after {within}s"
        await asyncio.sleep(0.05)
    return done


async def until_all_terminal(client: httpx.AsyncClient, jobs: dict[str, int], within: float,
                             stall_s: float = 30) -> None:
    """Wait until every job is terminal; fail early once no item has been counted anywhere for
    ``stall_s`` (longer than any AckWait here: redelivery would have made progress)."""
    deadline = time.monotonic() + within
    last, since = -1, time.monotonic()
    while True:
        docs = [(await client.get(f"/v1/jobs/{j}")) for j in jobs]
        docs = [r.json() for r in docs if r.status_code == 200]
        if len(docs) == len(jobs) and all(d["status"] in ("succeeded", "failed") for d in docs):
            return
        done = sum(d["counts"]["succeeded"] + d["counts"]["failed"] for d in docs)
        if done != last:
            last, since = done, time.monotonic()
        now = time.monotonic()
        assert now - since < stall_s, f"stalled: {done} of {sum(jobs.values())} items done, " \
                                      f"no progress for {stall_s}s"
        assert now < deadline, f"not terminal after {within}s: {done} of {sum(jobs.values())}"
        await asyncio.sleep(0.2)


async def check_invariants(cluster: Cluster, jobs: dict[str, int]) -> dict[str, dict]:
    """After a scenario: one result row per item; succeeded + failed == total; Redis counts ==
    store counts == API counts; every accepted job (its chunks got a PubAck) finished."""
    db = sqlite3.connect(cluster.settings.results_url.removeprefix("sqlite:///"))
    redis = aioredis.Redis.from_url(cluster.settings.redis_url)
    out = {}
    try:
        for job_id, total in jobs.items():
            tenant = (await redis.hget(f"inferq:job:{job_id}", "tenant") or b"alpha").decode()
            async with cluster.client(tenant) as c:
                rows, distinct, ok, bad = db.execute(
                    "select count(*), count(distinct idx), sum(status = 'succeeded'), "
                    "sum(status = 'failed') from items where job_id = ?", (job_id,)).fetchone()
                assert rows == distinct == total, (job_id, rows, distinct, total)
                assert ok + bad == total
                h = await redis.hmget(f"inferq:job:{job_id}", "succeeded", "failed", "running")
                assert [int(x) for x in h] == [ok, bad, 0], (job_id, h, ok, bad)
                doc = (await c.get(f"/v1/jobs/{job_id}")).json()
                assert doc["status"] in ("succeeded", "failed"), doc
                assert (doc["counts"]["succeeded"], doc["counts"]["failed"]) == (ok, bad)
                stored = db.execute("select status from jobs where job_id = ?",
                                    (job_id,)).fetchone()[0]
                assert stored == doc["status"], (stored, doc["status"])
                out[job_id] = doc
    finally:
        db.close()
        await redis.aclose()
    return out


async def inferred(cluster: Cluster) -> int:
    redis = aioredis.Redis.from_url(cluster.settings.redis_url)
    try:
        return int(await redis.get("inferq:runners:minilm:1:inferred") or 0)
    finally:
        await redis.aclose()


def corpus(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    words = ("queue batch tenant runner bucket token cache store stream chunk redelivery "
             "fairness shape padding embedding result status idempotent").split()
    return [{"text": " ".join(rng.choice(words) for _ in range(rng.randint(3, 60))),
             "id": f"i{i}"} for i in range(n)]
