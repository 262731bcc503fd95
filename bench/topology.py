"""The service under benchmark: the ``inferq dev`` topology, started in a temporary directory.

nats-server (fsync on every write, as ``inferq dev`` runs it) and redis-server from their
wheels; gateway, scheduler and one runner as separate ``python -m inferq.cli`` processes,
the scheduler and runner with Prometheus ports; SQLite results; two tenants whose limits
never bind. Plus what a benchmark reads off the processes: their metrics and CPU time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import msgspec

from core.tenants import Tenant, hash_key, write_tenants_file
from inferq.embedded import free_port, nats_server, redis_server
from schemas.states import TERMINAL_JOB

KEYS = {"big": "bench-key-big-000000", "small": "bench-key-small-00000"}


@dataclass(frozen=True)
class Topology:
    """A running service: its URL, the scheduler's and runner's metrics ports, and the pid of
    every process (roles, nats, redis)."""

    url: str
    sched_port: int
    runner_port: int
    pids: dict[str, int]
    tmp: Path
    runner_ports: tuple[int, ...] = ()
    """Every runner's metrics port (the first is ``runner_port``)."""
    sched_ports: tuple[int, ...] = ()
    """Every scheduler's metrics port (the first is ``sched_port``)."""


def start_role(role: str, env: dict[str, str], logs: Path,
               name: str | None = None) -> subprocess.Popen:
    """``python -m inferq.cli <role>`` with its output in ``logs/<name or role>.log``."""
    with open(logs / f"{name or role}.log", "ab") as log:  # the child keeps its own descriptor
        return subprocess.Popen([sys.executable, "-m", "inferq.cli", role], env=env, stdout=log,
                                stderr=subprocess.STDOUT)


def _wait_ready(url: str) -> None:
    for _ in range(600):
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    time.sleep(3)  # the runner warms up and registers


@contextlib.contextmanager
def running(model_repo: Path, backend: str, threads: int | None = None,
            streams: int | None = None, *, runners: int = 1,
            schedulers: int = 1) -> Iterator[Topology]:
    """The topology for the block's duration; roles get SIGTERM on the way out, then the
    servers stop. Logs stay in the temporary directory (printed by the caller if needed)."""
    tmp = Path(tempfile.mkdtemp(prefix="inferq-bench-"))
    (tmp / "logs").mkdir()
    nats = nats_server(tmp / "nats", log_path=tmp / "logs" / "nats.log", sync_always=True).start()
    redis = redis_server(tmp / "redis", log_path=tmp / "logs" / "redis.log").start()
    tenants = tmp / "tenants.toml"
    write_tenants_file(
        tenants,
        {
            name: Tenant(
                name=name, api_key_sha256=[hash_key(k)], requests_per_s=10_000, polls_per_s=100_000
            )
            for name, k in KEYS.items()
        },
    )
    http_port, sched_port, runner_port = free_port(), free_port(), free_port()
    env = dict(
        os.environ,
        INFERQ_NATS_URL=f"nats://127.0.0.1:{nats.port}",
        INFERQ_REDIS_URL=f"redis://127.0.0.1:{redis.port}/0",
        INFERQ_RESULTS_URL=f"sqlite:///{tmp / 'results.db'}",
        INFERQ_MODEL_REPO=str(model_repo),
        INFERQ_TENANTS_FILE=str(tenants),
        INFERQ_HTTP_PORT=str(http_port),
        INFERQ_BACKEND=backend,
    )
    if threads:
        env["INFERQ_BACKEND_THREADS"] = str(threads)
    if streams:
        env["INFERQ_BACKEND_STREAMS"] = str(streams)
    runner_ports = [runner_port] + [free_port() for _ in range(runners - 1)]
    sched_ports = [sched_port] + [free_port() for _ in range(schedulers - 1)]
    plan = ([(f"runner{k}" if k else "runner", "runner", dict(env, INFERQ_METRICS_PORT=str(p)))
             for k, p in enumerate(runner_ports)]
            + [(f"scheduler{k}" if k else "scheduler", "scheduler",
                dict(env, INFERQ_METRICS_PORT=str(p))) for k, p in enumerate(sched_ports)]
            + [("gateway", "gateway", env)])
    procs = [start_role(role, role_env, tmp / "logs", name) for name, role, role_env in plan]
    try:
        url = f"http://127.0.0.1:{http_port}"
        _wait_ready(url)
        pids = {name: p.pid for (name, _, _), p in zip(plan, procs, strict=True)}
        pids.update(nats=nats.proc.pid, redis=redis.proc.pid)
        yield Topology(url, sched_port, runner_port, pids, tmp, tuple(runner_ports),
                       tuple(sched_ports))
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            p.wait(60)
        redis.stop()
        nats.stop()


async def scrape(port: int, name: str) -> dict[str, float]:
    """The samples of metric ``name`` on a role's ``/metrics``, by series."""
    async with httpx.AsyncClient() as c:
        text = (await c.get(f"http://127.0.0.1:{port}/metrics")).text
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name)
    }


def cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def profile(pids: dict[str, int], out: Path) -> list[subprocess.Popen]:
    """py-spy (collapsed stacks) on each role for the window; stopped with SIGINT."""
    out.mkdir(parents=True, exist_ok=True)
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
    return [
        subprocess.Popen(
            [spy, "record", "--format", "raw", "--nonblocking", "--threads", "-r", "50",
             "-p", str(pid), "-o", str(out / f"{role}.txt")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        for role, pid in pids.items()
        if role.startswith(("runner", "scheduler", "gateway"))
    ]


async def wait_done(client: httpx.AsyncClient, job_id: str, every: float) -> dict:
    """Poll every ``every`` seconds until the job is terminal; its status document."""
    while True:
        doc = (await client.get(f"/v1/jobs/{job_id}")).raise_for_status().json()
        if doc["status"] in TERMINAL_JOB:
            return doc
        await asyncio.sleep(every)


async def device_seconds(ports: tuple[int, ...]) -> float:
    """The runners' summed backend time so far (the ``inferq_inference_seconds`` sums)."""
    return sum([sum((await scrape(port, "inferq_inference_seconds_sum")).values())
                for port in ports])


async def formed_totals(ports: tuple[int, ...]) -> tuple[float, float]:
    """Batches the schedulers have formed so far and their padded tokens, summed (the
    ``inferq_batch_padded_tokens`` histograms): what a device that pads to the bucket runs."""
    count = total = 0.0
    for port in ports:
        count += sum((await scrape(port, "inferq_batch_padded_tokens_count")).values())
        total += sum((await scrape(port, "inferq_batch_padded_tokens_sum")).values())
    return count, total


@dataclass(frozen=True)
class TimedJob:
    """One job run alone: its final status, when it was accepted and done (seconds from the
    POST), and each process's CPU seconds over that window."""

    doc: dict
    accepted: float
    wall: float
    cpu: dict[str, float]


async def timed_job(client: httpx.AsyncClient, body: dict, pids: dict[str, int], *,
                    every: float, profile_dir: Path | None = None) -> TimedJob:
    """POST the job, poll it to terminal every ``every`` seconds; every item must succeed.
    The body is encoded before the clock starts (the client's JSON encoder is not the
    service). ``profile_dir``: py-spy stacks of the roles over the same window."""
    raw = msgspec.json.encode(body)
    cpu0 = {k: cpu_seconds(pid) for k, pid in pids.items()}
    spies = profile(pids, profile_dir) if profile_dir else []
    t0 = time.perf_counter()
    r = await client.post("/v1/jobs", content=raw, headers={"Content-Type": "application/json"})
    r.raise_for_status()
    accepted = time.perf_counter() - t0
    doc = await wait_done(client, r.json()["job_id"], every)
    wall = time.perf_counter() - t0
    cpu = {k: cpu_seconds(pid) - cpu0[k] for k, pid in pids.items()}
    for spy in spies:
        spy.send_signal(signal.SIGINT)
    for spy in spies:
        spy.wait(30)
    assert doc["counts"]["succeeded"] == len(body["inputs"]), doc
    return TimedJob(doc, accepted, wall, cpu)
