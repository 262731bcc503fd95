"""The Cassandra driver behind the store: connecting, awaiting its futures, and its errors.

Queries are sent with ``Session.execute_async``; the driver's callbacks (its own I/O thread)
settle asyncio futures on the caller's loop. Reads and writes use the configured consistency
(LOCAL_QUORUM), lightweight transactions the serial one; paging is off (every query is bounded).
The protocol version is pinned (the driver otherwise probes newer ones and downgrades).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import cassandra
import cassandra.protocol as proto
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable
from cassandra.connection import ConnectionException
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
from cassandra.query import (
    BatchStatement,
    BatchType,
    PreparedStatement,
    Statement,
    dict_factory,
)

from store.results.base import StoreError, StoreUnavailable
from store.results.cassandra.statements import STATEMENTS
from store.results.config import CassandraConfig

log = logging.getLogger("inferq.store.cassandra")

_TRANSIENT = (cassandra.Unavailable, cassandra.Timeout, cassandra.CoordinationFailure,
              cassandra.OperationTimedOut, cassandra.UnresolvableContactPoints, NoHostAvailable,
              ConnectionException, proto.OverloadedErrorMessage,
              proto.IsBootstrappingErrorMessage, proto.ServerError)
CAS_WRITE_UNKNOWN = 0x1700
"""Protocol v5's error for a Paxos round whose outcome the coordinator cannot tell; the driver
has no class for it, so it arrives as a bare ErrorMessage with this code."""


def outcome_unknown(exc: BaseException) -> bool:
    """Whether a lightweight transaction that raised ``exc`` may still have applied.

    A write timeout (in Paxos' propose phase, write type CAS, or its commit, SIMPLE), a
    ``CAS_WRITE_UNKNOWN`` and a client-side timeout all leave it open; only a SERIAL read of
    the row, which finishes any accepted proposal first, can tell. An Unavailable or a read
    timeout comes before any proposal: that LWT did not apply.
    """
    if isinstance(exc, cassandra.WriteTimeout | cassandra.OperationTimedOut):
        return True
    return isinstance(exc, proto.ErrorMessage) and exc.code == CAS_WRITE_UNKNOWN


def translate(exc: BaseException) -> StoreError | None:
    """The one place that turns driver exceptions into StoreError subclasses.

    None for anything that is not the driver's (a bug in our code stays a bug). The
    store resolves an LWT of unknown outcome by reading back; one that reaches here (the
    read failed too) is retryable, because every LWT here is a compare-and-set that a
    retry re-evaluates.
    """
    if isinstance(exc, _TRANSIENT) or outcome_unknown(exc):
        return StoreUnavailable(f"Cassandra result store is unavailable: {exc!r}")
    if isinstance(exc, cassandra.DriverException | proto.ErrorMessage):
        return StoreError(f"Cassandra result store failed: {exc!r}")
    return None


def connect(config: CassandraConfig) -> tuple[Cluster, Any]:
    """A cluster and its session for ``config`` (blocking: run it in a thread)."""
    levels = cassandra.ConsistencyLevel.name_to_value
    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=config.local_dc)),
        consistency_level=levels[config.consistency],
        serial_consistency_level=levels[config.serial_consistency],
        request_timeout=config.request_timeout_s, row_factory=dict_factory)
    auth = PlainTextAuthProvider(config.username, config.password) if config.username else None
    cluster = Cluster(list(config.hosts), port=config.port, auth_provider=auth,
                      execution_profiles={EXEC_PROFILE_DEFAULT: profile},
                      connect_timeout=config.connect_timeout_s,
                      protocol_version=config.protocol_version,
                      ssl_context=config.tls.context() if config.tls else None)
    try:
        session = cluster.connect()
    except BaseException:
        cluster.shutdown()
        raise
    session.default_fetch_size = None
    return cluster, session


def settle(rf: Any) -> asyncio.Future[list[dict[str, Any]]]:
    """An asyncio future for a driver ResponseFuture (callbacks run on the driver's thread)."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[list[dict[str, Any]]] = loop.create_future()

    def done(rows: Any = None, exc: BaseException | None = None) -> None:
        if fut.done():
            return
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(list(rows or []))

    rf.add_callbacks(lambda rows: loop.call_soon_threadsafe(done, rows),
                     lambda exc: loop.call_soon_threadsafe(done, None, exc))
    return fut


class CassandraSession:
    """The store's way to the cluster: connects on first use, prepares each named statement
    of :data:`STATEMENTS` once, runs statements on the driver's I/O thread, and passes every
    driver error through :func:`translate`."""

    def __init__(self, config: CassandraConfig) -> None:
        self.config = config
        self.cluster: Cluster | None = None
        """The driver's cluster once connected (None before, and after ``close``)."""
        self.session: Any = None
        """The driver's session once connected."""
        self.prepared: dict[str, PreparedStatement] = {}
        """Each named statement of STATEMENTS, prepared on its first use."""
        self._lock: asyncio.Lock | None = None
        self._closed = False

    def _connect(self) -> Any:
        self.cluster, session = connect(self.config)
        return session

    async def close(self) -> None:
        """Shut the connection down (idempotent); later calls raise StoreError."""
        self._closed = True
        cluster, self.cluster, self.session = self.cluster, None, None
        if cluster is not None:
            await asyncio.to_thread(cluster.shutdown)

    async def run(self, stmt: Statement | str, params: Any = (), *, serial: bool = False,
                  many: list[tuple] | None = None, **kwargs: Any) -> list[dict]:
        """Connect on first use, prepare a named statement once, execute it asynchronously.

        ``serial`` reads at the serial consistency: a Paxos read that first completes any
        lightweight transaction still in flight on the row. ``many`` runs the statement once
        per row of it, as one unlogged batch; callers keep such a batch to one partition, so
        it is a single mutation, applied atomically, with no batch log. Every driver error
        of every call passes through :func:`translate` here.
        """
        if self._closed:
            raise StoreError("Cassandra result store is closed")
        try:
            if self.session is None:
                self._lock = self._lock or asyncio.Lock()
                async with self._lock:
                    if self.session is None:
                        self.session = await asyncio.to_thread(self._connect)
            if isinstance(stmt, str):  # a name of STATEMENTS
                if stmt not in self.prepared:
                    cql = STATEMENTS[stmt].format(ks=self.config.keyspace)
                    prepared = await asyncio.to_thread(self.session.prepare, cql)
                    prepared.is_idempotent = " IF " not in cql  # LWTs are not blindly retried
                    self.prepared[stmt] = prepared
                stmt = self.prepared[stmt]
            if many is not None:
                batch = BatchStatement(BatchType.UNLOGGED)
                for row in many:
                    batch.add(stmt, row)
                batch.is_idempotent = stmt.is_idempotent
                stmt, params = batch, None
            if serial:
                stmt, params = stmt.bind(params), None
                stmt.consistency_level = cassandra.ConsistencyLevel.name_to_value[
                    self.config.serial_consistency]
            return await settle(self.session.execute_async(stmt, params, **kwargs))
        except Exception as exc:
            err = translate(exc)
            if err is None:
                raise
            raise err from exc

    async def lwt(self, name: str, params: Any) -> dict[str, Any] | None:
        """Run a lightweight transaction: its result row (``[applied]`` and, when refused,
        the row it found), or None when its outcome is unknown (see :func:`outcome_unknown`).
        The caller then reads the row back with ``serial=True``; it never assumes."""
        try:
            rows = await self.run(name, params)
        except StoreUnavailable as exc:
            if exc.__cause__ is not None and outcome_unknown(exc.__cause__):
                log.warning("Cassandra %s: outcome unknown (%r); reading it back", name,
                            exc.__cause__)
                return None
            raise
        return rows[0]
