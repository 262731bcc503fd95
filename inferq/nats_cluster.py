"""A JetStream cluster of nats-server processes on loopback: the production topology on one
machine (``python -m loadtest.topology``) and the chaos tests run on it. Nodes can be
SIGKILLed and restarted on the same ports and store directories.

Each node gets a config file with ``server_name``, a ``cluster {name, listen, routes}`` block
naming every node's route port, ``jetstream {store_dir}`` (with ``sync_interval: always``
when asked, as in production) and an HTTP monitoring port, whose ``/jsz`` reports the node's
*own* replica of every stream (its local store, not the leader's).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from inferq.embedded import ServerProcess, free_port, nats_server_binary

CLUSTER_NAME = "inferq-chaos"


@dataclass
class NatsNode:
    """One node: its server process and monitoring port."""

    name: str
    server: ServerProcess
    monitor_port: int

    @property
    def url(self) -> str:
        return f"nats://{self.server.host}:{self.server.port}"

    @property
    def monitor(self) -> str:
        return f"http://{self.server.host}:{self.monitor_port}"


def node_config(name: str, port: int, cluster_port: int, monitor_port: int,
                route_ports: list[int], store_dir: Path, host: str = "127.0.0.1",
                sync_always: bool = False) -> str:
    """One node's configuration file."""
    routes = ", ".join(f"nats-route://{host}:{p}" for p in route_ports)
    sync = "\n  sync_interval: always" if sync_always else ""
    return (
        f"server_name: {name}\n"
        f"listen: {host}:{port}\n"
        f"http: {host}:{monitor_port}\n"
        "max_payload: 8MB\n"
        f'jetstream {{\n  store_dir: "{store_dir}"{sync}\n}}\n'
        f"cluster {{\n  name: {CLUSTER_NAME}\n  listen: {host}:{cluster_port}\n"
        f"  routes: [{routes}]\n}}\n"
    )


class NatsCluster:
    """Three (or ``size``) nats-server processes forming one JetStream cluster."""

    def __init__(self, root: Path, size: int = 3, log_dir: Path | None = None,
                 host: str = "127.0.0.1", *, sync_always: bool = False):
        ports = [(free_port(host), free_port(host), free_port(host)) for _ in range(size)]
        routes = [c for _, c, _ in ports]
        self.nodes: list[NatsNode] = []
        for i, (port, cluster_port, monitor_port) in enumerate(ports):
            name = f"n{i + 1}"
            data = root / name
            data.mkdir(parents=True, exist_ok=True)
            conf = data / "nats.conf"
            conf.write_text(node_config(name, port, cluster_port, monitor_port, routes,
                                        data / "js", host, sync_always))
            log = (log_dir / f"nats-{name}.log") if log_dir else None
            argv = [str(nats_server_binary()), "-c", str(conf)]
            self.nodes.append(NatsNode(name, ServerProcess(f"nats-server {name}", argv, host,
                                                           port, log), monitor_port))

    @property
    def url(self) -> str:
        """Every node, comma separated (INFERQ_NATS_URL)."""
        return ",".join(n.url for n in self.nodes)

    def start(self) -> NatsCluster:
        """Start every node (they find each other over their routes)."""
        for n in self.nodes:
            n.server.start()
        return self

    def stop(self) -> None:
        """Stop every node."""
        for n in self.nodes:
            n.server.stop()

    async def healthy(self, within: float = 60.0) -> None:
        """Every node answers ``/healthz`` ok: JetStream enabled and current with the meta
        group (and, after a restart, caught up on the streams it holds)."""
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(timeout=2) as c:
            for n in self.nodes:
                while True:
                    try:
                        r = await c.get(f"{n.monitor}/healthz")
                        if r.status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        raise AssertionError(f"nats node {n.name} not healthy in {within}s")
                    await asyncio.sleep(0.2)

    async def replica_states(self) -> dict[str, dict[str, dict]]:
        """Per node, per stream: the node's own replica's state and what it knows of the
        cluster (leader, followers' ``current`` / ``lag``), from ``/jsz``."""
        out: dict[str, dict[str, dict]] = {}
        async with httpx.AsyncClient(timeout=5) as c:
            for n in self.nodes:
                r = await c.get(f"{n.monitor}/jsz",
                                params={"streams": "true", "consumers": "true"})
                r.raise_for_status()
                streams: dict[str, dict] = {}
                for acc in r.json().get("account_details") or []:
                    for s in acc.get("stream_detail") or []:
                        streams[s["name"]] = s
                out[n.name] = streams
        return out
