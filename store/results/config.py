"""Where each result store lives, parsed from ``INFERQ_RESULTS_URL``; imports no driver.

``sqlite_path`` reads a ``sqlite://`` URL; :class:`CassandraConfig` holds everything the
Cassandra store needs (contact points, keyspace layout, consistency), built from a
``cassandra://`` URL. See :mod:`store.results` for the URL forms.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote

from core.tls import TlsFiles

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,47}$")  # a CQL keyspace name
_HOST = re.compile(r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:\[\]]+))(?::(?P<port>\d{1,5}))?")
_DC = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_CONSISTENCY = {"ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM", "EACH_QUORUM",
                "LOCAL_ONE"}


@dataclass(frozen=True)
class CassandraConfig:
    """How to reach and lay out the Cassandra result store (built from the URL)."""

    hosts: tuple[str, ...]
    """Contact points; the driver discovers the rest of the ring from them."""
    keyspace: str
    """Keyspace holding the tables; ``migrate()`` creates it with ``replication``."""
    port: int = 9042
    """The CQL native port, the same on every contact point."""
    local_dc: str | None = None
    """Datacenter that serves this process's requests; None: the first contact point's."""
    replication: tuple[tuple[str, int], ...] = ()
    """(datacenter, replicas) pairs for NetworkTopologyStrategy. Empty means 3 replicas in
    ``local_dc`` (or ``datacenter1``): production's RF3. A one-node dev cluster needs 1."""
    consistency: str = "LOCAL_QUORUM"
    """Reads and writes: a majority of local replicas, so a read sees every acked write."""
    serial_consistency: str = "SERIAL"
    """Lightweight transactions: SERIAL (Paxos across datacenters) keeps idempotency keys
    exactly-once globally; LOCAL_SERIAL is faster but only exact within one datacenter."""
    protocol_version: int = 5
    """CQL native protocol, pinned: Cassandra 4.0+ speaks v5 (3.x needs 4). Left to the driver
    it opens with newer (beta and DSE) versions and downgrades with a warning each connect."""
    request_timeout_s: float = 10.0
    """Per query: long enough for a Paxos round under load, short enough to fail a request
    while its client still waits."""
    connect_timeout_s: float = 10.0
    """Per connection attempt at start-up (the store connects on first use)."""
    retention_s: float = 7 * 86400
    """How far back ``list_jobs`` looks (and the TTL of items whose job is gone); set it to
    at least the longest job retention."""
    recovery_lookback_s: float = 3600.0
    """How far before ``older_than`` ``unpublished_jobs`` searches; a job left unpublished
    longer than this is no longer recovered (one small read per minute of lookback)."""
    username: str | None = None
    """Plain-text authentication; None connects without credentials."""
    password: str | None = field(default=None, repr=False)
    """Kept out of ``repr`` so it never reaches a log line."""
    tls: TlsFiles | None = None
    """Client TLS (``client_encryption_options`` on the nodes): the server's certificate is
    verified against ``tls.ca`` (else the system's trust store), with the contact point's
    address as its name. None: plain connections."""

    def __post_init__(self) -> None:
        if not self.hosts or not all(self.hosts):
            raise ValueError("Cassandra needs at least one contact point")
        if not _NAME.match(self.keyspace):
            raise ValueError(f"invalid Cassandra keyspace name {self.keyspace!r}")
        for dc, replicas in self.replication:
            if not _DC.match(dc) or replicas < 1:
                raise ValueError(f"invalid replication {dc}:{replicas}")
        if self.local_dc is not None and not _DC.match(self.local_dc):
            raise ValueError(f"invalid datacenter name {self.local_dc!r}")
        if self.consistency not in _CONSISTENCY:
            raise ValueError(f"invalid consistency {self.consistency!r}")
        if self.protocol_version not in (3, 4, 5):
            raise ValueError(f"invalid CQL protocol version {self.protocol_version!r} (3, 4, 5)")
        if self.serial_consistency not in ("SERIAL", "LOCAL_SERIAL"):
            raise ValueError(f"invalid serial consistency {self.serial_consistency!r}")

    def replication_cql(self) -> str:
        """The keyspace's replication map as CQL."""
        pairs = self.replication or ((self.local_dc or "datacenter1", 3),)
        dcs = ", ".join(f"'{dc}': {n}" for dc, n in pairs)
        return "{'class': 'NetworkTopologyStrategy', " + dcs + "}"

    @classmethod
    def from_url(cls, url: str) -> CassandraConfig:
        """Parse ``cassandra://[user:pass@]h1,h2[:port]/keyspace[?options]``."""
        m = re.fullmatch(r"cassandra://(?:(?P<auth>[^@/]*)@)?(?P<hosts>[^/?]+)/(?P<ks>[^/?]+)"
                         r"(?:\?(?P<query>.*))?", url)
        if m is None:
            raise ValueError(f"not a cassandra://host1,host2[:port]/keyspace URL: {url!r}")
        kwargs: dict = {"keyspace": m["ks"]}
        if m["auth"]:
            user, _, password = m["auth"].partition(":")
            kwargs.update(username=unquote(user), password=unquote(password) or None)
        hosts, ports = [], set()
        for part in m["hosts"].split(","):
            hp = _HOST.fullmatch(part)
            if hp is None:
                raise ValueError(f"invalid Cassandra contact point {part!r} in {url!r}")
            hosts.append(hp["v6"] or hp["host"])
            if hp["port"]:
                ports.add(int(hp["port"]))
        if len(ports) > 1:
            raise ValueError(f"all Cassandra contact points must share one port: {url!r}")
        kwargs.update(hosts=tuple(hosts), port=ports.pop() if ports else 9042)
        options = {"dc": ("local_dc", str), "replication": ("replication", _replication),
                   "consistency": ("consistency", str.upper),
                   "serial_consistency": ("serial_consistency", str.upper),
                   "timeout_s": ("request_timeout_s", float), "protocol": ("protocol_version", int),
                   "retention_s": ("retention_s", float),
                   "lookback_s": ("recovery_lookback_s", float)}
        tls: dict[str, str] = {}
        known = sorted([*options, "tls", *_TLS_OPTIONS])
        for name, value in parse_qsl(m["query"] or "", keep_blank_values=True):
            if name == "tls" or name in _TLS_OPTIONS:
                tls[name] = value
                continue
            if name not in options:
                raise ValueError(f"unknown Cassandra URL option {name!r}; known: {known}")
            attr, parse = options[name]
            kwargs[attr] = parse(value)
        on = tls.pop("tls", "true" if tls else "false").lower()
        if on not in ("true", "false", "1", "0"):
            raise ValueError(f"Cassandra URL option tls must be true or false, got {on!r}")
        if on in ("true", "1"):
            kwargs["tls"] = TlsFiles(**{_TLS_OPTIONS[k]: v for k, v in tls.items()})
        elif tls:
            raise ValueError("Cassandra URL sets tls=false and TLS files")
        return cls(**kwargs)


_TLS_OPTIONS = {"tls_ca": "ca", "tls_cert": "cert", "tls_key": "key"}


def _replication(value: str) -> tuple[tuple[str, int], ...]:
    try:
        return tuple((dc, int(n)) for dc, _, n in (p.partition(":") for p in value.split(",")))
    except ValueError:
        raise ValueError(f"replication must look like dc1:3,dc2:3, got {value!r}") from None


def sqlite_path(url: str) -> str:
    """The file path of a ``sqlite://`` URL (see :mod:`store.results` for the forms)."""
    if not url.startswith("sqlite:///") or len(url) == len("sqlite:///"):
        raise ValueError(f"not a sqlite:///path/to/results.db URL: {url!r}")
    rest = unquote(url[len("sqlite:///"):].split("?", 1)[0])
    if rest.startswith("/"):  # sqlite:////abs/path (SQLAlchemy's absolute form)
        return rest
    if rest.startswith(("./", "../")) or "/" not in rest:  # sqlite:///results.db
        return rest
    return "/" + rest  # sqlite:///abs/path/results.db
