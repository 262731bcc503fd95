"""A 3-node JetStream cluster on loopback for chaos tests: nodes that can be SIGKILLed and
restarted on the same ports and store directories, and a check that the stream replicas agree.

Each node gets a config file with ``server_name``, a ``cluster {name, listen, routes}`` block
naming every node's route port, ``jetstream {store_dir}`` and an HTTP monitoring port, whose
``/jsz`` reports the node's *own* replica of every stream (its local store, not the leader's).
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
                route_ports: list[int], store_dir: Path, host: str = "127.0.0.1") -> str:
    routes = ", ".join(f"nats-route://{host}:{p}" for p in route_ports)
    return (
        f"server_name: {name}\n"
        f"listen: {host}:{port}\n"
        f"http: {host}:{monitor_port}\n"
        "max_payload: 8MB\n"
        f'jetstream {{\n  store_dir: "{store_dir}"\n}}\n'
        f"cluster {{\n  name: {CLUSTER_NAME}\n  listen: {host}:{cluster_port}\n"
        f"  routes: [{routes}]\n}}\n"
    )


class NatsCluster:
    """Three (or ``size``) nats-server processes forming one JetStream cluster."""

    def __init__(self, root: Path, size: int = 3, log_dir: Path | None = None,
                 host: str = "127.0.0.1"):
        ports = [(free_port(host), free_port(host), free_port(host)) for _ in range(size)]
        routes = [c for _, c, _ in ports]
        self.nodes: list[NatsNode] = []
        for i, (port, cluster_port, monitor_port) in enumerate(ports):
            name = f"n{i + 1}"
            data = root / name
            data.mkdir(parents=True, exist_ok=True)
            conf = data / "nats.conf"
            conf.write_text(node_config(name, port, cluster_port, monitor_port, routes,
                                        data / "js", host))
            log = (log_dir / f"nats-{name}.log") if log_dir else None
            argv = [str(nats_server_binary()), "-c", str(conf)]
            self.nodes.append(NatsNode(name, ServerProcess(f"nats-server {name}", argv, host,
                                                           port, log), monitor_port))

    @property
    def url(self) -> str:
        """Every node, comma separated (INFERQ_NATS_URL)."""
        return ",".join(n.url for n in self.nodes)

    def start(self) -> NatsCluster:
        for n in self.nodes:
            n.server.start()
        return self

    def stop(self) -> None:
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

    async def replicas_agree(self, within: float = 60.0) -> dict[str, dict]:
        """Wait until every node holds every stream with the same state; return it.

        "Agree" means: each stream has a replica on every node; on every node its message
        count, bytes, first and last sequence are identical; every node names the same
        leader, and the leader sees its followers current with zero lag; and every durable
        consumer's ack floor, delivered sequence and pending count are identical on every node
        (consumer state is replicated too: a new leader resumes where the old one acked)."""
        deadline = time.monotonic() + within
        last: object = None
        while True:
            states = await self.replica_states()
            verdict = _agreement(states, len(self.nodes))
            if isinstance(verdict, dict):
                return verdict
            last = verdict
            if time.monotonic() > deadline:
                raise AssertionError(f"replicas disagree after {within}s: {last}")
            await asyncio.sleep(0.5)


def _stream_key(s: dict) -> tuple:
    st = s.get("state") or {}
    return (st.get("messages"), st.get("bytes"), st.get("first_seq"), st.get("last_seq"))


def _consumer_keys(s: dict) -> dict[str, tuple]:
    out = {}
    for c in s.get("consumer_detail") or []:
        out[c["name"]] = ((c.get("ack_floor") or {}).get("stream_seq"),
                          (c.get("delivered") or {}).get("stream_seq"),
                          c.get("num_pending"))
    return out


def _agreement(states: dict[str, dict[str, dict]], size: int) -> dict[str, dict] | str:
    """The agreed state per stream, or why the replicas disagree (yet)."""
    names = set().union(*(set(s) for s in states.values()))
    agreed: dict[str, dict] = {}
    for name in sorted(names):
        holders = {node: s[name] for node, s in states.items() if name in s}
        if len(holders) != size:
            return f"{name}: replicas on {sorted(holders)} only"
        keys = {node: _stream_key(s) for node, s in holders.items()}
        if len(set(keys.values())) != 1:
            return f"{name}: state differs (messages, bytes, first, last) {keys}"
        leaders = {node: (s.get("cluster") or {}).get("leader") for node, s in holders.items()}
        if len(set(leaders.values())) != 1 or None in leaders.values():
            return f"{name}: leaders {leaders}"
        leader = next(iter(leaders.values()))
        if leader not in holders:
            return f"{name}: leader {leader} is not one of the nodes"
        # Only the leader tracks its followers (a follower reports the others as not current).
        for r in (holders[leader].get("cluster") or {}).get("replicas") or []:
            if not r.get("current") or r.get("lag", 0):
                return f"{name}: leader {leader} sees replica {r.get('name')} behind: {r}"
        consumers = {node: _consumer_keys(s) for node, s in holders.items()}
        for cname in set().union(*(set(c) for c in consumers.values())):
            seen = {node: c.get(cname) for node, c in consumers.items() if cname in c}
            if len(set(seen.values())) != 1:
                return f"{name}/{cname}: consumer state differs (ack floor, delivered) {seen}"
        messages, nbytes, first, last = next(iter(keys.values()))
        agreed[name] = {"messages": messages, "bytes": nbytes, "first_seq": first,
                        "last_seq": last, "leader": leader,
                        "consumers": len(next(iter(consumers.values())))}
    return agreed
