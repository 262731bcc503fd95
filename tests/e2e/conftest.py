from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from inferq.models.repository import ensure_default_model
from tests.e2e.harness import Service, make_settings

GOLDEN = Path(__file__).resolve().parents[3] / "shared" / "golden" / "minilm_golden.json"


@pytest.fixture(scope="session")
def model_repo() -> Path:
    version_dir = ensure_default_model()
    return version_dir.parent.parent


@pytest.fixture(scope="session")
def golden() -> list[dict]:
    return json.loads(GOLDEN.read_text())["items"]


@pytest.fixture
def settings(tmp_path, nats_url, redis_url, model_repo):
    return make_settings(tmp_path, nats_url, redis_url, model_repo)


@pytest.fixture
async def service(settings) -> AsyncIterator[Service]:
    svc = Service(settings)
    await svc.start()
    try:
        yield svc
    finally:
        await svc.stop()
