"""``python -m loadtest.topology up``: the production topology on this machine until Ctrl-C.

Starts everything (see :mod:`loadtest.topology.topology`), runs one item through every gateway
to prove the whole path, prints the URLs, the tenants' API keys and a Locust command line,
then supervises: a role that dies is restarted (and counted) until SIGINT or SIGTERM, which
stop the roles and then the servers. The state folder is kept for its logs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from core.config import Settings
from inferq.cassandra_node import home_from
from inferq.embedded import EmbeddedServerError
from loadtest.topology.topology import Topology, TopologySpec
from schemas.states import TERMINAL_JOB


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m loadtest.topology",
                                description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the topology and supervise it until Ctrl-C")
    d = TopologySpec()
    up.add_argument("--dir", type=Path, help="state folder, must be empty or absent "
                    "(default: a new temporary folder)")
    up.add_argument("--nats-nodes", type=int, default=d.nats_nodes)
    up.add_argument("--no-nats-sync", dest="nats_sync", action="store_false",
                    help="JetStream's default periodic fsync instead of sync_interval: always")
    up.add_argument("--gateways", type=int, default=d.gateways)
    up.add_argument("--schedulers", type=int, default=d.schedulers)
    up.add_argument("--runners", type=int, default=d.runners)
    up.add_argument("--results", choices=["cassandra", "sqlite"], default=d.results)
    up.add_argument("--backend", default=d.backend)
    up.add_argument("--threads", type=int, default=d.backend_threads,
                    help="inference threads per runner")
    up.add_argument("--sim-batch-ms", type=float, default=d.sim_batch_ms)
    up.add_argument("--sim-token-us", type=float, default=d.sim_token_us)
    up.add_argument("--tenants", type=int, default=3, help="tenants, each with one API key")
    up.add_argument("--for", dest="seconds", type=float, default=0,
                    help="stop after this many seconds (default: run until Ctrl-C)")
    return p.parse_args(argv)


def state_dir(given: Path | None) -> Path:
    if given is None:
        return Path(tempfile.mkdtemp(prefix="inferq-topology-"))
    if given.exists() and any(given.iterdir()):
        raise SystemExit(f"{given} is not empty: remove it or choose another --dir")
    given.mkdir(parents=True, exist_ok=True)
    return given.resolve()


async def smoke(topo: Topology, key: str, within: float = 60) -> None:
    """One item through every gateway, to a terminal status: the whole path works."""
    deadline = time.monotonic() + within
    for url in topo.gateway_urls:
        async with httpx.AsyncClient(base_url=url, timeout=30,
                                     headers={"Authorization": f"Bearer {key}"}) as c:
            r = await c.post("/v1/jobs", json={"model": "minilm", "input": {"text": "hello"}})
            r.raise_for_status()
            job = r.json()["job_id"]
            while (doc := (await c.get(f"/v1/jobs/{job}")).json())["status"] not in TERMINAL_JOB:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"smoke job {job} on {url} not done in {within}s: {doc}")
                await asyncio.sleep(0.1)
            if doc["status"] != "succeeded":
                raise RuntimeError(f"smoke job {job} on {url} ended {doc['status']}: {doc}")


def summary(topo: Topology, keys: dict[str, str], took: float) -> str:
    s, spec = topo.settings, topo.spec
    assert s is not None
    nats = (f"{spec.nats_nodes}-node cluster, streams R{s.stream_replicas}; monitoring "
            + " ".join(n.monitor for n in topo.nats_cluster.nodes)) if topo.nats_cluster \
        else "one server, streams R1"
    lines = [
        f"inferq topology up in {took:.0f} s; state and logs in {topo.root}",
        f"  gateways    {'  '.join(topo.gateway_urls)}",
        f"  schedulers  metrics {' '.join(r.url for r in topo.of('scheduler'))}",
        f"  runners     {spec.backend}, metrics {' '.join(r.url for r in topo.of('runner'))}",
        f"  nats        {s.nats_url}  ({nats})",
        f"  redis       {s.redis_url}",
        f"  results     {s.results_url}",
        f"  api keys    {topo.root / 'api-keys'} (tenants {', '.join(keys)})",
        "",
        f"export INFERQ_LOADTEST_KEYS={','.join(keys.values())}",
        "locust -f loadtest/locustfile.py --headless -u 20 -r 5 -t 2m "
        f"--host {topo.gateway_urls[0]}",
        "",
        "Ctrl-C (or SIGTERM) stops everything; a role that dies is restarted meanwhile.",
    ]
    return "\n".join(lines)


async def up(topo: Topology, keys: dict[str, str], seconds: float) -> int:
    """Start, prove, print, supervise until a signal (or ``seconds``), stop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    t0 = time.monotonic()
    try:
        from models.build import ensure_default_model

        print(f"starting the topology in {topo.root} ...", flush=True)
        await asyncio.to_thread(ensure_default_model, topo.model_repo)
        await asyncio.to_thread(topo.start)
        await topo.ready()
        await smoke(topo, next(iter(keys.values())))
        print(summary(topo, keys, time.monotonic() - t0), flush=True)
        supervisor = asyncio.create_task(topo.supervise())
        try:
            await asyncio.wait_for(stop.wait(), seconds or None)
        except TimeoutError:
            pass
        supervisor.cancel()
        restarts = {r.name: r.crashes for r in topo.roles if r.crashes}
        print(f"stopping; roles restarted while up: {restarts or 'none'}", flush=True)
        return 0
    finally:
        await asyncio.to_thread(topo.stop)


def main(argv: list[str] | None = None) -> int:
    """The entry point: settings from the arguments and the environment, then :func:`up`."""
    args = parse(argv)
    root = state_dir(args.dir)
    keys = {f"load{i}": f"lt_{secrets.token_urlsafe(24)}" for i in range(args.tenants)}
    key_file = root / "api-keys"
    key_file.write_text("".join(f"{t} {k}\n" for t, k in keys.items()))
    key_file.chmod(0o600)
    spec = TopologySpec(nats_nodes=args.nats_nodes, gateways=args.gateways,
                        schedulers=args.schedulers, runners=args.runners, results=args.results,
                        backend=args.backend, backend_threads=args.threads,
                        sim_batch_ms=args.sim_batch_ms, sim_token_us=args.sim_token_us,
                        nats_sync_always=args.nats_sync)
    java_home = os.environ.get("JAVA_HOME")
    topo = Topology(root, spec, keys=keys,
                    model_repo=Path(Settings.load().model_repo).expanduser(),
                    cassandra_home=home_from(os.environ),
                    java_home=Path(java_home) if java_home else None)
    try:
        return asyncio.run(up(topo, keys, args.seconds))
    except EmbeddedServerError as exc:  # Java or the node missing, a server that did not start
        print(f"loadtest.topology: {exc}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as exc:
        print(f"loadtest.topology: {' '.join(exc.cmd[1:])} failed:\n"
              f"{(exc.stderr or b'').decode(errors='replace')[-2000:]}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
