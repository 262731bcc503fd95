"""The chaos tests' view of a JetStream cluster (inferq/nats_cluster.py): a check that the
stream replicas agree on every node."""

from __future__ import annotations

import asyncio
import time

from inferq.nats_cluster import NatsCluster as _Cluster


class NatsCluster(_Cluster):
    """The cluster, plus ``replicas_agree``."""

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
