"""Real servers for tests: nats-server and redis-server on free loopback ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from inferq.embedded import ServerProcess, nats_server, redis_server

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture
def nats_proc(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = nats_server(tmp_path / "nats", log_path=tmp_path / "nats.log").start()
    yield proc
    proc.stop()


@pytest.fixture
def nats_url(nats_proc: ServerProcess) -> str:
    return f"nats://{nats_proc.host}:{nats_proc.port}"


@pytest.fixture
def redis_proc(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = redis_server(tmp_path / "redis", log_path=tmp_path / "redis.log").start()
    yield proc
    proc.stop()


@pytest.fixture
def redis_url(redis_proc: ServerProcess) -> str:
    return f"redis://{redis_proc.host}:{redis_proc.port}/0"
