from __future__ import annotations

from collections.abc import AsyncIterator
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
