"""The Cassandra store's pure parts, without a node: schema text, statements, error
translation, the asyncio bridge, TTL arithmetic. Everything that talks CQL runs on a live
node: the contract suite (test_result_store.py) and test_result_store_cassandra_live.py."""

from __future__ import annotations

import re
import threading
import time

import pytest

pytest.importorskip("cassandra")

import cassandra
import cassandra.protocol as proto
from cassandra.cluster import NoHostAvailable

from store.results.base import StoreError, StoreUnavailable
from store.results.cassandra import (
    MAX_TTL,
    STATEMENTS,
    schema_statements,
    settle,
    translate,
    ttl,
)
from store.results.cassandra.session import CAS_WRITE_UNKNOWN, outcome_unknown

LWT = {"create_job", "mark_started", "finish_job", "claim_key", "reclaim_key"}


def test_the_schema_creates_everything_idempotently_in_one_keyspace() -> None:
    ddl = schema_statements("inferq_prod", "{'class': 'NetworkTopologyStrategy', 'dc1': 3}")
    # Columns added later come last, each ADD IF NOT EXISTS (an older keyspace gets them).
    assert ddl[-1] == "ALTER TABLE inferq_prod.jobs ADD IF NOT EXISTS parent_job_id text"
    ddl = ddl[:-1]
    created = [re.match(r"CREATE (KEYSPACE|TABLE) IF NOT EXISTS (\S+)", s) for s in ddl]
    assert [m and m[2] for m in created] == [
        "inferq_prod", "inferq_prod.jobs", "inferq_prod.jobs_by_tenant",
        "inferq_prod.unpublished", "inferq_prod.items", "inferq_prod.idempotency"]
    assert "replication = {'class': 'NetworkTopologyStrategy', 'dc1': 3}" in ddl[0]
    items = ddl[4]
    assert "PRIMARY KEY ((job_id, bucket), idx)" in items  # bucketed: ~1.5 MB partitions
    assert "{'class': 'TimeWindowCompactionStrategy'" in items
    assert "PRIMARY KEY ((tenant, idem_key))" in ddl[5]
    assert "PRIMARY KEY ((tenant, day_bucket), created_at, job_id)" in ddl[2]
    assert "default_time_to_live = 604800" in items  # a backstop: every write binds a TTL


def test_statements_are_keyspace_qualified_ttl_bound_and_lwt_only_where_needed() -> None:
    for name, cql in STATEMENTS.items():
        if name != "ping":
            assert "{ks}." in cql, name
        if cql.startswith(("INSERT", "UPDATE")):
            assert "USING TTL ?" in cql, name  # nothing outlives its retention
        assert (re.search(r"\bIF\b", cql) is not None) == (name in LWT), name
    assert "IF NOT EXISTS USING TTL ?" in STATEMENTS["claim_key"]
    assert "IF status IN ('queued', 'running')" in STATEMENTS["finish_job"]
    assert "ALLOW FILTERING" in STATEMENTS["items_after_status"]  # within one bucket only
    assert "WHERE job_id = ? AND bucket = ?" in STATEMENTS["items_after_status"]


@pytest.mark.parametrize("exc", [
    cassandra.OperationTimedOut("timed out"),
    NoHostAvailable("down", {}),
    cassandra.Unavailable("not enough replicas"),
    cassandra.WriteTimeout("cas timeout", write_type=cassandra.WriteType.CAS),
    cassandra.ReadTimeout("slow"),
])
def test_transient_driver_errors_become_store_unavailable(exc: Exception) -> None:
    err = translate(exc)
    assert isinstance(err, StoreUnavailable) and err.retryable


@pytest.mark.parametrize("exc", [cassandra.InvalidRequest("no such table"),
                                 cassandra.Unauthorized("nope"),
                                 cassandra.AuthenticationFailed("bad password")])
def test_permanent_driver_errors_become_non_retryable_store_errors(exc: Exception) -> None:
    err = translate(exc)
    assert type(err) is StoreError and not err.retryable


def cas_write_unknown() -> proto.ErrorMessage:
    return proto.ErrorMessage(code=CAS_WRITE_UNKNOWN, message="CAS operation result is unknown",
                              info=None)


@pytest.mark.parametrize(("exc", "unknown"), [
    (cassandra.WriteTimeout("propose", write_type=cassandra.WriteType.CAS), True),
    (cassandra.WriteTimeout("commit", write_type=cassandra.WriteType.SIMPLE), True),
    (cassandra.OperationTimedOut("no reply"), True),
    (cas_write_unknown(), True),  # protocol v5: a code the driver has no class for
    (cassandra.Unavailable("before any proposal"), False),
    (cassandra.ReadTimeout("prepare phase"), False),
    (cassandra.InvalidRequest("bad CQL"), False),
])
def test_an_lwt_outcome_is_unknown_exactly_after_a_write_or_client_timeout(
        exc: Exception, unknown: bool) -> None:
    assert outcome_unknown(exc) is unknown


def test_an_unresolved_unknown_outcome_is_retryable_not_a_permanent_error() -> None:
    err = translate(cas_write_unknown())
    assert isinstance(err, StoreUnavailable) and err.retryable


def test_errors_that_are_not_the_drivers_are_left_alone() -> None:
    assert translate(KeyError("bug")) is None


class ThreadedFuture:
    def __init__(self, result=None, error=None) -> None:
        self.result, self.error = result, error

    def add_callbacks(self, callback, errback) -> None:
        target = (lambda: errback(self.error)) if self.error else (lambda: callback(self.result))
        threading.Timer(0.01, target).start()


async def test_settle_bridges_driver_callbacks_from_another_thread() -> None:
    assert await settle(ThreadedFuture([{"a": 1}])) == [{"a": 1}]
    assert await settle(ThreadedFuture(None)) == []  # a write: no rows
    with pytest.raises(cassandra.OperationTimedOut):
        await settle(ThreadedFuture(error=cassandra.OperationTimedOut("late")))


def test_ttl_counts_down_to_expires_at_within_cassandras_range() -> None:
    now = time.time()
    assert 3599 <= ttl(now + 3600) <= 3601
    assert ttl(now - 10) == 1
    assert ttl(now + 100 * 365 * 86400) == MAX_TTL
