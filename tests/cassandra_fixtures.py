"""A live Apache Cassandra node for the tests: one per session, like nats-server and redis-server.

The node comes from ``scripts/fetch_cassandra.sh`` (Maven Central, cached outside the repo) and
runs on free loopback ports with its data in a temporary folder. ``INFERQ_TEST_CASSANDRA``
(``cassandra://host/keyspace?...``) points the tests at a cluster of your own instead. Without
Java or the fetched node the live tests skip, naming the command that enables them; with
``CI=true`` that is a failure, so CI never passes without having run them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from inferq.cassandra_node import (
    CassandraNodeMissing,
    cassandra_node,
    home_from,
    locate,
    start_node,
)

KEYSPACE = "inferq_test"


def _missing(reason: str) -> NoReturn:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and the live Cassandra tests cannot run: {reason}", pytrace=False)
    pytest.skip(f"live Cassandra: {reason} (then rerun; or set "
                f"INFERQ_TEST_CASSANDRA=cassandra://host/keyspace)")


def node_runtime() -> tuple[Path, Path]:
    """The cached Cassandra home and the Java to run it with; skips (fails under CI=true)
    naming what is missing."""
    home = home_from(os.environ)
    java_home = os.environ.get("JAVA_HOME")
    try:
        java, _ = locate(home, Path(java_home) if java_home else None)
    except CassandraNodeMissing as exc:
        _missing(str(exc))
    return home, java


@pytest.fixture(scope="session")
def cassandra_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A ``cassandra://`` URL of a live node, keyspace ``inferq_test`` with one replica."""
    pytest.importorskip("cassandra")
    given = os.environ.get("INFERQ_TEST_CASSANDRA")
    if given:
        yield given
        return
    home, java = node_runtime()
    data = tmp_path_factory.mktemp("cassandra")
    node = start_node(cassandra_node(data, home, java=java, log_path=data / "stdout.log"))
    try:
        yield (f"cassandra://{node.host}:{node.port}/{KEYSPACE}"
               "?dc=datacenter1&replication=datacenter1:1")
    finally:
        node.stop(grace=30.0)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """One line that says how many live Cassandra cases ran, so a CI log shows none skipped."""
    counts = {}
    for outcome in ("passed", "failed", "error", "skipped"):
        counts[outcome] = sum(1 for r in terminalreporter.stats.get(outcome, [])
                              if "live_cassandra" in getattr(r, "keywords", {})
                              and getattr(r, "when", "call") in ("call", "setup"))
    if any(counts.values()):
        terminalreporter.write_line("live Cassandra cases: " + ", ".join(
            f"{n} {outcome}" for outcome, n in counts.items()))
