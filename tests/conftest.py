"""Fixtures every test package shares, defined once: real nats-server and redis-server on free
loopback ports, the default model built once per session (outside the repo), the golden file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from inferq.embedded import ServerProcess, nats_server, redis_server
from models.build import ensure_default_model
from models.config import ModelConfig
from models.repository import ModelRepository
from tests.cassandra_fixtures import cassandra_url, pytest_terminal_summary  # noqa: F401

GOLDEN = Path(__file__).resolve().parent / "data" / "minilm_golden.json"


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


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """``~/.cache/inferq/models/minilm/1``, built from the wheel on first use (outside the repo)."""
    return ensure_default_model()


@pytest.fixture(scope="session")
def model_repo(minilm_dir: Path) -> Path:
    """The model repository holding the default model."""
    return minilm_dir.parents[1]


@pytest.fixture(scope="session")
def minilm_config(model_repo: Path) -> ModelConfig:
    return ModelRepository(model_repo).config("minilm", 1)


@pytest.fixture(scope="session")
def golden() -> dict[str, Any]:
    """The reference embeddings (``tests/data/README.md`` says how they were made)."""
    return json.loads(GOLDEN.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def golden_items(golden: dict[str, Any]) -> list[dict[str, Any]]:
    return golden["items"]


@pytest.fixture
def settings(tmp_path: Path, nats_url: str, redis_url: str, model_repo: Path):
    """Settings of a service on this test's own servers, state under ``tmp_path``."""
    from tests.e2e.harness import make_settings

    return make_settings(tmp_path, nats_url, redis_url, model_repo)
