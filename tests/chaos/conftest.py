from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest


@pytest.fixture
async def make_cluster(tmp_path: Path, model_repo: Path) -> AsyncIterator:
    from tests.chaos.cluster import Cluster

    made: list[Cluster] = []

    def make(**overrides) -> Cluster:
        cluster = Cluster.create(tmp_path, model_repo, **overrides)
        made.append(cluster)
        return cluster

    yield make
    for c in made:
        await c.shutdown()


@pytest.fixture(scope="session")
def chaos_cassandra(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """A Cassandra node of the chaos suite's own, which its scenarios kill and pause."""
    import os

    from inferq.cassandra_node import CassandraNodeMissing, home_from, locate
    from tests.cassandra_fixtures import _missing
    from tests.chaos.on_topology import chaos_node

    pytest.importorskip("cassandra")
    home, java_home = home_from(os.environ), os.environ.get("JAVA_HOME")
    try:
        java, _ = locate(home, Path(java_home) if java_home else None)
    except CassandraNodeMissing as exc:
        _missing(str(exc))
    yield from chaos_node(tmp_path_factory.mktemp("chaos-cassandra"), home, java)
