"""Fixtures every test package shares, defined once: real nats-server and redis-server on free
loopback ports, the default model built once per session (outside the repo), the golden file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from inferq.embedded import ServerProcess, nats_server, redis_server
from inferq.nats_users import NatsUsers
from models.build import ensure_default_model
from models.config import ModelConfig
from models.repository import ModelRepository
from tests.cassandra_fixtures import cassandra_url, pytest_terminal_summary  # noqa: F401

GOLDEN = Path(__file__).resolve().parent / "data" / "minilm_golden.json"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--nats-users", action="store_true",
                     help="start every test's nats-server with inferq dev's per-role users and "
                          "permissions; the e2e harness runs each role as its own user")
    parser.addoption("--redis-acl", action="store_true",
                     help="start every test's redis-server with the production ACL "
                          "(deploy/nomad/redis.nomad.hcl); the settings fixture logs in as its "
                          "inferq user")


@pytest.fixture
def nats_proc(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    users = NatsUsers.generate() if request.config.getoption("--nats-users") else None
    proc = nats_server(tmp_path / "nats", log_path=tmp_path / "nats.log", users=users).start()
    if users is None:
        yield proc
    else:
        from tests.e2e.harness import NATS_USERS

        NATS_USERS[url := f"nats://{proc.host}:{proc.port}"] = users
        yield proc
        NATS_USERS.pop(url, None)
    proc.stop()


@pytest.fixture
def nats_url(nats_proc: ServerProcess) -> str:
    return f"nats://{nats_proc.host}:{nats_proc.port}"


@pytest.fixture
def redis_proc(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    acl = None
    if request.config.getoption("--redis-acl"):
        from tests.secure import production_redis_acl

        acl = production_redis_acl()
    proc = redis_server(tmp_path / "redis", log_path=tmp_path / "redis.log", acl=acl).start()
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
def settings(tmp_path: Path, nats_url: str, redis_url: str, model_repo: Path,
             request: pytest.FixtureRequest):
    """Settings of a service on this test's own servers, state under ``tmp_path``."""
    from tests.e2e.harness import make_settings

    settings = make_settings(tmp_path, nats_url, redis_url, model_repo)
    if request.config.getoption("--redis-acl"):
        from tests.secure import REDIS_PASSWORD

        settings = replace(settings, redis_username="inferq", redis_password=REDIS_PASSWORD)
    return settings
