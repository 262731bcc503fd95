"""A local Apache Cassandra node, for the tests and ``inferq dev --results cassandra``.

The node is ``cassandra-all`` with its runtime dependencies, fetched once from Maven Central
by ``scripts/fetch_cassandra.sh`` into ``~/.cache/inferq/cassandra/<version>/lib``, and run as
``java -cp 'lib/*' org.apache.cassandra.service.CassandraDaemon`` with the Java 17 options of
Cassandra's own ``conf/jvm17-server.options``: no Docker, no tarball, no install. Everything it
writes (a ``cassandra.yaml`` tuned small, data, commit log, logs) lives under one folder.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import struct
import time
from collections.abc import Mapping
from pathlib import Path

from inferq.embedded import (
    EmbeddedServerError,
    ServerProcess,
    ServerTls,
    free_port,
    write_private,
)

CASSANDRA_VERSION = "5.0.6"
FETCH_COMMAND = "scripts/fetch_cassandra.sh"
"""The command (from the repository root) that fetches the node into the cache."""
MAIN_CLASS = "org.apache.cassandra.service.CassandraDaemon"

# conf/jvm17-server.options of Cassandra 5.0 (its JPMS section): the daemon reaches into
# these JDK internals (Unsafe, direct buffers, class loading) and fails without them.
JVM17_OPTIONS = [
    "-Djdk.attach.allowAttachSelf=true",
    *(f"--add-exports={m}=ALL-UNNAMED" for m in (
        "java.base/jdk.internal.misc", "java.management.rmi/com.sun.jmx.remote.internal.rmi",
        "java.rmi/sun.rmi.registry", "java.rmi/sun.rmi.server", "java.sql/java.sql",
        "java.base/java.lang.ref", "jdk.unsupported/sun.misc",
        "jdk.compiler/com.sun.tools.javac.file", "jdk.attach/sun.tools.attach")),
    *(f"--add-opens={m}=ALL-UNNAMED" for m in (
        "java.base/java.lang.module", "java.base/jdk.internal.loader",
        "java.base/jdk.internal.ref", "java.base/jdk.internal.reflect",
        "java.base/jdk.internal.math", "java.base/jdk.internal.module",
        "java.base/jdk.internal.util.jar", "jdk.management/com.sun.management.internal",
        "java.base/sun.nio.ch", "java.base/java.io", "java.base/java.lang.reflect",
        "jdk.compiler/com.sun.tools.javac", "java.base/java.lang", "java.base/java.util")),
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Dio.netty.allocator.useCacheForAllThreads=true",
    "-Dio.netty.allocator.maxOrder=11",
]


class CassandraNodeMissing(EmbeddedServerError):
    """Java or the fetched node is not on this machine; the message says how to get it."""


def default_home(version: str = CASSANDRA_VERSION, cache_root: Path | None = None) -> Path:
    """Where ``scripts/fetch_cassandra.sh`` puts a release: ``~/.cache/inferq/cassandra/<v>``."""
    root = cache_root or Path.home() / ".cache" / "inferq" / "cassandra"
    return root / version


def home_from(environ: Mapping[str, str]) -> Path:
    """The node's home as ``scripts/fetch_cassandra.sh`` chose it from the same variables:
    ``INFERQ_CASSANDRA_VERSION`` and ``INFERQ_CASSANDRA_CACHE`` (entry points pass their
    environment)."""
    cache = environ.get("INFERQ_CASSANDRA_CACHE")
    return default_home(environ.get("INFERQ_CASSANDRA_VERSION") or CASSANDRA_VERSION,
                        Path(cache) if cache else None)


def locate(home: Path, java_home: Path | None = None) -> tuple[Path, Path]:
    """The java executable and the node's ``lib`` folder; CassandraNodeMissing if either is not
    there. Java comes from ``java_home``, else PATH, and must be 11 or 17: Cassandra 5.0 runs
    on nothing newer (it installs a SecurityManager, which Java 24 removed)."""
    lib = home / "lib"
    if not (lib / ".complete").is_file():
        raise CassandraNodeMissing(f"no Cassandra node fetched in {home}: run {FETCH_COMMAND}")
    found = shutil.which("java")
    candidates = [java_home / "bin" / "java"] if java_home else []
    candidates += [Path(found)] if found else []
    seen = []
    for java in candidates:
        major = java_major(java)
        if major in (11, 17):
            return java, lib
        seen.append(f"{java} is Java {major or '?'}")
    raise CassandraNodeMissing("Cassandra 5.0 needs Java 11 or 17 (set JAVA_HOME; Debian: "
                               "apt-get install openjdk-17-jre-headless)"
                               + (f": {'; '.join(seen)}" if seen else ": no java on PATH"))


def java_major(java: Path) -> int | None:
    """The major version of a JDK's java, from the ``release`` file beside its ``bin``."""
    release = java.resolve().parent.parent / "release"
    try:
        text = release.read_text()
    except OSError:
        return None
    version = text.partition('JAVA_VERSION="')[2].partition('"')[0]
    head = version.split(".")[0]
    return int(head) if head.isdigit() else None


def _commitlog(durable: bool) -> str:
    if durable:
        return "commitlog_sync: group\ncommitlog_sync_group_window: 10ms"
    return "commitlog_sync: periodic\ncommitlog_sync_period: 10000ms"


def _client_tls(tls: ServerTls | None, data: Path) -> str:
    """``client_encryption_options`` with Cassandra 5's PEM support: the node's key (PKCS#8,
    unencrypted) and certificate chain in one file, the CA of client certificates when it
    verifies them. TLS only (``optional: false``): a plain client is refused."""
    if tls is None:
        return ""
    keystore = data / "client-keystore.pem"
    write_private(keystore, tls.key.read_text() + tls.cert.read_text())
    lines = ["client_encryption_options:", "  enabled: true", "  optional: false",
             "  ssl_context_factory:",
             "    class_name: org.apache.cassandra.security.PEMBasedSslContextFactory",
             f'  keystore: "{keystore}"',
             f"  require_client_auth: {'true' if tls.verify_clients else 'false'}"]
    if tls.ca:
        lines.append(f'  truststore: "{tls.ca}"')
    return "\n".join(lines) + "\n"


def _yaml(data: Path, host: str, native_port: int, storage_port: int, durable: bool) -> str:
    # One token, small memtables and caches, a periodic commit log unless ``durable`` (no fsync
    # wait per write):
    # a node that starts in seconds on two cores. Timeouts are a little above the defaults so
    # a CI machine busy with other tests does not turn slowness into failures. Paxos v2, as
    # deploy/cassandra/production.cql advises, so the LWTs tested are the ones production runs.
    return f"""\
cluster_name: inferq-local
num_tokens: 1
initial_token: 0
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "{host}:{storage_port}"
listen_address: {host}
rpc_address: {host}
storage_port: {storage_port}
native_transport_port: {native_port}
start_native_transport: true
data_file_directories: ["{data / 'data'}"]
commitlog_directory: "{data / 'commitlog'}"
saved_caches_directory: "{data / 'saved_caches'}"
hints_directory: "{data / 'hints'}"
cdc_raw_directory: "{data / 'cdc_raw'}"
{_commitlog(durable)}
commitlog_segment_size: 8MiB
memtable_heap_space: 64MiB
memtable_offheap_space: 64MiB
file_cache_size: 64MiB
key_cache_size: 8MiB
concurrent_reads: 8
concurrent_writes: 8
concurrent_counter_writes: 4
concurrent_compactors: 1
hinted_handoff_enabled: false
dynamic_snitch: false
auto_snapshot: false
storage_compatibility_mode: NONE
paxos_variant: v2
paxos_state_purging: repaired
read_request_timeout: 5000ms
range_request_timeout: 10000ms
write_request_timeout: 5000ms
cas_contention_timeout: 2000ms
"""


_LOGBACK = """\
<configuration>
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>{log}</file>
    <encoder><pattern>%-5level [%thread] %date{{ISO8601}} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="FILE"/></root>
</configuration>
"""


def cassandra_node(data_dir: Path, home: Path, *, java: Path, native_port: int | None = None,
                   storage_port: int | None = None, host: str = "127.0.0.1",
                   heap_mb: int = 512, log_path: Path | None = None,
                   durable: bool = False, tls: ServerTls | None = None) -> ServerProcess:
    """A one-node cluster (datacenter ``datacenter1``) with everything under ``data_dir``.

    Free ports by default: the CQL port is the process's ``port``; the storage port (gossip,
    never contacted from outside) only appears in the written ``cassandra.yaml``. The node's
    own log is ``data_dir/system.log``; ``log_path`` gets the JVM's stdout and stderr.
    ``durable``: group commit (every acknowledged write fsynced within 10 ms) instead of a
    periodic commit log, which a SIGKILL can roll back by up to its 10 s period, losing writes
    the node had acknowledged: what a node holding results it alone has must use.
    ``tls``: CQL clients must connect with TLS (``tls.key`` in PKCS#8 PEM).
    """
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    native_port = native_port or free_port(host)
    while storage_port is None or storage_port == native_port:
        storage_port = free_port(host)
    conf = data_dir / "cassandra.yaml"
    conf.write_text(_yaml(data_dir, host, native_port, storage_port, durable)
                    + _client_tls(tls, data_dir))
    logback = data_dir / "logback.xml"
    logback.write_text(_LOGBACK.format(log=data_dir / "system.log"))
    argv = [
        str(java), f"-Xms{heap_mb}m", f"-Xmx{heap_mb}m", "-Xss256k", "-XX:+UseG1GC",
        "-XX:+ExitOnOutOfMemoryError", *JVM17_OPTIONS,
        f"-Dcassandra.config={conf.as_uri()}", f"-Dcassandra.storagedir={data_dir}",
        f"-Dcassandra.logdir={data_dir}", f"-Dlogback.configurationFile={logback}",
        "-Dcassandra-foreground=yes",
        # One node: no peers to wait for, so skip the gossip and ring settling delays.
        "-Dcassandra.skip_wait_for_gossip_to_settle=0", "-Dcassandra.ring_delay_ms=0",
        "-Dcassandra.superuser_setup_delay_ms=0",
        "-cp", f"{home / 'lib'}/*", MAIN_CLASS,
    ]
    return ServerProcess("cassandra", argv, host, native_port, log_path)


def cql_ready(host: str, port: int, timeout: float = 2.0) -> bool:
    """Whether the node answers a CQL OPTIONS request with SUPPORTED (protocol v4 framing),
    in plain text or, for a node that requires it, over TLS (a readiness probe only: the
    certificate is not verified here)."""
    return _options(host, port, timeout, None) or _options(host, port, timeout, _PROBE_TLS)


_PROBE_TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
_PROBE_TLS.check_hostname = False
_PROBE_TLS.verify_mode = ssl.CERT_NONE


def _options(host: str, port: int, timeout: float, tls: ssl.SSLContext | None) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            s = tls.wrap_socket(raw) if tls else raw
            s.sendall(struct.pack(">BBhBi", 0x04, 0, 0, 0x05, 0))  # OPTIONS, stream 0
            head = s.recv(9)
    except OSError:  # ssl.SSLError included
        return False
    return len(head) == 9 and head[0] == 0x84 and head[4] == 0x06  # response v4, SUPPORTED


def start_node(node: ServerProcess, timeout: float = 120.0) -> ServerProcess:
    """Start ``node`` and wait until CQL answers; on failure stop it and raise with the tail of
    its log (the daemon says why it refused to start)."""
    deadline = time.monotonic() + timeout
    try:
        node.start(timeout=timeout)
        while not cql_ready(node.host, node.port):
            if time.monotonic() > deadline or not node.running:
                raise EmbeddedServerError(f"Cassandra did not answer CQL on port {node.port}")
            time.sleep(0.2)
    except BaseException as exc:  # an error, or Ctrl-C while waiting: no orphan JVM
        node.stop()
        if isinstance(exc, EmbeddedServerError):
            raise EmbeddedServerError(f"{exc}\n{_log_tail(node)}") from exc
        raise
    return node


def _log_tail(node: ServerProcess, lines: int = 30) -> str:
    conf = next((a for a in node.argv if a.startswith("-Dcassandra.logdir=")), "")
    logs = [Path(conf.partition("=")[2]) / "system.log", node.log_path]
    text = []
    for log in logs:
        if log is not None and log.is_file():
            text += log.read_text(errors="replace").splitlines()[-lines:]
    return "\n".join(text)


def dev_node(state: Path, home: Path, java_home: Path | None) -> tuple[str, ServerProcess]:
    """``inferq dev --results cassandra``: a local node with its data under ``state/cassandra``,
    on the ports it had last time when they are still free; its URL (keyspace ``inferq``, one
    replica) and the running node. CassandraNodeMissing when Java or the node is not here."""
    java, _ = locate(home, java_home)
    data = state / "cassandra"
    data.mkdir(parents=True, exist_ok=True)
    ports_file = data / "ports"
    ports = [int(p) for p in ports_file.read_text().split()] if ports_file.is_file() else []
    if len(ports) != 2 or not all(_port_free(p) for p in ports):
        ports = [free_port(), 0]
        while ports[1] in (0, ports[0]):
            ports[1] = free_port()
    ports_file.write_text(f"{ports[0]} {ports[1]}\n")
    node = cassandra_node(data, home, java=java, native_port=ports[0], storage_port=ports[1],
                          log_path=state / "logs" / "cassandra.log", durable=True)
    start_node(node)
    url = f"cassandra://{node.host}:{node.port}/inferq?dc=datacenter1&replication=datacenter1:1"
    return url, node


def _port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True
