"""The Cassandra driver behind the store: connecting, awaiting its futures, and its errors.

Queries are sent with ``Session.execute_async``; the driver's callbacks (its own I/O thread)
settle asyncio futures on the caller's loop. Reads and writes use the configured consistency
(LOCAL_QUORUM), lightweight transactions the serial one; paging is off (every query is bounded).
"""

from __future__ import annotations

import asyncio
from typing import Any

import cassandra
import cassandra.protocol as proto
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable
from cassandra.connection import ConnectionException
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
from cassandra.query import dict_factory

from store.results.base import StoreError, StoreUnavailable
from store.results.config import CassandraConfig

_TRANSIENT = (cassandra.Unavailable, cassandra.Timeout, cassandra.CoordinationFailure,
              cassandra.OperationTimedOut, cassandra.UnresolvableContactPoints, NoHostAvailable,
              ConnectionException, proto.OverloadedErrorMessage,
              proto.IsBootstrappingErrorMessage, proto.ServerError)


def translate(exc: BaseException) -> StoreError | None:
    """The one place that turns driver exceptions into StoreError subclasses.

    None for anything that is not the driver's (a bug in our code stays a bug). A
    timed-out LWT may or may not have applied; it is still retryable because every
    LWT here is a compare-and-set that a retry re-evaluates.
    """
    if isinstance(exc, _TRANSIENT):
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
                      connect_timeout=config.connect_timeout_s)
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
